"""One feature definition (`models.features`): a family added in one place is computed, to the bit, by every
store (SQLite and the REST stand-in through the catalog's numpy, PostgreSQL through its generated SQL; Spark in
tests/test_spark_features.py), scored by a model trained on it and put in words; a family neither engine can
compute is refused at `FeatureCatalog.check`, naming it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_errors import FeatureDefinitionError, ModelError
from models import FeatureCatalog, describe, normalize_event_type, slugify
from models.features import FEATURES, Feature, Measure, active_days, events, type_count
from scorer.stores.base import FeatureRequest
from scorer.stores.pg_features import feature_sql
from scorer.stores.sql import engine_for
from tests.support import make_product, snapshot

#: What a product team would add: how many of the last 3 days a lead was active, its events of the last two
#: days, and each event type over a fortnight. New windows (2, 3, 14) for existing measures, one per type.
EXTRA = (
    Feature(name="visits_{window}d", measure=Measure.ACTIVE_DAYS, windows=(3,), phrase=active_days),
    Feature(name="burst_{window}d", measure=Measure.COUNT, windows=(2,), phrase=events),
    Feature(name="fortnight_{type}_{window}d", measure=Measure.COUNT, windows=(14,), phrase=type_count),
)
EXTENDED = FeatureCatalog(definitions=(*FEATURES, *EXTRA))
NEW = ("visits_3d", "burst_2d")


def _events(url: str) -> pd.DataFrame:
    engine = engine_for(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text("SELECT visitor_id, event_type, created_at FROM events"), conn)
    engine.dispose()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="mixed")
    return frame


def _by_hand(raw: pd.DataFrame, visitors: list[str], as_of: datetime, slugs: list[str]) -> pd.DataFrame:
    """The added features from their definitions, one visitor at a time in plain Python."""
    day0 = (as_of - timedelta(microseconds=1)).date()
    out = []
    for v in visitors:
        ages: list[tuple[int, str]] = []
        for t, c in raw.loc[raw["visitor_id"] == v, ["event_type", "created_at"]].itertuples(index=False):
            kind = normalize_event_type(t if isinstance(t, str) else None)
            if kind is None or pd.isna(c) or c >= as_of:
                continue  # dropped: no type, no time, not yet
            age = (day0 - c.to_pydatetime().date()).days
            if 0 <= age <= EXTENDED.lookback_days:
                ages.append((age, slugify(kind)))
        row = {"visits_3d": len({a for a, _ in ages if a < 3}), "burst_2d": sum(a < 2 for a, _ in ages)}
        row |= {f"fortnight_{s}_14d": sum(a < 14 and k == s for a, k in ages) for s in slugs}
        out.append(row)
    return pd.DataFrame(out, dtype=np.float64)


@pytest.fixture(scope="module")
def extended_model(tmp_path_factory: pytest.TempPathFactory, mlflow_local):
    """A model trained with the added features and promoted: (its model name, LoadedModel)."""
    from registry import Registry
    from scorer.edge import train_options
    from scorer.trainer import train_model

    db = f"sqlite:///{tmp_path_factory.mktemp('train-extended') / 'train.db'}"
    make_product(db, users=800, seed=17)
    settings = mlflow_local.settings(db)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts, catalog=EXTENDED)
    reg = Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)
    return settings.model_name, reg.load(reg.resolve())


def test_the_added_features_are_in_the_catalog_and_put_in_words():
    names = EXTENDED.feature_names(event_types=["pricing_view", "Demo Request"])
    assert names[: len(FeatureCatalog().base_feature_names())] == FeatureCatalog().base_feature_names()
    assert {"visits_3d", "burst_2d", "fortnight_pricing_view_14d", "fortnight_demo_request_14d"} <= set(names)
    assert set(names) - {"visits_3d", "burst_2d"} - {n for n in names if n.startswith("fortnight_")} == set(
        FeatureCatalog().feature_names(event_types=["pricing_view", "Demo Request"])
    )
    assert describe("visits_3d", 2, catalog=EXTENDED) == "active 2 of the last 3 days"
    assert describe("burst_2d", 1, catalog=EXTENDED) == "1 event in the last 2 days"
    assert describe("fortnight_demo_request_14d", 4, catalog=EXTENDED) == "4 demo requests in the last 14 days"
    # The default catalog does not build them: a model trained on them is refused, not mis-scored.
    with pytest.raises(ModelError, match="visits_3d"):
        FeatureCatalog().check(["events_7d", "visits_3d"])
    with pytest.raises(ModelError, match="visits_7d"):
        EXTENDED.check(["visits_7d"])  # a window the family does not have


def test_a_default_models_statement_is_unchanged_by_an_added_per_type_family():
    """A model that asks for none of a per-type family's columns gets the very statement it got before."""
    as_of = datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    names = FeatureCatalog().feature_names(event_types=["a", "b"])
    with_family = FeatureCatalog(definitions=(*FEATURES, EXTRA[2]))
    before = feature_sql(FeatureCatalog(), names, as_of=as_of, batch=True)
    assert feature_sql(with_family, names, as_of=as_of, batch=True) == before
    # Asked for, its window (14 days) becomes a bucket of the one pass and its counts one more packed word.
    asked = feature_sql(with_family, [*names, "fortnight_a_14d"], as_of=as_of, batch=True)
    assert "WHEN a.age < 14 THEN" in asked and "WHEN a.age < 14 THEN" not in before


@pytest.mark.parametrize(
    ("family", "problem"),
    [
        (Feature(name="quiet_{type}_days", measure=Measure.NEWEST_AGE, phrase=events), "not computed per event type"),
        (Feature(name="visits_{window}d", measure=Measure.ACTIVE_DAYS, windows=(365,), phrase=active_days), "outside"),
        (Feature(name="idle_{window}d", measure=Measure.NEWEST_AGE, windows=(7,), phrase=events), "takes no"),
        (Feature(name="median_gap_{window}d", measure="median_gap", windows=(7,), phrase=events), "not a models"),  # type: ignore[arg-type]
    ],
    ids=["age-per-type", "window-past-lookback", "age-with-window", "unknown-measure"],
)
def test_a_family_no_engine_computes_is_refused_at_check_naming_it(family: Feature, problem: str):
    catalog = FeatureCatalog(definitions=(*FEATURES, family))
    # Before any store runs: at training (check) and at scoring (features, SQL) alike, never an AssertionError.
    for attempt in (
        lambda: catalog.check(["events_7d"]),
        lambda: catalog.build(
            pd.DataFrame(columns=["visitor_id", "event_type", "day", "n"]),
            visitor_ids=["v"],
            as_of=datetime.now(UTC),
            names=["events_7d"],
        ),
        lambda: feature_sql(catalog, ["events_7d"], as_of=datetime.now(UTC), batch=True),
    ):
        with pytest.raises(FeatureDefinitionError, match=problem) as caught:
            attempt()
        assert isinstance(caught.value, ModelError) and repr(family.name) in str(caught.value)
        assert "models/features.py" in str(caught.value)  # the hint: where to fix it


@pytest.mark.parametrize("measure", list(Measure))
def test_every_measure_has_both_forms_and_they_agree(measure: Measure, pg_url):
    """A family of each measure, on one visitor's 8 events (types by age: x0 y1 x1 x2 y6 z9 w10 z40), by hand;
    events at ages 2 and 10 sit on the windows' edges (2 and 10 days: not in)."""
    windowed = measure.windowed
    family = Feature(
        name="probe_{window}d" if windowed else "probe_age",
        measure=measure,
        windows=(2, 10) if windowed else (),
        phrase=events,
    )
    catalog = FeatureCatalog(definitions=(*FEATURES, family))
    as_of = datetime(2026, 6, 15, 12, tzinfo=UTC)
    rows = [
        ("a", t, age) for t, age in [("x", 0), ("y", 1), ("x", 1), ("x", 2), ("y", 6), ("z", 9), ("w", 10), ("z", 40)]
    ]
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (user_id bigint PRIMARY KEY, visitor_id text)"))
        conn.execute(sa.text("CREATE TABLE events (visitor_id text, event_type text, created_at timestamptz)"))
        conn.execute(sa.text("INSERT INTO users VALUES (1, 'a'), (2, 'nobody')"))
        for v, t, age in rows:
            at = as_of - timedelta(days=age, hours=1)
            conn.execute(sa.text("INSERT INTO events VALUES (:v, :t, :c)"), {"v": v, "t": t, "c": at})
    names = [n for n in catalog.feature_names(event_types=[]) if n.startswith("probe")]
    with engine.connect() as conn:
        got = conn.execute(sa.text(feature_sql(catalog, names, as_of=as_of))).mappings().all()
    engine.dispose()
    daily = pd.DataFrame(
        [(v, t, (as_of - timedelta(days=age, hours=1)).date(), 1) for v, t, age in rows],
        columns=["visitor_id", "event_type", "day", "n"],
    )
    numpy = catalog.build(daily, visitor_ids=["a", "nobody"], as_of=as_of, names=names)
    sql = pd.DataFrame([[float(r[n]) for n in names] for r in sorted(got, key=lambda r: r["user_id"])], columns=names)
    pd.testing.assert_frame_equal(sql, numpy, check_exact=True)
    expected = {
        Measure.COUNT: [[3.0, 6.0], [0.0, 0.0]],
        Measure.ACTIVE_DAYS: [[2.0, 5.0], [0.0, 0.0]],
        Measure.DISTINCT_TYPES: [[2.0, 3.0], [0.0, 0.0]],
        Measure.NEWEST_AGE: [[0.0], [181.0]],
        Measure.OLDEST_AGE: [[40.0], [181.0]],
    }[measure]
    assert numpy.to_numpy().tolist() == expected


def test_added_features_are_equal_on_every_store_and_score_the_leads(target, extended_model, mlflow_local):
    model_name, model = extended_model
    assert {*NEW, "fortnight_pricing_view_14d"} <= set(model.input_names)  # the model uses what was added
    make_product(target.url, users=120, seed=5)
    settings = mlflow_local.settings(target.url, model_name=model_name)
    as_of = datetime.now(UTC)
    store = target.store()
    visitors = sorted({str(v) for v in snapshot(target.url)["visitor_id"].dropna()})
    request = FeatureRequest(catalog=EXTENDED, names=model.input_names)
    read = store.read_events(visitors, since=EXTENDED.since(as_of), as_of=as_of, features=request)
    got = read.features_for(request, visitor_ids=visitors, as_of=as_of)
    # PostgreSQL computed them in its statement; SQLite and the REST stand-in handed over the daily grain.
    assert (read.features is not None) == (target.kind == "postgresql")

    raw = _events(target.url)
    slugs = EXTENDED.type_slugs(model.input_names)
    want = _by_hand(raw, visitors, as_of, slugs)
    pd.testing.assert_frame_equal(got[list(want.columns)], want, check_exact=True)
    assert want["visits_3d"].max() >= 2 and want["burst_2d"].sum() > 0  # the data exercised the new windows
    assert want[[f"fortnight_{s}_14d" for s in slugs]].to_numpy().sum() > 0

    # The job scores with them: each lead's score is the model's on these features.
    from scorer.app import run_scoring
    from scorer.edge import run_options

    summary = run_scoring(run_options(settings), store=store, catalog=EXTENDED, now=as_of)
    store.close()
    assert summary.exit_code == 0 and summary.users_scored > 0
    after = snapshot(target.url)
    after = after[after["visitor_id"].notna() & after["lead_score"].notna()]
    position = {v: i for i, v in enumerate(visitors)}
    expected = model.predict_scores(got.iloc[[position[str(v)] for v in after["visitor_id"]]].reset_index(drop=True))
    np.testing.assert_allclose(after["lead_score"].to_numpy(float), expected, rtol=0, atol=1e-12)


def test_a_day_of_the_new_window_moves_only_the_new_feature():
    """An event 2 days back is in visits_3d but not in burst_2d; 3 days back, in neither (windows are ages)."""
    as_of = datetime(2026, 6, 15, 12, tzinfo=UTC)
    daily = pd.DataFrame(
        [("a", "x", date(2026, 6, 13), 1), ("b", "x", date(2026, 6, 12), 1)],
        columns=["visitor_id", "event_type", "day", "n"],
    )
    f = EXTENDED.build(daily, visitor_ids=["a", "b"], as_of=as_of, names=["visits_3d", "burst_2d", "events_7d"])
    assert f.to_numpy().tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
