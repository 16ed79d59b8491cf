"""The challenger (issue 23): its alias, shadow scores beside production's that never touch users, what the
run says about it, and a challenger that cannot load leaving production's run whole. SQLite, PostgreSQL and
the REST stand-in."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from lead_errors import SettingsError
from models import FeatureCatalog
from models.metrics import wilson_interval
from registry import Registry
from scorer.app import run_scoring
from scorer.cli import app
from scorer.edge import import_options, model_source, run_options, train_options
from scorer.settings import load_settings
from scorer.shadow import compare_scores, not_shadowed, rank_corr_interval
from scorer.trainer import import_joblib, train_model
from tests.support import NOW, execute, make_product, scoring_runs, snapshot

#: Every run of a test at one time, so a run with a challenger and one without write the same lead_scored_at.
AT = NOW.replace(second=0) - timedelta(minutes=1)
SCORE_COLUMNS = ("lead_score", "lead_score_model_version", "lead_scored_at", "lead_score_reasons")


def _registry(settings) -> Registry:
    return model_source(settings).registry()


def _count_updates(target) -> None:
    """A trigger that counts every row UPDATE on users (whatever it changes) in update_count."""
    if target.kind == "sqlite":
        execute(
            target.url,
            "CREATE TABLE update_count (n INTEGER NOT NULL)",
            "INSERT INTO update_count VALUES (0)",
            "CREATE TRIGGER count_updates AFTER UPDATE ON users BEGIN UPDATE update_count SET n = n + 1; END",
        )
        return
    execute(
        target.url,
        "CREATE TABLE update_count (n integer NOT NULL)",
        "INSERT INTO update_count VALUES (0)",
        "CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE public.update_count SET n = n + 1; RETURN NEW; END $$",
        "CREATE TRIGGER count_updates AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION count_update()",
    )


def _updates(target) -> int:
    return int(execute(target.url, "SELECT n FROM update_count")[0][0][0])


def _forget_scores(target) -> None:
    """Back to before the first run: no score, no checkpoint, no update counted."""
    execute(
        target.url,
        "UPDATE users SET lead_score = NULL, lead_score_model_version = NULL, lead_scored_at = NULL, "
        "lead_score_reasons = NULL",
        "DELETE FROM lead_scorer_checkpoints",
        "UPDATE update_count SET n = 0",
    )


def _shadow(target) -> pd.DataFrame:
    frame = snapshot(target.url, "lead_score_shadow")
    return frame.set_index("user_id")


def _run(settings, target, **kw):
    with target.store() as store:
        return run_scoring(run_options(settings), store=store, now=AT, **kw)


def test_a_challenger_never_touches_users_and_shadow_scores_what_it_writes_once_promoted(target, mlflow_local):
    make_product(target.url, users=300, seed=31)
    settings = mlflow_local.settings(target.url, batch_size=120)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    # A different model (other event types, other seed), made challenger by the retrain the weekly cron runs.
    out = train_model(
        train_options(settings, challenger=True, seed=1, top_event_types=6), artifact_location=mlflow_local.artifacts
    )
    assert out.challenger and _registry(settings).resolve_challenger().version == "2"
    _count_updates(target)
    before = snapshot(target.url)

    with_challenger = _run(settings, target)
    users_with, updates_with = snapshot(target.url), _updates(target)

    _forget_scores(target)
    assert snapshot(target.url).equals(before)
    assert _registry(settings).clear_challenger() == "2"
    alone = _run(settings, target)
    users_alone, updates_alone = snapshot(target.url), _updates(target)

    # Every column of every user, as production alone writes it; and not one UPDATE more.
    assert with_challenger.exit_code == alone.exit_code == 0
    assert with_challenger.users_scored == alone.users_scored == 300
    pd.testing.assert_frame_equal(users_with, users_alone)
    assert updates_with == updates_alone == 300
    # The challenger's scores are in the job's own table, one row per user, under its identity.
    shadow = _shadow(target)
    v2 = _registry(settings).resolve(pin="2")
    assert len(shadow) == 300 and set(shadow["model_version"]) == {v2.identity}
    assert not users_with["lead_score_model_version"].str.startswith("2/").any()

    first, second = scoring_runs(settings)
    assert first.data.tags["challenger_version"] == "2" and "challenger_version" not in second.data.tags
    metrics = first.data.metrics
    assert metrics["challenger/version"] == 2 and metrics["challenger/failed"] == 0
    assert metrics["challenger/n"] == 300 and metrics["challenger/population_n"] == 300
    assert -1 <= metrics["challenger/rank_corr_lo"] <= metrics["challenger/rank_corr"] <= 1
    assert 0 <= metrics["challenger/tier_change_share"] <= 1
    assert "Challenger v2 shadow-scored 300 leads" in first.data.tags["mlflow.note.content"]
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    worst = json.loads(Path(client.download_artifacts(first.info.run_id, "challenger_disagreements.json")).read_text())
    assert len(worst) == 100 and set(worst[0]) == {"user_id", "production", "challenger"}
    gaps = [abs(w["production"] - w["challenger"]) for w in worst]
    assert gaps == sorted(gaps, reverse=True)
    assert worst[0]["challenger"] == shadow.loc[worst[0]["user_id"], "score"]

    # Promoted, it writes to users exactly what it wrote to the shadow table: to the bit.
    _registry(settings).promote("2", actor="test", force=True)
    promoted = _run(settings, target)
    assert promoted.users_scored == 300 and promoted.model_version == "2"
    written = snapshot(target.url).set_index("user_id")["lead_score"]
    assert np.array_equal(written.loc[shadow.index].to_numpy(float), shadow["score"].to_numpy(float))


def test_a_challenger_that_cannot_load_leaves_productions_run_whole(target, mlflow_local, tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline as sk_pipeline

    make_product(target.url, users=150, seed=32)
    settings = mlflow_local.settings(target.url, batch_size=60)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    # A version whose skops file asks to trust types the job does not allow: the registry refuses to make it
    # challenger, and one set by hand anyway (--force, or the MLflow UI) is reported, not loaded.
    names = FeatureCatalog().feature_names(event_types=["pricing_view"])
    x = pd.DataFrame(np.random.default_rng(2).poisson(3, (300, len(names))).astype(float), columns=names)
    joblib.dump(sk_pipeline(HistGradientBoostingClassifier(max_iter=5)).fit(x, x[names[0]] > 3), tmp_path / "h.joblib")
    import_joblib(import_options(settings, trust=True), tmp_path / "h.joblib", artifact_location=mlflow_local.artifacts)
    reg = _registry(settings)
    with pytest.raises(Exception, match="asks to trust types"):
        reg.challenge("2", actor="test")
    assert reg.resolve_challenger() is None
    assert reg.challenge("2", actor="test", force=True) is None

    summary = _run(settings, target)

    assert summary.exit_code == 0 and summary.users_scored == summary.users_changed == 150
    assert snapshot(target.url)["lead_score_model_version"].str.startswith("1/").all()
    assert _shadow(target).empty
    (run,) = scoring_runs(settings)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["challenger/failed"] == 1 and run.data.metrics["challenger/version"] == 2
    assert "challenger/n" not in run.data.metrics
    note = run.data.tags["mlflow.note.content"]
    assert "**Challenger v2 was not shadow-scored**" in note and "asks to trust types" in note


def test_a_challenger_scoring_one_minus_production_is_ranked_backwards(sqlite_url, mlflow_local, tmp_path):
    """The issue's done-when, the part this branch reaches: production's pipeline with its coefficients and
    intercept negated, imported from joblib, is shadow-scored; users keep production's scores; rank_corr < 0."""
    make_product(sqlite_url, users=200, seed=33)
    settings = mlflow_local.settings(sqlite_url)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    reg = _registry(settings)
    production = reg.load(reg.resolve())
    flipped = copy.deepcopy(production.pipeline)
    last = flipped.steps[-1][1]
    last.coef_, last.intercept_ = -last.coef_, -last.intercept_
    joblib.dump(flipped, tmp_path / "flipped.joblib")
    cli = CliRunner()
    env = {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "LEAD_SCORER_MODEL_NAME": settings.model_name}
    imported = cli.invoke(app, ["registry", "import-joblib", str(tmp_path / "flipped.joblib"), "--trust"], env=env)
    assert imported.exit_code == 0, imported.output
    made = cli.invoke(app, ["registry", "challenge", "2", "--actor", "data team"], env=env)
    assert made.exit_code == 0 and "challenger is now version 2" in made.output

    summary = run_scoring(run_options(settings), now=AT)

    assert summary.exit_code == 0
    users = snapshot(sqlite_url).set_index("user_id")
    shadow = _shadow_sqlite(sqlite_url)
    assert users["lead_score_model_version"].str.startswith("1/").all()
    # 1 - p, up to the last bits of the logistic function.
    assert np.allclose(shadow.loc[users.index, "score"], 1 - users["lead_score"], atol=1e-12)
    (run,) = scoring_runs(settings)
    assert run.data.metrics["challenger/rank_corr"] < 0
    assert run.data.metrics["challenger/rank_corr"] == -1.0 and run.data.metrics["challenger/top_decile_overlap"] == 0


def _shadow_sqlite(url: str) -> pd.DataFrame:
    return snapshot(url, "lead_score_shadow").set_index("user_id")


def test_registry_challenge_sets_lists_stamps_and_clears(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=120, seed=34)
    settings = mlflow_local.settings(sqlite_url)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    train_model(train_options(settings, seed=1), artifact_location=mlflow_local.artifacts)
    env = {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "LEAD_SCORER_MODEL_NAME": settings.model_name}
    cli = CliRunner()

    assert cli.invoke(app, ["registry", "challenge"], env=env).exit_code == 2  # neither a version nor --clear
    made = cli.invoke(app, ["registry", "challenge", "2", "--actor", "ana"], env=env)
    assert made.exit_code == 0, made.output
    # A Spark run (which does not shadow-score) says so in its description while a challenger is set.
    production = _registry(settings).resolve()
    said = not_shadowed(_registry(settings), production=production, engine="Spark")
    assert said is not None and said.startswith("**Challenger v2 was not shadow-scored**: Spark runs score")
    listed = cli.invoke(app, ["registry", "list"], env=env).output.splitlines()
    assert listed[1].split()[:2] == ["2", "challenger"] and listed[2].split()[:2] == ["1", "production"]
    version = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_model_version(settings.model_name, "2")
    assert version.tags["challenger_by"] == "ana"
    stamped = datetime.fromisoformat(version.tags["challenger_at"])
    assert abs(stamped - datetime.now(UTC)) < timedelta(minutes=5)
    assert version.description.endswith(f"Made challenger by ana at {version.tags['challenger_at'][:16]} UTC.")

    # The alias set by hand in the MLflow UI is the same alias.
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    client.set_registered_model_alias(settings.model_name, "challenger", "1")
    assert _registry(settings).resolve_challenger().version == "1"
    # The same version as production is no challenger: nothing to shadow.
    assert run_scoring(run_options(settings), now=AT).users_scored == 120
    assert "challenger_version" not in scoring_runs(settings)[0].data.tags

    cleared = cli.invoke(app, ["registry", "challenge", "--clear"], env=env)
    assert cleared.exit_code == 0 and "was version 1" in cleared.output
    assert _registry(settings).resolve_challenger() is None
    assert not_shadowed(_registry(settings), production=production, engine="Spark") is None
    assert "there was no challenger" in cli.invoke(app, ["registry", "challenge", "--clear"], env=env).output


def test_train_challenger_and_promote_together_is_refused(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=60, seed=35)
    settings = mlflow_local.settings(sqlite_url)
    with pytest.raises(Exception, match="--promote and --challenger"):
        train_model(train_options(settings, promote=True, challenger=True))
    assert _registry(settings).versions() == []


def test_comparison_figures_by_hand():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    b = np.array([0.1, 0.3, 0.2, 0.4])
    got = compare_scores(a, b, hot=0.25, warm=0.15)
    # Ranks 1 2 3 4 against 1 3 2 4: sum of d² = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    assert got["rank_corr"] == pytest.approx(0.8)
    # The top tenth is ceil(4 / 10) = 1 lead: index 3 on both sides.
    assert got["top_decile_overlap"] == 1.0
    # Tiers (cold < 0.15 <= warm < 0.25 <= hot): 0 1 2 2 against 0 2 1 2, two of four change.
    assert got["tier_change_share"] == 0.5
    lo, hi = wilson_interval(2, 4)
    assert (got["tier_change_share_lo"], got["tier_change_share_hi"]) == (lo, hi)
    # Wilson by hand for 2 of 4, z² = 3.8415: centre (0.5 + z²/8) / (1 + z²/4) = 0.5, half-width
    # z * sqrt(0.25 / 4 + z² / 64) / (1 + z² / 4) = 1.96 * 0.3500 / 1.9604 = 0.3500.
    assert (lo, hi) == (pytest.approx(0.1500, abs=1e-4), pytest.approx(0.8500, abs=1e-4))
    # Bonett-Wright at r = 0.5, n = 103: z = atanh(0.5) = 0.5493, se = sqrt(1.125 / 100) = 0.1061.
    lo, hi = rank_corr_interval(0.5, 103)
    assert (lo, hi) == (pytest.approx(np.tanh(0.5493 - 1.96 * 0.10607), abs=1e-3), pytest.approx(0.6394, abs=1e-3))
    same = compare_scores(a, a, hot=0.25, warm=0.15)
    assert same["rank_corr"] == 1.0 and same["psi"] == 0.0 and same["tier_change_share"] == 0.0
    # A constant side has no rank correlation: left out, not reported as 0 or NaN.
    assert "rank_corr" not in compare_scores(a, np.full(4, 0.3), hot=0.25, warm=0.15)


def test_a_failed_retrain_leaves_production_and_challenger_where_they_were(sqlite_url, mlflow_local, tmp_path):
    """The weekly cron's command, `lead-scorer train --challenger`, failing on its database: no version, no move."""
    make_product(sqlite_url, users=300, seed=36)
    settings = mlflow_local.settings(sqlite_url)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    train_model(train_options(settings, challenger=True, seed=1), artifact_location=mlflow_local.artifacts)
    env = {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gone' / 'leads.db'}",  # a database that is not there
    }
    failed = CliRunner().invoke(app, ["train", "--challenger"], env=env)

    assert failed.exit_code == 4, failed.output  # the store's exit code
    reg = _registry(settings)
    assert reg.resolve().version == "1" and reg.resolve_challenger().version == "2"
    assert [v["version"] for v in reg.versions()] == ["2", "1"]


def test_a_shadow_write_the_database_refuses_costs_production_nothing(target, mlflow_local):
    make_product(target.url, users=150, seed=37)
    settings = mlflow_local.settings(target.url, batch_size=60)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    train_model(train_options(settings, challenger=True, seed=1), artifact_location=mlflow_local.artifacts)
    # The shadow table refuses every row (a broken table, a policy): the write of production's scores must not.
    if target.kind == "sqlite":
        execute(
            target.url,
            "CREATE TRIGGER refuse BEFORE INSERT ON lead_score_shadow BEGIN SELECT RAISE(ABORT, 'no shadow'); END",
        )
    else:
        execute(
            target.url,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'no shadow' USING ERRCODE = 'check_violation'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON lead_score_shadow FOR EACH ROW EXECUTE FUNCTION refuse()",
        )

    summary = _run(settings, target)

    assert summary.exit_code == 0 and summary.users_scored == summary.users_changed == 150
    assert summary.users_failed == 0 and summary.failed_batches == 0
    assert snapshot(target.url)["lead_score"].notna().all() and _shadow(target).empty
    (run,) = scoring_runs(settings)
    assert run.data.metrics["challenger/failed"] == 1 and "challenger/n" not in run.data.metrics
    note = run.data.tags["mlflow.note.content"]
    assert "**Challenger v2 stopped being shadow-scored mid-run**" in note and "no shadow" in note


def test_the_population_pairs_are_exactly_the_leads_scored_by_both_to_the_bit(target):
    """`shadow_pairs` (the run's ``challenger/population_*`` figures; on PostgreSQL one binary COPY): every lead
    holding production's score and this challenger's shadow score, each pair as written, to the bit; nothing of
    a user with only one of them, another challenger's rows, or (leads only) a customer."""
    from scorer.stores.base import ScoreWrite, ShadowWrite

    data = make_product(target.url, users=60, seed=59, with_scores=True)
    ids = [int(u) for u in data.users["user_id"]]
    customers = set(data.users.loc[data.users["converted_at"].notna(), "user_id"].astype(int))
    rng = np.random.default_rng(59)
    production, challenger = rng.random(len(ids)), rng.random(len(ids))
    with target.store() as store:
        # Production scores users 0-39, the challenger shadow-scores 20-59, another challenger 0-29.
        store.write_scores(
            ScoreWrite(
                user_ids=ids[:40],
                scores=production[:40],
                model="1/m-a",
                scored_at=AT,
                shadow=ShadowWrite(model="2/m-b", user_ids=ids[20:], scores=challenger[20:]),
            )
        )
        store.write_scores(
            ScoreWrite(
                user_ids=[],
                scores=[],
                model="1/m-a",
                scored_at=AT,
                shadow=ShadowWrite(model="3/m-c", user_ids=ids[:30], scores=1 - challenger[:30]),
            )
        )
        everyone = store.shadow_pairs(production="1/m-a", challenger="2/m-b", leads_only=False)
        leads = store.shadow_pairs(production="1/m-a", challenger="2/m-b", leads_only=True)
        nobody = store.shadow_pairs(production="1/m-b", challenger="2/m-b", leads_only=False)

    def pairs(got) -> list[tuple[float, float]]:
        return sorted(zip(got.production.tolist(), got.challenger.tolist(), strict=True))

    both = range(20, 40)
    assert pairs(everyone) == sorted((production[i], challenger[i]) for i in both)
    assert pairs(leads) == sorted((production[i], challenger[i]) for i in both if ids[i] not in customers)
    assert 0 < len(leads.production) < 20 and everyone.production.dtype == np.float64
    assert len(nobody.production) == len(nobody.challenger) == 0


@pytest.mark.parametrize("alias", ["production", "latest", "two words", ""])
def test_the_challenger_alias_setting_refuses_what_mlflow_or_production_would_not_take(alias):
    with pytest.raises(SettingsError, match="challenger_alias"):
        load_settings(challenger_alias=alias)
    assert load_settings(challenger_alias=" candidate ").challenger_alias == "candidate"
