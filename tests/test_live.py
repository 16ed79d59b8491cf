"""Live performance (issue 22): cohorts under training's rule, honest days only, `lead-scorer evaluate`, the
version's live figures, and the daily run's check; on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from models import FeatureCatalog, generate
from registry import Registry
from scorer.cohorts import midnight, point_in_time_pages
from scorer.demo import create_tables, load_data
from scorer.edge import train_options
from scorer.stores.base import FeatureRequest
from scorer.stores.sql import SqlStore, engine_for
from scorer.trainer import train_model
from tests.jobproc import job_env
from tests.support import NOW, execute

LEAD_SCORER = str(Path(sys.executable).parent / "lead-scorer")
TRAINED_DAYS_AGO = 120
HORIZON = 30


def _product(url: str, *, users: int = 1_500, seed: int = 11) -> None:
    """A product whose conversions spread over eight months, driven by behaviour (`models.synthetic`)."""
    engine = engine_for(url)
    create_tables(engine)
    load_data(engine, generate(users=users, seed=seed, now=NOW, history_days=300, conversion_days=240))
    engine.dispose()


def _count(url: str, day: date, horizon: int) -> tuple[int, int]:
    """The cohort of ``day`` counted in plain SQL under the rule of docs/live-performance.md: not converted
    before T; not a user whose events in [T - 181 d, T + H) all come at or after T; label: converted in
    [T, T + H). Events without a type (NULL or blank) do not count, as the stores drop them."""
    t = midnight(day)
    params = {"s": t - timedelta(days=181), "t": t, "e": t + timedelta(days=horizon)}
    sqlite = url.startswith("sqlite")

    def ts(x: str) -> str:
        return f"julianday({x})" if sqlite else x

    typed = "e.event_type IS NOT NULL AND trim(e.event_type) <> ''"
    sql = f"""
        SELECT count(*), coalesce(sum(CASE WHEN {ts("u.converted_at")} < {ts(":e")} THEN 1 ELSE 0 END), 0)
        FROM users u
        WHERE (u.converted_at IS NULL OR {ts("u.converted_at")} >= {ts(":t")})
          AND NOT (
            EXISTS (SELECT 1 FROM events e WHERE e.visitor_id = u.visitor_id AND {typed}
                    AND {ts("e.created_at")} >= {ts(":t")} AND {ts("e.created_at")} < {ts(":e")})
            AND NOT EXISTS (SELECT 1 FROM events e WHERE e.visitor_id = u.visitor_id AND {typed}
                    AND {ts("e.created_at")} >= {ts(":s")} AND {ts("e.created_at")} < {ts(":t")}))
    """
    if sqlite:  # SQLite compares the stored text; the parameters in the same form
        params = {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") for k, v in params.items()}
    [[(n, positives)]] = execute(url, sql, params=params)
    return int(n), int(positives)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEAD_SCORER, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def product(db_url: str, mlflow_local: Any, tmp_path: Path) -> dict[str, Any]:
    """The product, version 1 trained 120 days ago, and version 2: version 1 with its logistic regression's
    coefficients and intercept negated (scores exactly 1 - version 1's, in rank), imported with its window."""
    return live_product(db_url, mlflow_local, tmp_path)


def live_product(db_url: str, mlflow_local: Any, tmp_path: Path) -> dict[str, Any]:
    """`product`'s body, for other modules' fixtures (tests/test_compare.py)."""
    _product(db_url)
    settings = mlflow_local.settings(db_url, evaluation_experiment=f"eval-{tmp_path.name}")
    as_of = midnight(NOW - timedelta(days=TRAINED_DAYS_AGO))
    first = train_model(
        train_options(settings, as_of=as_of, horizon_days=HORIZON, promote=True),
        artifact_location=mlflow_local.artifacts,
    )
    reg = Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)
    pipeline = reg.load(first.version).pipeline
    pipeline.named_steps["model"].coef_ = -pipeline.named_steps["model"].coef_
    pipeline.named_steps["model"].intercept_ = -pipeline.named_steps["model"].intercept_
    path = tmp_path / "reversed.joblib"
    joblib.dump(pipeline, path)
    env = job_env(db_url, settings, "unused") | {"LEAD_SCORER_EVALUATION_EXPERIMENT": settings.evaluation_experiment}
    out = _cli(
        "registry",
        "import-joblib",
        str(path),
        "--trust",
        "--as-of",
        f"{as_of:%Y-%m-%d}",
        "--horizon-days",
        "30",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return {"settings": settings, "env": env, "registry": reg, "as_of": as_of, "url": db_url}


def test_evaluate_reports_counted_cohorts_and_a_reversed_version_mirrors_them(product: dict[str, Any]) -> None:
    env, url = product["env"], product["url"]
    out = _cli("evaluate", "--json", env=env)
    assert out.returncode == 0, out.stderr
    a = json.loads(out.stdout)
    assert a["version"] == "1" and a["horizon_days"] == HORIZON
    days = [date.fromisoformat(c["as_of"]) for c in a["cohorts"]]
    first_honest = (product["as_of"] + timedelta(days=HORIZON)).date()
    last_matured = (NOW - timedelta(days=HORIZON)).date()
    # Weekly cohorts over the honest days whose horizon has passed, back from the newest.
    assert days[-1] in (last_matured, last_matured - timedelta(days=1))  # NOW may straddle a midnight
    assert all((b - a_).days == 7 for a_, b in itertools.pairwise(days))
    assert days[0] >= first_honest and (days[0] - first_honest).days < 7
    assert len(days) >= 8
    for c, day in zip(a["cohorts"], days, strict=True):
        assert (c["n"], c["positives"]) == _count(url, day, HORIZON), day
        assert c["positives"] > 0 and c["roc_auc"] > 0.6  # behaviour predicts conversion
        lo, hi = c["roc_auc_ci"]
        assert lo < c["roc_auc"] < hi
    assert a["pooled"]["n"] == sum(c["n"] for c in a["cohorts"])
    # Every figure carries its 95 % interval, in each cohort and pooled (`models.metrics` computes them; here:
    # that they reach the JSON, are intervals, and hold the ranking figures they are of).
    for c in [*a["cohorts"], a["pooled"]]:
        for k in ("roc_auc", "pr_auc", "top_decile_lift", "top20_capture", "brier", "ece"):
            lo, hi = c[f"{k}_ci"]
            assert 0 <= lo <= hi, k
        for k in ("pr_auc", "top_decile_lift", "top20_capture", "brier"):  # not ECE: its interval may lie above it
            assert c[f"{k}_ci"][0] <= c[k] <= c[f"{k}_ci"][1], k
    pooled_lift, cohort_lift = (np.diff(c["top_decile_lift_ci"])[0] for c in (a["pooled"], a["cohorts"][-1]))
    assert pooled_lift < cohort_lift  # nine cohorts' leads measure it more closely than one's

    out = _cli("evaluate", "--version", "2", "--json", env=env)
    assert out.returncode == 0, out.stderr
    b = json.loads(out.stdout)
    assert [c["as_of"] for c in b["cohorts"]] == [c["as_of"] for c in a["cohorts"]]
    for ca, cb in zip(a["cohorts"], b["cohorts"], strict=True):
        assert (cb["n"], cb["positives"]) == (ca["n"], ca["positives"])
        assert cb["roc_auc"] == pytest.approx(1 - ca["roc_auc"], abs=1e-9)
    assert b["holdout"]["roc_auc"] is None  # imported: no holdout
    assert b["first_honest_day"] == a["first_honest_day"]  # its declared window (--as-of, --horizon-days)

    # The table shows lift and ECE with their intervals, as it shows the AUC's; the version page shows the newest
    # cohort's figures, once (a second evaluation replaced the line).
    table = _cli("evaluate", env=env)
    assert table.returncode == 0, table.stderr
    newest = a["cohorts"][-1]
    [row] = [line for line in table.stdout.splitlines() if line.startswith(newest["as_of"])]
    lift_lo, lift_hi = newest["top_decile_lift_ci"]
    ece_lo, ece_hi = newest["ece_ci"]
    assert f"{newest['top_decile_lift']:.2f} [{lift_lo:.2f}\N{EN DASH}{lift_hi:.2f}]" in row
    assert f"{newest['ece']:.3f} [{ece_lo:.3f}\N{EN DASH}{ece_hi:.3f}]" in row
    reg: Registry = product["registry"]
    mv = reg.client.get_model_version(reg.model_name, "1")
    assert mv.tags["live_as_of"] == newest["as_of"]
    assert float(mv.tags["live_roc_auc"]) == pytest.approx(newest["roc_auc"], abs=1e-6)
    assert int(mv.tags["live_n"]) == newest["n"]
    assert mv.description.count("Live on leads open on") == 1
    assert f"Live on leads open on {newest['as_of']}, 30 days on: ROC AUC {newest['roc_auc']:.2f}" in mv.description
    # `registry list` shows it beside the holdout's: the operator's one-line view of every version.
    listed = _cli("registry", "list", env=env)
    [v1] = [line for line in listed.stdout.splitlines() if line.split()[:2] == ["1", "production"]]
    lo, hi = newest["roc_auc_ci"]
    assert f"{newest['roc_auc']:.3f} [{lo:.3f}\N{EN DASH}{hi:.3f}] {newest['as_of']}" in v1

    # One MLflow run per evaluation, one point per cohort at the cohort's day.
    exp = reg.client.get_experiment_by_name(product["settings"].evaluation_experiment)
    runs = reg.client.search_runs([exp.experiment_id], order_by=["attribute.start_time ASC"])
    assert len(runs) == 3
    history = reg.client.get_metric_history(runs[0].info.run_id, "roc_auc")
    epoch = date(1970, 1, 1)
    assert sorted((m.step, round(m.value, 9)) for m in history) == [
        ((d - epoch).days, round(c["roc_auc"], 9)) for d, c in zip(days, a["cohorts"], strict=True)
    ]
    logged = runs[0].data.metrics  # each figure's bounds beside it, the newest cohort's and the pooled
    assert (logged["top_decile_lift_lo"], logged["top_decile_lift_hi"]) == pytest.approx(
        tuple(newest["top_decile_lift_ci"])
    )
    assert (logged["pooled/ece_lo"], logged["pooled/ece_hi"]) == pytest.approx(tuple(a["pooled"]["ece_ci"]))


def test_an_early_cohort_is_refused_naming_the_first_honest_day(product: dict[str, Any]) -> None:
    first_honest = (product["as_of"] + timedelta(days=HORIZON)).date()
    early = first_honest - timedelta(days=1)
    out = _cli("evaluate", "--version", "2", "--from", f"{early:%Y-%m-%d}", env=product["env"])
    assert out.returncode == 2
    assert f"first honest cohort is {first_honest:%Y-%m-%d}" in out.stderr
    assert f"--from {first_honest:%Y-%m-%d}" in out.stderr
    unripe = (NOW - timedelta(days=HORIZON - 3)).date()
    out = _cli("evaluate", "--to", f"{unripe:%Y-%m-%d}", env=product["env"])
    assert out.returncode == 2 and "has not matured" in out.stderr


def _tiny_product(url: str, t: datetime) -> None:
    """Nine users around the cohort day ``t``, one per edge of the rule (see `test_cohort_edges`)."""
    engine = engine_for(url)
    create_tables(engine)
    h = timedelta(days=HORIZON)
    users = [  # user, visitor, converted_at
        (1, "v1", None),  # active before T: in, 0
        (2, "v2", None),  # first event on T itself: not a lead yet at T
        (3, "v3", t),  # converted exactly at T: still open at midnight, 1
        (4, "v4", t + h),  # converted exactly at T + H: in, 0
        (5, "v5", t + h + timedelta(days=1)),  # converted after the horizon: in, 0
        (6, "v6", None),  # no events at all: in (zero activity), 0
        (7, "v7", t - timedelta(seconds=1)),  # converted before T: a customer, out
        (8, "v8", t + timedelta(days=3)),  # converted inside the horizon: in, 1
        (9, None, None),  # no visitor id: in (zero activity), 0
    ]
    events = [
        ("v1", "page_view", t - timedelta(days=10)),
        ("v2", "page_view", t + timedelta(hours=2)),
        ("v2", "pricing_view", t + timedelta(days=2)),
        ("v3", "pricing_view", t - timedelta(days=5)),
        ("v4", "page_view", t - timedelta(days=5)),
        ("v5", "page_view", t - timedelta(days=5)),
        ("v7", "page_view", t - timedelta(days=5)),
        ("v8", "demo_request", t - timedelta(days=1)),
        ("v8", "demo_request", t + timedelta(days=1)),  # after T: no feature sees it
    ]
    md = sa.MetaData()
    u = sa.Table("users", md, autoload_with=engine)
    e = sa.Table("events", md, autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(u),
            [
                {
                    "user_id": i,
                    "visitor_id": v,
                    "email": f"u{i}@x",
                    "signed_up_at": t - timedelta(days=60),
                    "converted_at": c,
                }
                for i, v, c in users
            ],
        )
        conn.execute(sa.insert(e), [{"visitor_id": v, "event_type": k, "created_at": at} for v, k, at in events])
    engine.dispose()


def test_cohort_edges(db_url: str) -> None:
    t = midnight(NOW - timedelta(days=60))
    _tiny_product(db_url, t)
    catalog = FeatureCatalog()
    names = catalog.feature_names(event_types=["page_view", "pricing_view", "demo_request"])
    with SqlStore(db_url) as store:
        [page] = point_in_time_pages(store, days=[t], horizon_days=HORIZON, names=names, catalog=catalog)
    got = dict(zip([int(i) for i in page.user_ids], page.labels.tolist(), strict=True))
    assert got == {1: 0, 3: 1, 4: 0, 5: 0, 6: 0, 8: 1, 9: 0}
    features = page.features.set_axis([int(i) for i in page.user_ids])
    assert features.loc[8, "evt_demo_request_7d"] == 1.0  # the event before T, not the one after
    assert features.loc[6, "events_180d"] == 0.0 and features.loc[9, "days_since_last_event"] == 181.0


def test_several_days_in_one_pass_equal_one_pass_each(sqlite_url: str) -> None:
    _product(sqlite_url, users=600, seed=3)
    catalog = FeatureCatalog()
    days = [midnight(NOW - timedelta(days=d)) for d in (100, 65, 93, 44)]  # unordered, as a caller may give
    with SqlStore(sqlite_url) as store:
        types = store.top_event_types(since=catalog.since(days[0]), as_of=days[0], limit=12)
        names = catalog.feature_names(event_types=types)
        together = list(
            point_in_time_pages(store, days=days, horizon_days=HORIZON, names=names, catalog=catalog, batch_size=250)
        )
        for i, day in enumerate(days):
            alone = list(
                point_in_time_pages(
                    store, days=[day], horizon_days=HORIZON, names=names, catalog=catalog, batch_size=250
                )
            )
            mine = together[i :: len(days)]
            assert [p.as_of for p in mine] == [day] * len(alone)
            for a, b in zip(alone, mine, strict=True):
                assert a.user_ids == b.user_ids
                assert np.array_equal(a.labels, b.labels)
                assert a.features.equals(b.features)


def test_a_sample_keeps_about_one_user_in_k_across_the_whole_key_range(db_url: str) -> None:
    _product(db_url, users=1_200, seed=4)
    catalog = FeatureCatalog()
    day = midnight(NOW - timedelta(days=70))
    names = catalog.feature_names(event_types=["pricing_view", "page_view"])

    def pages(**kw: Any) -> list[Any]:
        with SqlStore(db_url) as store:
            return list(
                point_in_time_pages(
                    store, days=[day], horizon_days=HORIZON, names=names, catalog=catalog, batch_size=100, **kw
                )
            )

    every, third = pages(), pages(sample=3)
    assert [p.user_ids for p in third] == [p.user_ids for p in pages(sample=3)]  # the same users every time
    everyone = {u: (p, i) for p in every for i, u in enumerate(p.user_ids)}
    sampled = [u for p in third for u in p.user_ids]
    # About a third (binomial: 1,200 users, sd about 16), from the first keys to the last, not a run of them.
    assert 0.25 < len(sampled) / len(everyone) < 0.42
    keys = sorted(everyone)
    assert sampled[0] in keys[: len(keys) // 10] and sampled[-1] in keys[-len(keys) // 10 :]
    # Each sampled lead's features and label are the ones the whole cohort gives it.
    for p in third:
        for i, u in enumerate(p.user_ids):
            whole, j = everyone[u]
            assert p.labels[i] == whole.labels[j]
            assert p.features.iloc[i].equals(whole.features.iloc[j])


def test_one_day_computed_in_the_database_equals_the_daily_grain(db_url: str) -> None:
    """PostgreSQL computes a one-day cohort with the scoring run's feature statement; on dirty events (blank and
    NULL types, NULL and future times, a visitor whose first event comes after T) it equals the daily grain's."""
    _product(db_url, users=900, seed=8)
    day = midnight(NOW - timedelta(days=60))
    with SqlStore(db_url) as store:
        page = store.labelled_users(after=None, limit=40)
    vids = [v for v in page.visitor_ids if v is not None]
    rows = [
        (vids[0], "  Pricing_View\t", day - timedelta(hours=1)),
        (vids[1], "   ", day - timedelta(days=2)),
        (vids[2], None, day - timedelta(days=3)),
        (vids[3], "page_view", None),
        (vids[4], "page_view", day + timedelta(days=HORIZON, seconds=1)),
        ("late-visitor", "page_view", day + timedelta(days=3)),
    ]
    sqlite = db_url.startswith("sqlite")
    engine = engine_for(db_url)
    with engine.begin() as conn:
        late = {"u": page.user_ids[5]}
        moved = "UPDATE users SET visitor_id = 'late-visitor', converted_at = NULL WHERE user_id = :u"
        conn.execute(sa.text(moved), late)
        conn.execute(sa.text("DELETE FROM events WHERE visitor_id = 'late-visitor'"))
        for v, t, at in rows:
            conn.execute(
                sa.text("INSERT INTO events (visitor_id, event_type, created_at) VALUES (:v, :t, :c)"),
                {"v": v, "t": t, "c": at.strftime("%Y-%m-%d %H:%M:%S.%f") if (sqlite and at) else at},
            )
    engine.dispose()
    catalog = FeatureCatalog()
    names = catalog.feature_names(event_types=["pricing_view", "page_view"])

    def pages(in_store: bool) -> list[Any]:
        with SqlStore(db_url) as store:
            return list(
                point_in_time_pages(
                    store,
                    days=[day],
                    horizon_days=HORIZON,
                    names=names,
                    catalog=catalog,
                    batch_size=300,
                    in_store=in_store,
                )
            )

    with SqlStore(db_url) as store:  # PostgreSQL computes it; SQLite has only the daily grain
        request = FeatureRequest(catalog=catalog, names=names)
        computed = store.cohort_features(vids, as_of=day, until=day + timedelta(days=HORIZON), request=request)
    assert (computed is None) == sqlite
    grain, database = pages(False), pages(True)
    assert sum(len(p.user_ids) for p in grain) > 500
    assert page.user_ids[5] not in {u for p in grain for u in p.user_ids}  # not a lead yet at T
    for a, b in zip(grain, database, strict=True):
        assert a.user_ids == b.user_ids
        assert np.array_equal(a.labels, b.labels)
        pd.testing.assert_frame_equal(a.features.reset_index(drop=True), b.features.reset_index(drop=True))


def test_served_scores_match_recomputed_until_an_event_arrives_late(product: dict[str, Any]) -> None:
    from scorer.cohorts import score_cohorts
    from scorer.edge import model_source, store_options
    from scorer.evaluation import EvaluateOptions, evaluate_version
    from scorer.job import JobOptions, score_users

    url, settings, reg = product["url"], product["settings"], product["registry"]
    t = midnight(product["as_of"] + timedelta(days=HORIZON + 14))
    resolved = reg.resolve(pin="1")
    model = reg.load(resolved)
    catalog = FeatureCatalog()
    # The daily run of day T, at midnight: it wrote each user's score and a history row at T.
    job = JobOptions(select="all", leads_only=False, history=True)
    with SqlStore(url) as store:
        summary = score_users(store=store, model=model, options=job, catalog=catalog, now=t)
        assert summary.users_scored > 0

        def both() -> tuple[dict[Any, float], dict[Any, float]]:
            [c] = score_cohorts(store, days=[t], horizon_days=HORIZON, models={"1": model}, catalog=catalog)
            served = store.served_scores(at=t, model=resolved.identity)
            return dict(zip(c.user_ids, c.scores["1"].tolist(), strict=True)), served

        recomputed, served = both()
        assert set(recomputed) <= set(served)
        assert all(abs(served[u] - s) < 1e-12 for u, s in recomputed.items())
    # A later run's row (after T) and an older one (before T's) do not change what was shown at T.
    some = next(iter(recomputed))
    for when, score in ((t + timedelta(hours=1), 0.123), (t - timedelta(days=1), 0.456)):
        execute(
            url,
            "INSERT INTO lead_score_history (user_id, scored_at, score, model_version) VALUES (:u, :at, :s, :m)",
            params={"u": some, "at": when.isoformat(sep=" "), "s": score, "m": resolved.identity},
        )
    with SqlStore(url) as store:
        assert store.served_scores(at=t, model=resolved.identity)[some] == served[some]
        assert store.served_scores(at=t + timedelta(hours=2), model=resolved.identity)[some] == 0.123
        assert store.served_scores(at=t, model="another/model") == {}
        # A sample's ids: only those users, with the same scores (the daily check's sampled read).
        assert store.served_scores(at=t, model=resolved.identity, user_ids=[some]) == {some: served[some]}
    options = EvaluateOptions(store=store_options(settings), model=model_source(settings))
    out = evaluate_version(options, version="1", start=t.date(), end=t.date(), record=False)
    [c] = out.cohorts
    assert c["served"]["coverage"] == 1.0
    assert (c["served"]["n"], c["served"]["roc_auc"]) == (c["n"], c["roc_auc"])

    # An event of the evening before T, logged after the run: the recomputed features see it, the served
    # score did not.
    [rows] = execute(url, "SELECT user_id, visitor_id FROM users WHERE visitor_id IS NOT NULL ORDER BY user_id")
    late_user, visitor = next((u, v) for u, v in rows if u in recomputed)
    execute(
        url,
        "INSERT INTO events (visitor_id, event_type, created_at) VALUES (:v, 'demo_request', :at)",
        params={"v": visitor, "at": t - timedelta(hours=2)},
    )
    with SqlStore(url) as store:
        recomputed, served = both()
    assert {u for u, s in recomputed.items() if abs(served[u] - s) > 1e-12} == {late_user}


def _scoring_run(settings: Any, mlflow_local: Any, **live: Any) -> tuple[Any, Any]:
    """A daily run (`run_scoring`) with the live check on; returns its summary and its MLflow run."""
    from scorer.app import LiveOptions, run_scoring
    from scorer.edge import run_options

    options = run_options(settings)
    options = type(options)(**{**options.__dict__, "live": LiveOptions(**live)})
    summary = run_scoring(options, artifact_location=mlflow_local.artifacts)
    reg = Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)
    exp = reg.client.get_experiment_by_name(settings.scoring_experiment)
    [run] = reg.client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"], max_results=1)
    return summary, run


def test_the_daily_run_evaluates_the_matured_cohort_once(product: dict[str, Any], mlflow_local: Any) -> None:
    settings, reg, url = product["settings"], product["registry"], product["url"]
    summary, run = _scoring_run(settings, mlflow_local, every_days=7, auc_drop=1.0)
    assert summary.exit_code == 0
    scored = execute(url, "SELECT count(*) FROM users WHERE lead_score IS NOT NULL")[0][0][0]
    assert scored == summary.users_scored > 0
    m = run.data.metrics
    assert m["live/n"] > 0 and m["live/positives"] > 0
    assert m["live/roc_auc"] > 0.6 and m["live/roc_auc_lo"] < m["live/roc_auc"] < m["live/roc_auc_hi"]
    assert m["live/top_decile_lift_lo"] < m["live/top_decile_lift"] < m["live/top_decile_lift_hi"]
    assert m["live/degraded"] == 0.0 and "live/failed" not in m
    assert m["live/seconds"] > 0  # what the check added to the run (its budget: docs/live-performance.md)
    note = run.data.tags["mlflow.note.content"]
    tags = reg.client.get_model_version(reg.model_name, "1").tags
    assert f"Live on leads open on {tags['live_as_of']}" in note and "degraded" not in note
    # The cohort is the newest weekly one from the first honest day whose horizon has passed.
    first_honest = (product["as_of"] + timedelta(days=HORIZON)).date()
    age = (date.fromisoformat(tags["live_as_of"]) - first_honest).days
    assert age % 7 == 0 and 0 <= (NOW - timedelta(days=HORIZON)).date().toordinal() - first_honest.toordinal() - age < 7
    # The next day's run finds nothing due: no live/ metrics, no line.
    _, again = _scoring_run(settings, mlflow_local, every_days=7, auc_drop=1.0)
    assert not [k for k in again.data.metrics if k.startswith("live/")]
    assert "Live on" not in again.data.tags["mlflow.note.content"]


def test_a_degraded_model_is_flagged(product: dict[str, Any], mlflow_local: Any) -> None:
    settings, reg = product["settings"], product["registry"]
    # Version 2 ranks leads backwards; give it the holdout figure a good training run would have had.
    reg.client.set_model_version_tag(reg.model_name, "2", "holdout_roc_auc", "0.800000")
    reg.promote("2", actor="test", force=True)
    _, run = _scoring_run(settings, mlflow_local, every_days=7, auc_drop=0.05)
    m = run.data.metrics
    assert m["live/roc_auc"] < 0.4 and m["live/degraded"] == 1.0
    assert "**The model has degraded**" in run.data.tags["mlflow.note.content"]


def test_a_failing_evaluation_costs_no_score(product: dict[str, Any], mlflow_local: Any) -> None:
    settings, reg, url = product["settings"], product["registry"], product["url"]
    reg.client.set_model_version_tag(reg.model_name, "1", "horizon_days", "thirty")  # a tag nobody can read
    summary, run = _scoring_run(settings, mlflow_local, every_days=7)
    assert summary.exit_code == 0 and run.info.status == "FINISHED"
    scored = execute(url, "SELECT count(*) FROM users WHERE lead_score IS NOT NULL")[0][0][0]
    assert scored == summary.users_scored == summary.users_selected > 0
    assert run.data.metrics["live/failed"] == 1.0
    assert "**The live evaluation failed** (ValueError" in run.data.tags["mlflow.note.content"]


def test_evaluate_over_rest_is_refused_naming_database_url(tmp_path: Path) -> None:
    env = {k: v for k, v in job_env("sqlite:///unused.db", _NoSettings(), "x").items() if k != "DATABASE_URL"}
    env |= {"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_abc"}
    out = _cli("evaluate", env=env)
    assert out.returncode == 4
    assert "REST API is not made for" in out.stderr and "DATABASE_URL" in out.stderr
    assert "sb_secret_abc" not in out.stderr + out.stdout


class _NoSettings:
    mlflow_tracking_uri = "http://127.0.0.1:9"
    model_name = "unused"
    population = "everyone"


def test_a_daily_run_over_rest_says_its_check_was_skipped(pg_url: str, mlflow_local: Any) -> None:
    from scorer.app import LiveOptions, run_scoring
    from scorer.edge import run_options
    from scorer.stores.rest import RestStore
    from tests.conftest import REST_KEY
    from tests.postgrest_standin import PostgrestStandin

    _product(pg_url, users=600)
    settings = mlflow_local.settings(pg_url)
    as_of = midnight(NOW - timedelta(days=TRAINED_DAYS_AGO))
    train_model(
        train_options(settings, as_of=as_of, horizon_days=HORIZON, promote=True),
        artifact_location=mlflow_local.artifacts,
    )
    options = run_options(settings)
    options = type(options)(**{**options.__dict__, "live": LiveOptions(every_days=7)})
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=1000) as rest:
        store = RestStore(rest.url, key=REST_KEY, max_rows=rest.max_rows)
        store.open()
        try:
            summary = run_scoring(options, store=store, artifact_location=mlflow_local.artifacts)
        finally:
            store.close()
    assert summary.exit_code == 0 and summary.users_scored > 0
    reg = Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)
    exp = reg.client.get_experiment_by_name(settings.scoring_experiment)
    [run] = reg.client.search_runs([exp.experiment_id])
    assert "Live check skipped" in run.data.tags["mlflow.note.content"]
    assert "DATABASE_URL" in run.data.tags["mlflow.note.content"]
    assert not [k for k in run.data.metrics if k.startswith("live/")]


def test_an_undeclared_import_counts_as_trained_on_its_registration_day() -> None:
    from datetime import UTC

    from lead_errors import SettingsError
    from registry import ResolvedVersion, training_window

    registered = datetime(2026, 10, 3, 15, 4, tzinfo=UTC)
    v = ResolvedVersion(
        name="m", version="5", how="pin", run_id=None, model_id=None, source="", tags={}, created=registered
    )
    w = training_window(v)
    assert (w.first_honest_day, w.horizon_days, w.source) == (date(2026, 10, 3), 30, "registered")
    v14 = ResolvedVersion(**{**v.__dict__, "tags": {"horizon_days": "14"}})
    assert (training_window(v14).first_honest_day, training_window(v14).horizon_days) == (date(2026, 10, 3), 14)
    with pytest.raises(SettingsError, match="first honest cohort is 2026-10-03"):
        w.require_honest(date(2026, 10, 2), version="5")
    w.require_honest(date(2026, 10, 3), version="5")
