"""Compare on live evidence and promotion that proves (issue 23, items 4 and 5): `registry compare`'s figures,
the guard that refuses a version whose scores are 1 - production's, `--force` recorded, auto-promotion of a
clearly better challenger and a tie left alone; SQLite and PostgreSQL (the product of tests/test_live.py)."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from models.metrics import Z95
from registry import Registry
from scorer.cohorts import CohortScores, midnight
from scorer.compare import AUTO_ACTOR, pooled_pair, verdict_of
from scorer.edge import import_options
from scorer.trainer import import_joblib
from tests.support import NOW, execute
from tests.test_live import HORIZON, _cli, _count, _scoring_run, live_product


@pytest.fixture
def product(db_url: str, mlflow_local: Any, tmp_path: Path) -> dict[str, Any]:
    """tests/test_live.py's product: version 1 trained 120 days ago, version 2 its negation (1 - its scores)."""
    return live_product(db_url, mlflow_local, tmp_path)


def test_pooled_pair_by_hand() -> None:
    # tests/test_metrics.py's seven leads (3 converted), split into two cohort days; lead 1 is open on both,
    # so it counts twice, as evaluate's pooled figure counts it. Stacked, they are the hand-computed case:
    # AUC_a = 7/8, AUC_b = 2/3, diff = -5/24, var(diff) = 17/432.
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    a = np.array([0.9, 0.6, 0.4, 0.6, 0.3, 0.2, 0.1])
    b = np.array([0.5, 0.7, 0.2, 0.6, 0.1, 0.3, 0.4])
    t = midnight(NOW)
    cohorts = [
        CohortScores(as_of=t, user_ids=[1, 2, 3, 4], labels=y[:4], scores={"a": a[:4], "b": b[:4]}),
        CohortScores(as_of=t + timedelta(days=7), user_ids=[1, 5, 6], labels=y[4:], scores={"a": a[4:], "b": b[4:]}),
    ]
    n, positives, paired = pooled_pair(cohorts)
    assert (n, positives) == (7, 3)
    assert paired is not None
    assert (paired.auc_a, paired.auc_b) == (pytest.approx(7 / 8), pytest.approx(2 / 3))
    assert paired.diff == pytest.approx(-5 / 24) and paired.variance == pytest.approx(17 / 432)
    half = Z95 * math.sqrt(17 / 432)  # 0.389: the interval holds 0
    assert (paired.lo, paired.hi) == (pytest.approx(-5 / 24 - half), pytest.approx(-5 / 24 + half))
    assert verdict_of(paired, positives=3, min_conversions=3) == "indistinguishable"
    assert verdict_of(paired, positives=3, min_conversions=4) == "not_enough_data"
    assert pooled_pair([]) == (0, 0, None)


def _env(product: dict[str, Any], **extra: str) -> dict[str, str]:
    """The CLI's environment on the product, reading scoring runs where `_scoring_run` records them."""
    return product["env"] | {"LEAD_SCORER_SCORING_EXPERIMENT": product["settings"].scoring_experiment} | extra


def test_a_reversed_challenger_is_compared_refused_and_forced(product: dict[str, Any], mlflow_local: Any) -> None:
    reg: Registry = product["registry"]
    env, url = _env(product), product["url"]
    out = _cli("registry", "challenge", "2", env=env)
    assert out.returncode == 0, out.stderr
    summary, run = _scoring_run(product["settings"], mlflow_local, every_days=0)
    assert summary.exit_code == 0 and run.data.metrics["challenger/rank_corr"] < 0

    out = _cli("registry", "compare", "--json", env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["a"]["version"], got["b"]["version"]) == ("1", "2")
    live = got["live"]
    assert got["verdict"] == "a_better"
    lo, hi = live["diff_ci"]
    assert lo < live["diff"] < hi < 0
    # Version 2's scores are 1 - version 1's: its AUC is the mirror, and the difference is 1 - 2 AUC_a (exactly,
    # but for a near-tie that floating point turns around: one pair in millions).
    assert live["roc_auc_b"] == pytest.approx(1 - live["roc_auc_a"], abs=1e-6)
    assert live["diff"] == pytest.approx(1 - 2 * live["roc_auc_a"], abs=1e-6)
    # The stacked cohorts, counted in plain SQL: weekly, after both windows, matured.
    first = (product["as_of"] + timedelta(days=HORIZON)).date()
    assert live["first_honest_day"] == f"{first:%Y-%m-%d}"
    days = [date.fromisoformat(live["to"]) - timedelta(days=7 * k) for k in range(live["cohorts"])]
    assert min(days) == date.fromisoformat(live["from"]) >= first
    counted = [_count(url, d, HORIZON) for d in days]
    assert (live["n"], live["positives"]) == (sum(c[0] for c in counted), sum(c[1] for c in counted))
    assert live["positives"] >= 100
    # The latest shadow agreement is the run's.
    assert got["shadow"]["run_id"] == run.info.run_id
    assert got["shadow"]["rank_corr"] == pytest.approx(run.data.metrics["challenger/rank_corr"])
    # The version page shows the comparison against production, once.
    mv = reg.client.get_model_version(reg.model_name, "2")
    assert mv.tags["compare_verdict"] == "a_better" and mv.tags["compare_against"] == "1"
    assert mv.description.count("Live comparison with version 1") == 1

    out = _cli("registry", "promote", "2", env=env)
    assert out.returncode == 7, out.stdout + out.stderr
    assert "significantly worse than production version 1 on live data" in out.stderr
    assert f"difference {live['diff']:+.3f}".replace("-", "\N{MINUS SIGN}") in out.stderr
    assert reg.resolve().version == "1"
    assert "promoted_by" not in reg.client.get_model_version(reg.model_name, "2").tags

    out = _cli("registry", "promote", "2", "--force", "--actor", "ana", env=env)
    assert out.returncode == 0, out.stderr
    assert reg.resolve().version == "2"
    mv = reg.client.get_model_version(reg.model_name, "2")
    assert (mv.tags["promoted_by"], mv.tags["promotion_forced"], mv.tags["promoted_on"]) == ("ana", "true", "live")
    assert "Promoted to production by ana" in mv.description
    assert "with --force, past this refusal: version 2 ranks leads significantly worse" in mv.description


def test_too_few_conversions_or_no_sql_store_fall_back_to_the_holdout_rule(product: dict[str, Any]) -> None:
    reg: Registry = product["registry"]
    env = _env(product, LEAD_SCORER_MIN_CONVERSIONS="1000000")
    out = _cli("registry", "compare", "1", "2", "--json", env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["verdict"] == "not_enough_data" and got["live"]["diff_ci"][1] < 0  # significant, but too few
    assert "fewer than the 1,000,000" in got["advice"]
    assert got["shadow"] is None  # no run has had this pair
    out = _cli("registry", "compare", "1", "2", env=env)
    assert out.returncode == 0, out.stderr
    assert "verdict: not_enough_data: " in out.stdout
    auc_a, auc_b = got["live"]["roc_auc_a"], got["live"]["roc_auc_b"]
    assert f"{'live ROC AUC (same leads)':<34} {auc_a:>12.3f} {auc_b:>12.3f}" in out.stdout

    out = _cli("registry", "promote", "2", env=env)
    assert out.returncode == 7
    assert "holdout, lower than production version 1's" in out.stderr  # the import has no holdout figure
    assert "decided on the holdout rule (no live verdict)" in out.stderr

    no_sql = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    out = _cli("registry", "promote", "2", env=no_sql)
    assert out.returncode == 7
    assert "the live check could not run" in out.stderr and "holdout, lower" in out.stderr
    assert reg.resolve().version == "1"


def _import_same(product: dict[str, Any], tmp_path: Path) -> str:
    """Version 1's pipeline, unchanged, imported again with its window: a challenger that ties."""
    settings, reg = product["settings"], product["registry"]
    path = tmp_path / "same.joblib"
    joblib.dump(reg.load(reg.resolve(pin="1")).pipeline, path)
    return import_joblib(
        import_options(settings, trust=True, as_of=product["as_of"], horizon_days=HORIZON), path
    ).version


def test_auto_promotion_promotes_a_clearly_better_challenger_and_leaves_a_tie(
    product: dict[str, Any], mlflow_local: Any, tmp_path: Path
) -> None:
    settings, reg, url = product["settings"], product["registry"], product["url"]
    reg.promote("2", actor="test", force=True)  # production ranks backwards; the good version challenges it
    reg.challenge("1", actor="test")
    summary, run = _scoring_run(settings, mlflow_local, every_days=0, auto_promote=True)
    assert summary.exit_code == 0 and summary.users_scored > 0
    # Auto-promotion never costs a score: this run's scores are version 2's, every one of them.
    [[(written, models)]] = execute(
        url, "SELECT count(*), count(DISTINCT lead_score_model_version) FROM users WHERE lead_score IS NOT NULL"
    )
    assert (written, models) == (summary.users_scored, 1)
    m, tags = run.data.metrics, run.data.tags
    assert tags["auto_promotion"] == "promoted" and m["compare/promoted"] == 1.0
    assert m["compare/diff_lo"] > 0 and m["compare/positives"] >= 100
    assert "**Auto-promoted** challenger v1 to production, replacing v2" in tags["mlflow.note.content"]
    assert reg.resolve().version == "1" and reg.resolve_challenger() is None
    mv = reg.client.get_model_version(reg.model_name, "1")
    assert (mv.tags["promoted_by"], mv.tags["promoted_on"], mv.tags["promotion_forced"]) == (
        AUTO_ACTOR,
        "live",
        "false",
    )
    assert f"Promoted to production by {AUTO_ACTOR}" in mv.description and "on live evidence: ROC AUC" in mv.description

    # A tie (the same pipeline imported again) changes nothing, and the run says so.
    same = _import_same(product, tmp_path)
    reg.challenge(same, actor="test")
    _, run = _scoring_run(settings, mlflow_local, every_days=0, auto_promote=True)
    m, tags = run.data.metrics, run.data.tags
    assert tags["auto_promotion"] == "indistinguishable" and m["compare/promoted"] == 0.0
    assert m["compare/diff"] == 0.0 and m["compare/diff_lo"] <= 0 <= m["compare/diff_hi"]
    assert f"challenger v{same} stays challenger" in tags["mlflow.note.content"]
    assert reg.resolve().version == "1" and reg.resolve_challenger().version == same
    # At most weekly: the next run finds no new cohort to compare, and says nothing of it.
    _, run = _scoring_run(settings, mlflow_local, every_days=0, auto_promote=True)
    assert "auto_promotion" not in run.data.tags and not [k for k in run.data.metrics if k.startswith("compare/")]


def test_compare_over_rest_is_refused_naming_database_url() -> None:
    from tests.jobproc import job_env
    from tests.test_live import _NoSettings

    env = {k: v for k, v in job_env("sqlite:///unused.db", _NoSettings(), "x").items() if k != "DATABASE_URL"}
    env |= {"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_abc"}
    out = _cli("registry", "compare", "--json", env=env)
    assert out.returncode == 4
    assert "REST API is not made for" in out.stderr and "DATABASE_URL" in out.stderr
    assert "sb_secret_abc" not in out.stderr + out.stdout and out.stdout == ""
