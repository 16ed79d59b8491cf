"""The whole run through MLflow: resolution, one tracked run per job run, rescoring on promotion, errors."""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from lead_errors import ModelError
from models import make_pipeline
from registry import Registry
from scorer.app import run_scoring
from scorer.cli import app
from scorer.edge import run_options, train_options
from scorer.stores.sql import engine_for
from scorer.trainer import train_model
from tests.support import execute, make_product, snapshot


def _registry(settings) -> Registry:
    return Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)


def _runs(settings) -> list:
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.scoring_experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]) if exp else []


def _train(settings, mlflow_local, **kw):
    return train_model(train_options(settings, **kw), artifact_location=mlflow_local.artifacts)


def test_run_is_tracked_with_version_counts_and_distribution(db_url, mlflow_local):
    make_product(db_url, users=600, seed=21)
    settings = mlflow_local.settings(db_url, batch_size=250, git_commit="abc1234")
    _train(settings, mlflow_local, promote=True)

    summary = run_scoring(run_options(settings), artifact_location=mlflow_local.artifacts)

    assert summary.exit_code == 0 and summary.users_scored == 600
    (run,) = _runs(settings)
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert tags["model_name"] == settings.model_name and tags["model_version"] == "1"
    assert tags["model_resolved_by"] == "alias" and tags["store"] == "sql" and tags["git_commit"] == "abc1234"
    assert tags["model_id"].startswith("m-")
    assert metrics["batches"] == 3 and metrics["users_selected"] == 600 and metrics["users_scored"] == 600
    assert metrics["users_failed"] == 0 and metrics["events_read"] > 0 and metrics["users_per_s"] > 0
    scores = snapshot(db_url)["lead_score"].to_numpy(dtype=float)
    # The distribution is the population's, read back from the database as a 1,000-bin histogram: exact to
    # within half a bin for the mean, one bin for the extremes.
    assert metrics["score_mean"] == pytest.approx(scores.mean(), abs=5e-4)
    assert scores.min() - 1e-3 <= metrics["score_min"] <= scores.min() + 1e-3
    assert scores.max() - 1e-3 <= metrics["score_max"] <= scores.max() + 1e-3
    for p in range(10, 100, 10):
        # From a 1,000-bin histogram: within a bin of the order statistics around the rank.
        lo, hi = np.quantile(scores, p / 100, method="lower"), np.quantile(scores, p / 100, method="higher")
        assert lo - 1e-3 <= metrics[f"score_p{p}"] <= hi + 1e-3
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "batch/users")]
    assert steps == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"score_histogram.json", "run_summary.json", "score_histogram.svg"} <= artifacts
    svg = Path(client.download_artifacts(run.info.run_id, "score_histogram.svg")).read_text()
    assert svg.startswith("<svg") and "600 users (600 written in this run)" in svg and svg.count("<rect") == 21
    hist = json.loads(Path(client.download_artifacts(run.info.run_id, "score_histogram.json")).read_text())
    assert sum(hist["counts"]) == 600


def test_promoting_a_new_version_rescores_everyone_once(db_url, mlflow_local):
    make_product(db_url, users=400, seed=22)
    settings = mlflow_local.settings(db_url, batch_size=150)
    totals: list[int | None] = []  # what each run announced it would score (the progress bar's total)

    def run():
        return run_scoring(run_options(settings), on_start=totals.append)

    _train(settings, mlflow_local, promote=True)
    assert run().users_scored == 400
    assert run().users_scored == 0  # stale: nothing changed

    _train(settings, mlflow_local, seed=1, top_event_types=6)
    _registry(settings).promote("2", force=True, actor="test")
    second = run()

    assert second.users_scored == 400 and second.model_version == "2" and not second.leads_only
    assert {v.split("/")[0] for v in snapshot(db_url)["lead_score_model_version"]} == {"2"}
    assert run().users_scored == 0
    assert totals == [400, 0, 400, 0]
    assert [r.data.tags["model_version"] for r in _runs(settings)] == ["1", "1", "2", "2"]


def test_legacy_stage_promotion_is_honoured(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=200, seed=23)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage(settings.model_name, "1", "Production")
    summary = run_scoring(run_options(settings))
    assert summary.users_scored == 200
    assert _runs(settings)[0].data.tags["model_resolved_by"] == "stage"


def test_no_production_version_is_a_clear_error_and_writes_nothing(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=200, seed=24)
    settings = mlflow_local.settings(sqlite_url)
    before = snapshot(sqlite_url)
    with pytest.raises(ModelError, match="no registered model named"):
        run_scoring(run_options(settings))
    _train(settings, mlflow_local)  # registered, never promoted
    with pytest.raises(ModelError, match="no production version") as err:
        run_scoring(run_options(settings))
    assert "registry promote" in str(err.value)
    assert snapshot(sqlite_url).equals(before)


def test_a_run_that_stops_before_scoring_leaves_no_connection_open(pg_url, mlflow_local):
    make_product(pg_url, users=20, seed=26)
    with pytest.raises(ModelError, match="no registered model named"):
        run_scoring(run_options(mlflow_local.settings(pg_url)))
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    # A closed connection's backend leaves pg_stat_activity as it exits, a moment after the client hangs up.
    deadline = time.monotonic() + 10
    while (left := execute(pg_url, others)[0][0][0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == 0


def test_model_asking_for_unknown_feature_is_refused_before_writing(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=50, seed=25)
    settings = mlflow_local.settings(sqlite_url)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((80, 2)), columns=["events_7d", "lifetime_value_eur"])
    pipe = make_pipeline().fit(x, (x["events_7d"] > 0.5).astype(int))
    reg = _registry(settings)
    reg.register(
        pipe,
        example=x,
        experiment=settings.training_experiment,
        metrics={"roc_auc": 0.9},
        params={},
        version_tags={},
        artifact_location=mlflow_local.artifacts,
    )
    reg.promote("1", actor="test")
    before = snapshot(sqlite_url)
    with pytest.raises(ModelError, match="lifetime_value_eur"):
        run_scoring(run_options(settings))
    assert snapshot(sqlite_url).equals(before)
    assert _runs(settings) == []


def test_failed_batch_marks_the_run_failed_and_exit_nonzero(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=120, seed=26)
    settings = mlflow_local.settings(sqlite_url, batch_size=50)
    _train(settings, mlflow_local, promote=True)
    execute(
        sqlite_url,
        "CREATE TRIGGER refuse BEFORE UPDATE OF lead_score ON users WHEN NEW.user_id = 60 "
        "BEGIN SELECT RAISE(ABORT, 'locked'); END",
    )
    summary = run_scoring(run_options(settings))
    assert summary.exit_code == 1 and summary.users_scored == 119
    (run,) = _runs(settings)
    assert run.info.status == "FAILED" and run.data.metrics["users_failed"] == 1
    assert run.info.run_name.endswith(" UTC · FAILED 1 user"), run.info.run_name
    # The batch whose user failed is counted in users, as the total is; its other users were written.
    assert run.data.metrics["failed_batches"] == 0
    per_batch = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_metric_history(
        run.info.run_id, "batch/users_failed"
    )
    assert sorted(m.value for m in per_batch) == [0.0, 0.0, 1.0]
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    path = client.download_artifacts(run.info.run_id, "failed_users.json")
    failed = json.loads(Path(path).read_text())
    assert [f["user_id"] for f in failed] == ["60"] and "locked" in failed[0]["error"]


def test_pin_wins_over_alias(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=200, seed=27)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local, promote=True)
    _train(settings, mlflow_local, seed=3)
    pinned = settings.model_copy(update={"model_version": "2"})
    assert run_scoring(run_options(pinned)).model_version == "2"
    assert _runs(settings)[0].data.tags["model_resolved_by"] == "pin"


# -- the command line ------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str]) -> object:
    base = {"LEAD_SCORER_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(app, args, env=base | env, catch_exceptions=False)


def test_cli_run_exit_codes(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=200, seed=28)
    settings = mlflow_local.settings(sqlite_url)
    env = {
        "DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_SCORING_EXPERIMENT": settings.scoring_experiment,
    }
    no_model = _cli(["run"], env)
    assert no_model.exit_code == 3 and "no registered model" in no_model.output
    _train(settings, mlflow_local, promote=True)
    assert _cli(["run", "--batch-size", "40", "--dry-run"], env).exit_code == 0
    assert snapshot(sqlite_url)["lead_score"].isna().all()
    ok = _cli(["run", "--batch-size", "40"], env)
    assert ok.exit_code == 0, ok.output
    after = snapshot(sqlite_url)
    leads = after["converted_at"].isna()
    # The command's default population: every open lead scored, every customer left alone.
    assert after.loc[leads, "lead_score"].notna().all() and after.loc[~leads, "lead_score"].isna().all()
    assert 0 < (~leads).sum() < len(after)
    bad = _cli(["run", "--batch-size", "0"], env)
    assert bad.exit_code == 2 and "batch_size" in bad.output
    assert _cli(["run", "--select", "sometimes"], env).exit_code == 2


def test_cli_never_prints_secrets(mlflow_local):
    secret = "s3cr3t-Pa55word"
    env = {
        "DATABASE_URL": f"postgresql://scorer:{secret}@127.0.0.1:1/db",
        "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
    }
    result = _cli(["run"], env)
    assert result.exit_code == 4
    assert secret not in result.output and "cannot connect" in result.output
    missing = _cli(["run"], {"MLFLOW_TRACKING_URI": mlflow_local.tracking_uri, "DATABASE_URL": ""})
    assert missing.exit_code == 2 and "DATABASE_URL" in missing.output
    mysql = _cli(
        ["run"], {"MLFLOW_TRACKING_URI": mlflow_local.tracking_uri, "DATABASE_URL": f"mysql://u:{secret}@h/db"}
    )
    assert mysql.exit_code == 2 and "mysql URL" in mysql.output and "PostgreSQL" in mysql.output
    assert secret not in mysql.output and "MySQLdb" not in mysql.output


def test_cli_missing_columns_names_the_sql(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=10, seed=29, with_scores=False)
    result = _cli(["run"], {"DATABASE_URL": sqlite_url, "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri})
    assert result.exit_code == 4
    assert "users.lead_score" in result.output and "lead-scorer db migrate" in result.output
    migrate = _cli(["db", "migrate"], {"DATABASE_URL": sqlite_url})
    assert migrate.exit_code == 0 and "applied 11" in migrate.output
    again = _cli(["db", "migrate"], {"DATABASE_URL": sqlite_url})
    assert again.exit_code == 0 and "applied 7" in again.output  # only the idempotent … IF [NOT] EXISTS


def test_cli_registry_promote_refuse_and_rollback(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=300, seed=30)
    settings = mlflow_local.settings(sqlite_url)
    env = {"MLFLOW_TRACKING_URI": mlflow_local.tracking_uri, "LEAD_SCORER_MODEL_NAME": settings.model_name}
    _train(settings, mlflow_local, promote=True)
    _train(settings, mlflow_local, seed=5)
    reg = _registry(settings)
    client = MlflowClient(tracking_uri=mlflow_local.tracking_uri)
    client.set_model_version_tag(settings.model_name, "2", "holdout_roc_auc", "0.100000")  # a worse candidate

    refused = _cli(["registry", "promote", "2"], env)
    assert refused.exit_code == 7 and "--force" in refused.output
    assert reg.resolve().version == "1"
    # Who promotes is the CLI's to say: the MLflow user, else the login.
    forced = _cli(["registry", "promote", "2", "--force"], env | {"MLFLOW_TRACKING_USERNAME": "", "USER": "ana"})
    assert forced.exit_code == 0 and "version 2 (was 1)" in forced.output
    assert client.get_model_version(settings.model_name, "2").tags["promoted_by"] == "ana"
    listing = _cli(["registry", "list"], env)
    assert "production" in listing.output.splitlines()[1]
    back = _cli(["registry", "rollback"], env | {"MLFLOW_TRACKING_USERNAME": "ops-bot", "USER": "ana"})
    assert back.exit_code == 0 and reg.resolve().version == "1"
    v1 = client.get_model_version(settings.model_name, "1")
    assert v1.tags["rolled_back_from"] == "2" and v1.tags["promoted_by"] == "ops-bot"
    assert v1.description.endswith("replacing version 2 (a rollback).")


def test_the_registry_leaves_the_process_wide_tracking_uri_alone(sqlite_url, mlflow_local, monkeypatch):
    """Registering, resolving, loading and promoting go to the registry's own server, and leave MLflow's global
    tracking URI (and the MLFLOW_TRACKING_URI variable it mirrors) as they were: another registry or tracker
    in the same process is not redirected."""
    import mlflow

    elsewhere = f"sqlite:///{Path(mlflow_local.tracking_uri.removeprefix('sqlite:///')).parent / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    mlflow.set_tracking_uri(elsewhere)
    try:
        make_product(sqlite_url, users=150, seed=36)
        settings = mlflow_local.settings(sqlite_url)
        _train(settings, mlflow_local)
        _train(settings, mlflow_local, seed=2)
        reg = _registry(settings)
        assert mlflow.get_tracking_uri() == elsewhere
        reg.promote("1", actor="test")  # not forced: the load check reads the candidate's MLmodel
        reg.promote("2", actor="test", force=True)
        loaded = reg.load(reg.resolve())
        assert loaded.resolved.version == "2"
        assert mlflow.get_tracking_uri() == elsewhere and os.environ["MLFLOW_TRACKING_URI"] == elsewhere
        assert [m.name for m in MlflowClient(tracking_uri=elsewhere).search_registered_models()] == []
    finally:
        mlflow.set_tracking_uri(None)


def test_db_sql_prints_idempotent_postgres_sql(pg_url):
    result = _cli(["db", "sql"], {})
    assert result.exit_code == 0
    assert 'ADD COLUMN IF NOT EXISTS "lead_score" double precision' in result.output
    make_product(pg_url, users=5, seed=31, with_scores=False)
    engine = engine_for(pg_url)
    for _ in range(2):  # applying the printed script twice is harmless
        with engine.begin() as conn:
            conn.exec_driver_sql(result.output)
    engine.dispose()
    cols = execute(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")[0]
    assert {"lead_score", "lead_score_model_version", "lead_scored_at"} <= {c[0] for c in cols}


def test_a_database_host_that_never_answers_fails_within_the_connect_timeout(mlflow_local):
    """A host that accepts the connection and never answers (a frozen path): exit 4 in seconds, not minutes."""
    import socket
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        env = {
            "DATABASE_URL": f"postgresql://scorer:pw@127.0.0.1:{port}/db",
            "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
            "LEAD_SCORER_DB_CONNECT_TIMEOUT_S": "2",
        }
        started = time.monotonic()
        result = _cli(["run"], env)
        elapsed = time.monotonic() - started
    assert result.exit_code == 4 and "cannot connect" in result.output
    assert elapsed < 20, elapsed


def test_one_run_at_a_time_and_a_dead_holder_never_blocks(db_url, mlflow_local):
    """A second run of the same model on the same database stops at once (exit 6) and does nothing; when
    the holder dies, however it dies, the next run goes ahead."""
    import subprocess
    import sys

    from lead_errors import RunLocked
    from scorer.stores.sql import SqlStore

    make_product(db_url, users=100, seed=31)
    settings = mlflow_local.settings(db_url)
    _train(settings, mlflow_local, promote=True)
    holder = SqlStore(db_url)
    holder.open().check()
    holder.lock_run(settings.model_name)
    with pytest.raises(RunLocked, match="holds"):
        run_scoring(run_options(settings))
    env = {
        "DATABASE_URL": db_url,
        "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_SCORING_EXPERIMENT": settings.scoring_experiment,
    }
    busy = _cli(["run"], env)
    assert busy.exit_code == 6 and "holds" in busy.output
    assert snapshot(db_url)["lead_score"].isna().all() and _runs(settings) == []
    holder.close()

    # A holder killed with SIGKILL: the database (or the kernel, for SQLite's file lock) lets go.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from scorer.stores.sql import SqlStore; s = SqlStore(sys.argv[1]).open(); s.check(); "
            "s.lock_run(sys.argv[2]); print('locked', flush=True); sys.stdin.read()",
            db_url,
            settings.model_name,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    with pytest.raises(RunLocked):
        run_scoring(run_options(settings))
    child.kill()
    child.wait(timeout=30)
    if db_url.startswith("postgresql"):
        # The server notices the dead session when its socket closes; wait for that, bounded, not for a time.
        execute(db_url, "SELECT 1")
        for _ in range(200):
            held = execute(db_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0][0]
            if held == 0:
                break
    summary = run_scoring(run_options(settings))
    assert summary.users_scored == 100 and summary.exit_code == 0


def test_a_store_the_caller_opened_stays_open_and_gets_its_run_lock_back(sqlite_url, mlflow_local):
    """Whoever opens a store closes it: a run given an open store leaves it open (usable by the caller, who
    closes it) and gives back the run lock it took on it. Nothing opens a store behind the caller's back."""
    from scorer.stores.base import Selector
    from scorer.stores.sql import SqlStore

    make_product(sqlite_url, users=120, seed=33)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local, promote=True)
    with pytest.raises(RuntimeError, match="not open"):
        SqlStore(sqlite_url).select_users(Selector(select="all"), after=None, limit=10)
    with SqlStore(sqlite_url) as store:
        summary = run_scoring(run_options(settings), store=store)
        assert summary.exit_code == 0 and summary.users_scored > 0
        assert store.count_users(Selector(select="unscored")) == 0  # still open, and every lead is scored
        with SqlStore(sqlite_url) as other:
            other.lock_run(settings.model_name)  # the run's lock was given back (RunLocked otherwise)
    with pytest.raises(RuntimeError, match="not open"):
        store.count_users(Selector(select="all"))


def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next(sqlite_url, mlflow_local):
    import hashlib

    from scorer.stores.sql import SqlStore

    make_product(sqlite_url, users=150, seed=32)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local, promote=True)
    run_scoring(run_options(settings))
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.scoring_experiment)
    store_id = hashlib.sha256(SqlStore(sqlite_url).describe().encode()).hexdigest()[:12]
    tags = {"model_name": settings.model_name, "dry_run": "false"}
    # What `kill -9` leaves: a run that never ended. One on this database, one on another.
    dead = client.create_run(exp.experiment_id, tags=tags | {"store_id": store_id}).info.run_id
    elsewhere = client.create_run(exp.experiment_id, tags=tags | {"store_id": "another-db"}).info.run_id

    summary = run_scoring(run_options(settings))

    assert summary.exit_code == 0
    closed = client.get_run(dead)
    note = closed.data.tags["mlflow.note.content"]
    assert closed.info.status == "KILLED" and "never recorded its end" in note
    # It may have written everything and lost only MLflow (exit 5): the note claims no rescoring it cannot know.
    assert "rescored the rest" not in note and "exit 5" in note and "did not write stayed stale" in note
    assert client.get_run(elsewhere).info.status == "RUNNING"  # another database's run may be alive
    latest = _runs(settings)[-1]
    assert closed.data.tags["closed_by_run"] == latest.info.run_id and latest.info.status == "FINISHED"


def test_no_writable_temporary_directory_is_named(sqlite_url, mlflow_local, tmp_path):
    """A read-only root with no writable /tmp: the job says so, instead of blaming the MLflow server.

    (As root every directory is writable, so the temporary directory is pointed below a plain file.)"""
    import tempfile

    make_product(sqlite_url, users=10, seed=33)
    settings = mlflow_local.settings(sqlite_url)
    env = {
        "DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
    }
    (tmp_path / "a-file").write_text("")
    tempfile.tempdir = str(tmp_path / "a-file" / "tmp")
    try:
        result = _cli(["run"], env)
    finally:
        tempfile.tempdir = None
    assert result.exit_code == 2 and "no writable temporary directory" in result.output and "TMPDIR" in result.output
    assert snapshot(sqlite_url)["lead_score"].isna().all()


def test_a_bug_in_the_batch_loop_prints_its_traceback_and_exits_70(sqlite_url, mlflow_local, monkeypatch):
    """A bug is not a failed batch (exit 1) nor bad data to narrow down: the run stops, the traceback is
    printed, the MLflow run is FAILED, and the exit code says "internal error"."""
    import scorer.page

    make_product(sqlite_url, users=150, seed=34)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local, promote=True)

    def broken(*_args: object, **_kwargs: object) -> object:
        return 1 / 0

    monkeypatch.setattr(scorer.page, "which_changed", broken)
    env = {
        "DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_SCORING_EXPERIMENT": settings.scoring_experiment,
    }
    result = CliRunner().invoke(app, ["run"], env={"LEAD_SCORER_LOG_LEVEL": "WARNING"} | env)
    assert result.exit_code == 70, result.output
    assert "internal error" in result.output and "Traceback" in result.output
    assert "ZeroDivisionError" in result.output and "which_changed" in result.output
    assert snapshot(sqlite_url)["lead_score"].isna().all()
    (run,) = _runs(settings)
    assert run.info.status == "FAILED"


def test_a_run_describes_itself_and_the_version_leads_to_it(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=200, seed=35)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local, promote=True)
    run_scoring(run_options(settings))
    run_scoring(run_options(settings))  # nothing changed since

    first, second = _runs(settings)
    note = first.data.tags["mlflow.note.content"]
    assert note.startswith("Rescored 200 users with [") and ": 200 written (new or moved);" in note
    assert re.search(r" in (0\.\d\d|\d\.\d) s: ", note), note  # not "in 0 s" for a run under a second
    assert f"(#/models/{settings.model_name}/versions/1)" in note and "drift vs training" in note
    assert second.data.tags["mlflow.note.content"].startswith("Nothing to do")
    # Names say when (to the second) and what happened, so two runs of one minute differ.
    assert re.fullmatch(r"score v1 · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · 200 written", first.info.run_name)
    assert second.info.run_name.endswith(" UTC · nothing to do") and second.info.run_name != first.info.run_name
    # The population did not move between the two: no drift from the previous run.
    assert second.data.metrics["score_psi_previous"] == 0.0
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    tag = client.get_model_version(settings.model_name, "1").tags["last_scoring_run"]
    assert tag.endswith(f"/runs/{second.info.run_id}")
    assert first.data.params["dry_run"] == "false" and first.data.params["limit"] == ""


def test_experiments_the_model_and_its_versions_describe_themselves(sqlite_url, mlflow_local):
    make_product(sqlite_url, users=300, seed=36)
    settings = mlflow_local.settings(sqlite_url)
    _train(settings, mlflow_local, promote=True, seed=5)
    run_scoring(run_options(settings))
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    version = client.get_model_version(settings.model_name, "1")
    assert version.description.startswith("Trained on ") and "ROC AUC" in version.description
    assert "seed 5" in version.description and "Promoted to production by " in version.description
    assert "open lead" in client.get_registered_model(settings.model_name).description
    for name in (settings.training_experiment, settings.scoring_experiment):
        assert client.get_experiment_by_name(name).tags["mlflow.note.content"]
    (train_run,) = client.search_runs([client.get_experiment_by_name(settings.training_experiment).experiment_id])
    assert train_run.data.params["seed"] == "5" and " to " in train_run.data.params["training_window"]
    assert re.fullmatch(r"train v1 · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · ROC AUC \d\.\d\d", train_run.info.run_name), (
        train_run.info.run_name
    )


def test_a_version_that_scores_alike_is_rewritten_not_moved_and_the_totals_come_first(sqlite_url, mlflow_local):
    """Version 2 trained like version 1 scores every lead the same: its run rewrites them all (to record the
    version) and says none moved; the run page's metrics list the totals before the per-batch figures; the
    version it replaced says so."""
    make_product(sqlite_url, users=200, seed=37)
    settings = mlflow_local.settings(sqlite_url, batch_size=80)
    _train(settings, mlflow_local, promote=True)
    run_scoring(run_options(settings))
    _train(settings, mlflow_local, promote=True)  # same data, same seed: the same pipeline
    summary = run_scoring(run_options(settings))
    assert summary.users_changed == 200 and summary.users_moved == 0

    _, second = _runs(settings)
    note = second.data.tags["mlflow.note.content"]
    assert ": 200 written (200 rewritten for v2, none moved);" in note, note
    assert second.info.run_name.startswith("score v2 · ") and second.info.run_name.endswith(" · 200 written")
    assert second.data.metrics["users_moved"] == 0 and second.data.metrics["users_changed"] == 200
    # MLflow lists a run's metrics in the order their keys were first logged: the totals first.
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    keys = list(client.get_run(second.info.run_id).data.metrics)
    first_batch = next(i for i, k in enumerate(keys) if k.startswith("batch/"))
    assert keys[:3] == ["batches", "failed_batches", "users_selected"], keys
    assert {"users_failed", "users_scored", "duration_s", "tier_hot_share", "score_p50"} <= set(keys[:first_batch])
    # Per-batch failures count users, as the total does: no "batch/failed 1" beside "failed_batches 0".
    assert "batch/failed" not in keys and second.data.metrics["batch/users_failed"] == 0
    replaced = client.get_model_version(settings.model_name, "1").description
    assert re.search(r"Replaced in production by version 2 at \d{4}-\d\d-\d\d \d\d:\d\d UTC \(", replaced)


def test_promotions_are_recorded_as_the_user_mlflow_records(monkeypatch, tmp_path):
    """`promoted_by` (when --actor is not given) is the name MLflow itself puts in a run's ``mlflow.user``: the
    MLflow user, else the login name ("root", not "uid 0"); a uid with no name is named by its Render service,
    else by its number."""
    import subprocess
    import sys

    from mlflow.tracking.context.default_context import DefaultRunContext

    from scorer.edge import actor

    for name in ("MLFLOW_TRACKING_USERNAME", "LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
    assert actor() == DefaultRunContext().tags()["mlflow.user"]
    assert not actor().startswith("uid ")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    assert actor() == DefaultRunContext().tags()["mlflow.user"] == "ana"
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("a uid with no name needs root (setpriv)")
    code = "from scorer.edge import actor; print(actor())"
    for extra, expected in (({}, "uid 12345"), ({"RENDER_SERVICE_NAME": "lead-scorer"}, "lead-scorer")):
        done = subprocess.run(
            ["setpriv", "--reuid=12345", "--regid=12345", "--clear-groups", sys.executable, "-c", code],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)} | extra,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr[-2000:]
