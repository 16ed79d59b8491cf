"""SIGTERM/SIGINT on a real `lead-scorer run` process: the current batch finishes and is written, no new batch
starts, the MLflow run ends KILLED, the exit code is 128+signal, and the next run resumes where it stopped.

The signal is sent as soon as the first `"event": "batch"` log line arrives on the child's stdout (a pipe, so the
logs are JSON lines); nothing here waits on a sleep.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.jobproc import Job, job_env
from tests.support import make_product, snapshot

USERS = 4_000
BATCH = 50


def _users(url: str) -> Any:
    frame = snapshot(url)
    frame["user_id"] = frame["user_id"].astype(int)
    return frame.sort_values("user_id").reset_index(drop=True)


def _runs(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_between_batches_and_next_run_resumes(trained, tmp_path: Path, signum: int) -> None:
    settings, _model = trained
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    make_product(url, users=USERS, seed=11, events_per_user=12.0)
    experiment = f"scoring-signals-{uuid.uuid4().hex[:8]}"
    env = job_env(url, settings, experiment)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)

    # 1. Signal right after the first batch is logged.
    job = Job(["--batch-size", str(BATCH)], env, cwd=tmp_path)
    first = job.wait_for("batch")
    assert first["batch"] == 1
    job.proc.send_signal(signum)
    code = job.finish()
    assert code == 128 + signum, job.output()

    batches = job.events("batch")
    assert [b["batch"] for b in batches] == list(range(1, len(batches) + 1)), job.output()
    assert all(b["users"] == BATCH and b["scored"] == BATCH for b in batches), job.output()
    assert job.events("batch_failed") == [], job.output()
    assert len(job.events("stop_requested")) == 1, job.output()
    finished = job.events("run_finished")
    assert len(finished) == 1 and finished[0]["status"] == "KILLED", job.output()

    # Every logged batch is written in full, in key order, and nothing else is.
    written = len(batches) * BATCH
    users = _users(url)
    scored = users[users["lead_score"].notna()]
    assert 0 < written < USERS, f"the job finished before the signal was handled; make batches slower\n{job.output()}"
    assert len(scored) == written
    assert scored["user_id"].tolist() == users["user_id"].tolist()[:written]
    assert scored["lead_score_model_version"].notna().all() and scored["lead_scored_at"].notna().all()

    # The MLflow run ended KILLED and counts what was written.
    runs = _runs(client, experiment)
    assert len(runs) == 1
    killed = runs[0]
    assert killed.info.status == "KILLED"
    assert killed.data.metrics["users_scored"] == written
    assert killed.data.metrics["batches"] == len(batches)

    # 2. The next run scores exactly the users left, and leaves the first run's scores alone.
    again = Job(["--batch-size", str(BATCH)], env, cwd=tmp_path)
    assert again.finish() == 0, again.output()
    assert sum(b["scored"] for b in again.events("batch")) == USERS - written, again.output()
    after = _users(url)
    assert after["lead_score"].notna().all()
    assert after.iloc[:written].equals(users.iloc[:written])
    rescored = after.iloc[written:]
    assert (rescored["lead_scored_at"] != after.iloc[0]["lead_scored_at"]).all()

    runs = _runs(client, experiment)
    assert len(runs) == 2
    resumed = next(r for r in runs if r.info.run_id != killed.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics["users_scored"] == USERS - written
    assert resumed.data.metrics["users_selected"] == USERS - written


def test_sigterm_lands_within_15_s_while_a_statement_waits_on_a_lock(trained, pg_url, tmp_path: Path) -> None:
    """Another session holds a row lock the job's write needs, for longer than the job would wait for it (the
    lock timeout is two minutes here). SIGTERM still ends the run within 15 s: the stop request cancels the
    waiting statement; the batch is dropped, nothing else is written, the run ends KILLED with 143."""
    import time

    import sqlalchemy as sa

    from scorer.stores.sql import engine_for
    from tests.support import execute

    settings, _model = trained
    make_product(pg_url, users=300, seed=12)
    experiment = f"scoring-hung-{uuid.uuid4().hex[:8]}"
    env = job_env(pg_url, settings, experiment) | {"LEAD_SCORER_DB_LOCK_TIMEOUT_S": "120"}
    engine = engine_for(pg_url)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT 1 FROM users WHERE user_id = 5 FOR UPDATE"))
        job = Job(["--batch-size", "100"], env, cwd=tmp_path)
        job.wait_for("store_ready")
        # Wait (bounded) until the job's write is queued behind the lock: a state of the database, not a time.
        for _ in range(600):
            waiting = execute(
                pg_url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lead-scorer %' "
                "AND wait_event_type = 'Lock'",
            )[0][0][0]
            if waiting:
                break
        assert waiting, job.output()
        started = time.monotonic()
        job.proc.send_signal(signal.SIGTERM)
        code = job.finish()
        elapsed = time.monotonic() - started
        holder.rollback()
    engine.dispose()
    assert code == 143, job.output()
    assert elapsed < 15, f"{elapsed:.1f}s\n{job.output()}"
    assert snapshot(pg_url)["lead_score"].isna().all()  # the cancelled batch wrote nothing
    (finished,) = job.events("run_finished")
    assert finished["status"] == "KILLED"
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    (run,) = _runs(client, experiment)
    assert run.info.status == "KILLED"


def test_a_database_that_goes_away_mid_run_ends_it_with_4_and_the_totals(trained, tmp_path: Path) -> None:
    """A real outage: the job's own PostgreSQL server stops after the first batch and stays down longer than the
    store's retries. The run ends with 4 (not 1, "some batches failed"), a `store_lost` line that says why, and
    a `run_finished` line with the totals so far; the batches before it stay written."""
    import pgserver
    from sqlalchemy.engine import make_url

    settings, _model = trained
    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    make_product(url, users=3_000, seed=16, events_per_user=4.0)
    env = job_env(url, settings, f"scoring-outage-{uuid.uuid4().hex[:8]}") | {"LEAD_SCORER_DB_CONNECT_TIMEOUT_S": "2"}
    job = Job(["--batch-size", "50"], env, cwd=tmp_path)
    job.wait_for("batch")
    server.cleanup()  # pg_ctl stop: every session is closed, and the server stays down
    code = job.finish()

    assert code == 4, job.output()
    (lost,) = job.events("store_lost")
    assert "kept failing" in lost["error"] or "connect" in lost["error"].lower(), lost
    (finished,) = job.events("run_finished")
    written = sum(b["scored"] for b in job.events("batch"))
    assert finished["status"] == "FAILED" and finished["users_scored"] == written > 0


def test_two_runs_started_together_write_each_user_once(trained, pg_url, tmp_path: Path) -> None:
    """The same job started twice at once (a laptop beside the cron job): one takes the run lock, the other
    exits 6 having done nothing (or, if the first already finished, finds nobody stale). Every user is written
    exactly once between them."""
    settings, _model = trained
    make_product(pg_url, users=2_000, seed=17, events_per_user=6.0)
    env = job_env(pg_url, settings, f"scoring-twice-{uuid.uuid4().hex[:8]}")
    first = Job(["--batch-size", "100"], env, cwd=tmp_path)
    second = Job(["--batch-size", "100"], env, cwd=tmp_path)
    codes = sorted([first.finish(), second.finish()])
    assert codes in ([0, 0], [0, 6]), first.output() + second.output()
    written = sum(b["scored"] for job in (first, second) for b in job.events("batch"))
    assert written == 2_000 == int(_users(pg_url)["lead_score"].notna().sum())
