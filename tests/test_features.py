"""The feature catalog and point-in-time training, on hand-computed examples and real data."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from models import FeatureCatalog, UnknownFeatureError, slugify
from registry import Registry
from scorer.demo import create_tables
from scorer.edge import train_options
from scorer.stores.sql import SqlStore, engine_for
from scorer.trainer import build_training_set, train_model

AS_OF = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _daily(rows: list[tuple[str, str, date, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["visitor_id", "event_type", "day", "n"])


def test_features_by_hand():
    cat = FeatureCatalog()
    d = AS_OF.date()
    daily = _daily(
        [
            ("a", "pricing view", d, 2),  # today (age 0)
            ("a", "pricing_view", d - timedelta(days=10), 1),  # same slug, 10 days ago
            ("a", "page_view", d - timedelta(days=40), 5),
            ("a", "page_view", d - timedelta(days=400), 9),  # beyond the lookback: ignored
            ("b", "new_thing", d - timedelta(days=1), 3),  # a type the model never saw
        ]
    )
    names = cat.feature_names(event_types=["pricing_view", "page_view"])
    f = cat.build(daily, visitor_ids=["a", "b", None, "ghost"], as_of=AS_OF, names=names).set_index(
        pd.Index(["a", "b", "none", "ghost"])
    )
    assert f.loc["a", "evt_pricing_view_7d"] == 2 and f.loc["a", "evt_pricing_view_30d"] == 3
    assert f.loc["a", "evt_page_view_30d"] == 0 and f.loc["a", "evt_page_view_90d"] == 5
    assert f.loc["a", "events_7d"] == 2 and f.loc["a", "events_180d"] == 8
    assert f.loc["a", "active_days_30d"] == 2 and f.loc["a", "distinct_types_90d"] == 3
    assert f.loc["a", "days_since_last_event"] == 0 and f.loc["a", "days_since_first_event"] == 40
    assert f.loc["b", "events_7d"] == 3 and f.loc["b", "evt_pricing_view_7d"] == 0
    for who in ("none", "ghost"):
        assert f.loc[who, "events_180d"] == 0 and f.loc[who, "days_since_last_event"] == cat.lookback_days + 1
    assert (f.dtypes == np.float64).all() and np.isfinite(f.to_numpy()).all()
    assert list(f.columns) == names


def _reference_features(rows, visitor_ids, as_of, names, cat):
    """The catalog's definitions, one visitor at a time in plain Python: what the arrays must equal."""
    last_day = (as_of - timedelta(microseconds=1)).date()
    out = []
    for vid in visitor_ids:
        mine = [
            (t, (last_day - d).days, n)
            for v, t, d, n in rows
            if v == vid and v is not None and t is not None and 0 <= (last_day - d).days <= cat.lookback_days
        ]
        never = float(cat.lookback_days + 1)
        f: dict[str, float] = {}
        for w in (*cat.windows, cat.lookback_days):
            f[f"events_{w}d"] = float(sum(n for _, a, n in mine if a < w))
        for w in cat.windows:
            f[f"active_days_{w}d"] = float(len({a for _, a, _ in mine if a < w}))
        for w in cat.windows[1:]:
            f[f"distinct_types_{w}d"] = float(len({t for t, a, _ in mine if a < w}))
        f["days_since_last_event"] = float(min((a for _, a, _ in mine), default=never))
        f["days_since_first_event"] = float(max((a for _, a, _ in mine), default=never))
        for slug in cat.type_slugs(names):
            for w in cat.windows:
                f[f"evt_{slug}_{w}d"] = float(sum(n for t, a, n in mine if slugify(t) == slug and a < w))
        out.append([f[name] for name in names])
    return pd.DataFrame(out, columns=names, dtype="float64")


@pytest.mark.parametrize("seed", range(6))
def test_features_equal_the_definitions_on_random_data(seed):
    """The vectorised catalog against a one-visitor-at-a-time reference, on messy random data."""
    cat = FeatureCatalog()
    rng = np.random.default_rng(seed)
    types = ["page_view", "pricing view", "pricing_view", "Demo.Request", "new_thing", None]
    rows = set()
    for _ in range(int(rng.integers(0, 800))):
        v = f"v{int(rng.integers(0, 60))}" if rng.random() > 0.05 else None
        t = types[int(rng.integers(0, len(types)))]
        rows.add((v, t, AS_OF.date() - timedelta(days=int(rng.integers(-5, 200)))))
    rows = [(v, t, d, int(rng.integers(1, 9))) for v, t, d in sorted(rows, key=str)]
    names = cat.feature_names(event_types=["page_view", "pricing_view", "demo_request", "never_seen"])
    visitor_ids = [f"v{i}" for i in range(70)] + [None, "v3", "ghost"]
    got = cat.build(_daily(rows), visitor_ids=visitor_ids, as_of=AS_OF, names=names)
    pd.testing.assert_frame_equal(got, _reference_features(rows, visitor_ids, AS_OF, names, cat))


def test_unknown_features_are_refused_with_their_names():
    with pytest.raises(UnknownFeatureError, match="evt_x_365d, revenue"):
        FeatureCatalog().check(["events_7d", "evt_x_365d", "revenue"])


def test_slugs():
    assert slugify("  Pricing View ") == "pricing_view" and slugify("checkout.completed") == "checkout_completed"


def _custom_product(url: str, *, users: int = 400) -> None:
    """A product with its own event names; conversion follows 'quote_requested'."""
    engine = engine_for(url)
    u, e = create_tables(engine)
    rng = np.random.default_rng(3)
    converted = rng.random(users) < 0.3
    urows, erows = [], []
    for i in range(users):
        conv = AS_OF + timedelta(days=5) if converted[i] else None
        urows.append(
            {"user_id": i + 1, "visitor_id": f"v{i}", "email": f"{i}@x", "signed_up_at": AS_OF, "converted_at": conv}
        )
        kinds = ["Cart Add", "quote_requested"] if converted[i] else ["cart add", "browse"]
        for k in range(int(rng.integers(1, 6))):
            erows.append(
                {"visitor_id": f"v{i}", "event_type": kinds[k % 2], "created_at": AS_OF - timedelta(days=k + 1)}
            )
        # After the cutoff: must not leak into training.
        erows.append({"visitor_id": f"v{i}", "event_type": "quote_requested", "created_at": AS_OF + timedelta(days=1)})
    # Converted before the cutoff: left out of training.
    urows.append(
        {
            "user_id": 99999,
            "visitor_id": "old",
            "email": "o@x",
            "signed_up_at": AS_OF,
            "converted_at": AS_OF - timedelta(days=3),
        }
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(u), urows)
        conn.execute(sa.insert(e), erows)
    engine.dispose()


def test_training_is_point_in_time_and_learns_the_products_own_events(db_url, mlflow_local):
    _custom_product(db_url)
    store = SqlStore(db_url)
    store.open().check(training=True)
    cat = FeatureCatalog()
    types = store.top_event_types(since=cat.since(AS_OF), as_of=AS_OF, limit=10)
    assert set(types) == {"cart add", "quote_requested", "browse"}
    x, y = build_training_set(store, as_of=AS_OF, horizon_days=30, event_types=types, catalog=cat, batch_size=64)
    assert len(y) == 400  # the user converted before the cutoff is left out
    assert x["evt_quote_requested_7d"].sum() == x.loc[y == 1, "evt_quote_requested_7d"].sum()  # nothing after as_of

    settings = mlflow_local.settings(db_url)
    out = train_model(train_options(settings, as_of=AS_OF, horizon_days=30), artifact_location=mlflow_local.artifacts)
    assert out.result.metrics["roc_auc"] > 0.9
    reg = Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)
    model = reg.load(reg.resolve(pin="1"))
    assert "evt_quote_requested_7d" in model.input_names and "evt_cart_add_30d" in model.input_names
    tags = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_model_version(settings.model_name, "1").tags
    assert json.loads(tags["event_types"]) == types
    assert len(json.loads(tags["reference_deciles"])) == 9
    assert {
        "holdout_roc_auc",
        "holdout_pr_auc",
        "holdout_brier",
        "holdout_top_decile_lift",
        "holdout_top20_capture",
    } <= set(tags)


def test_training_refuses_a_horizon_ending_in_the_future(sqlite_url, mlflow_local):
    from lead_errors import SettingsError

    with pytest.raises(SettingsError, match="future"):
        train_model(
            train_options(
                mlflow_local.settings(sqlite_url), as_of=datetime.now(UTC) - timedelta(days=3), horizon_days=30
            )
        )
