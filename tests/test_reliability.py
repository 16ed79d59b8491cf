"""Reliability under the faults of issue 25 (docs/reliability.md): a heavy visitor, a lost run lock, SIGTERM
while the job waits, a database restart. Real PostgreSQL throughout."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from models import FeatureCatalog
from models.catalog import DailyGrain
from scorer.job import JobOptions, score_users
from tests.support import NOW, execute, make_product, snapshot

#: Events of the heavy visitor: far past a packed counter's 131,072 (`scorer.stores.pg_features.FIELD_BITS`).
HEAVY_EVENTS = 2_000_000


def _add_heavy_visitor(url: str, *, events: int) -> tuple[str, str]:
    """``events`` events for one existing user's visitor, spread over the last 60 days over three of the
    product's types, in one INSERT … SELECT generate_series: (its user id, its visitor id)."""
    [[(user_id, visitor)], types] = execute(
        url,
        "SELECT user_id::text, visitor_id FROM users WHERE visitor_id IS NOT NULL ORDER BY user_id LIMIT 1 OFFSET 37",
        "SELECT DISTINCT event_type FROM events WHERE event_type IS NOT NULL ORDER BY 1 LIMIT 3",
    )
    execute(
        url,
        "INSERT INTO events (visitor_id, event_type, created_at) SELECT :v, (CAST(:types AS text[]))[1 + g % 3], "
        "CAST(:now AS timestamptz) - (g % 5184000) * interval '1 second' FROM generate_series(1, :n) AS g",
        params={"v": visitor, "types": [t for (t,) in types], "now": NOW - timedelta(minutes=1), "n": events},
    )
    return user_id, visitor


def _catalog_features(url: str, visitor: str, *, catalog: FeatureCatalog, names: list[str], as_of) -> pd.DataFrame:
    """The visitor's features as the numpy catalog computes them from its events at the daily grain (grouped
    here, independently of the store's reads)."""
    [rows] = execute(
        url,
        "SELECT visitor_id, event_type, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM events "
        "WHERE visitor_id = :v AND created_at >= :since AND created_at < :as_of GROUP BY 1, 2, 3",
        params={"v": visitor, "since": catalog.since(as_of), "as_of": as_of},
    )
    daily = pd.DataFrame(rows, columns=["visitor_id", "event_type", "day", "n"])
    grain = DailyGrain.from_frame(daily)
    return catalog.features(grain, visitor_ids=[visitor], as_of=as_of, names=names)


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_visitor_with_two_million_events_is_scored_like_any_other(pg_url, trained, dry_run):
    _, model = trained
    make_product(pg_url, users=400, seed=11)
    user_id, visitor = _add_heavy_visitor(pg_url, events=HEAVY_EVENTS)
    before = snapshot(pg_url)
    store = _store(pg_url)
    as_of = NOW
    # 100 users a batch: the heavy visitor is in one half of its batch's event read, the other half is light.
    summary = score_users(
        store=store,
        model=model,
        options=JobOptions(batch_size=100, leads_only=False, dry_run=dry_run),
        now=as_of,
    )
    store.close()

    assert summary.exit_code == 0 and summary.failed_batches == 0
    assert summary.users_scored == 400 and summary.users_failed == 0
    assert summary.events_read >= HEAVY_EVENTS
    after = snapshot(pg_url)
    if dry_run:
        assert after.equals(before)
        return
    assert after["lead_score"].notna().all()
    catalog = FeatureCatalog()
    features = _catalog_features(pg_url, visitor, catalog=catalog, names=model.input_names, as_of=as_of)
    assert features.to_numpy().max() >= 1 << 17  # counts past what a packed counter holds
    expected = model.predict_scores(features)[0]
    got = after.loc[after["user_id"] == user_id, "lead_score"].iloc[0]
    assert got == pytest.approx(float(expected), abs=1e-9)
    assert np.isfinite(after["lead_score"]).all()


def _store(url: str):
    from scorer.stores.sql import SqlStore

    store = SqlStore(url)
    store.open().check()
    return store


def test_sigterm_ends_the_run_within_the_bound_while_its_write_retries_a_held_row_lock(trained, pg_url, tmp_path):
    """Another session holds a row lock the job's write needs; the job's lock timeout is short, so its write
    fails, waits, and tries again for its whole retry budget (30 s): most of the time there is no statement to
    cancel, only a retry about to start. SIGTERM still ends the run within `SIGTERM_BOUND_S`: from the first
    cancel on no retry and no statement starts. (With the one-shot cancel, it landed between two retries and
    the run went on until its retry budget ran out.)"""
    import signal
    import time
    import uuid

    import sqlalchemy as sa

    from scorer.stores.sql import engine_for
    from tests.jobproc import Job, job_env

    settings, _model = trained
    make_product(pg_url, users=300, seed=12)
    env = job_env(pg_url, settings, f"scoring-sigterm-{uuid.uuid4().hex[:8]}")
    env |= {"LEAD_SCORER_DB_LOCK_TIMEOUT_S": "0.05"}
    engine = engine_for(pg_url)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT 1 FROM users WHERE user_id = 5 FOR UPDATE"))
        job = Job(["--batch-size", "100"], env, cwd=tmp_path)
        job.wait_for("store_ready")
        # Bounded wait until the job's write has met the lock once: a state of the database, not a time.
        for _ in range(600):
            [[(tried,)]] = execute(
                pg_url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lead-scorer %' "
                "AND query LIKE 'UPDATE%'",
            )
            if tried:
                break
        assert tried, job.output()
        started = time.monotonic()
        job.proc.send_signal(signal.SIGTERM)
        code = job.finish()
        elapsed = time.monotonic() - started
        holder.rollback()
    engine.dispose()
    assert code == 143, job.output()
    assert elapsed < SIGTERM_BOUND_S, f"{elapsed:.1f}s after SIGTERM\n{job.output()}"
    assert snapshot(pg_url)["lead_score"].isna().all()  # the batch that met the lock wrote nothing
    (finished,) = job.events("run_finished")
    assert finished["status"] == "KILLED"


#: What docs/reliability.md promises: the grace before cancelling (8 s), the longest retry wait (2 s) and a
#: second cancel (1 s), with room for MLflow's end of run; Render sends SIGKILL at 30 s.
SIGTERM_BOUND_S = 15.0


def test_a_run_whose_lock_session_is_terminated_stops_before_writing_beside_the_next(pg_url, mlflow_local):
    """The run lock's session is terminated after batch 2 and a second run starts (and finishes) while the
    first one is still going. The first run notices the lost lock before its next write and stops with the
    run-lock error (exit 6); the second, holding the lock, scores the rest and leaves the first's MLflow run
    alone. Every user is written exactly once (an update trigger counts the writes)."""
    from mlflow import MlflowClient

    from lead_errors import RunLocked
    from scorer.app import run_scoring
    from scorer.edge import run_options, train_options
    from scorer.trainer import train_model

    make_product(pg_url, users=1_000, seed=41)
    settings = mlflow_local.settings(pg_url, batch_size=100)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    _count_writes(pg_url)
    second: list = []

    def after_batch(report) -> None:
        if report.step == 2:
            [[(terminated,)]] = execute(
                pg_url,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted",
            )
            assert terminated == 1
            second.append(run_scoring(run_options(settings)))

    with pytest.raises(RunLocked, match="lost the run lock"):
        run_scoring(run_options(settings), on_batch=after_batch)

    (run2,) = second
    assert run2.exit_code == 0 and run2.users_scored == 800
    [writes] = execute(pg_url, "SELECT user_id, count(*) FROM score_writes GROUP BY user_id")
    assert len(writes) == 1_000 and {n for _, n in writes} == {1}
    assert snapshot(pg_url)["lead_score"].notna().all()
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.scoring_experiment)
    first, later = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert "closed_by_run" not in first.data.tags  # the second run did not take the live run for dead
    assert first.info.status == "FAILED" and later.info.status == "FINISHED"


def _count_writes(url: str) -> None:
    """A product-side trigger that counts every write of a score, per user."""
    execute(
        url,
        "CREATE TABLE score_writes (user_id bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        "CREATE FUNCTION count_score_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO public.score_writes (user_id) VALUES (NEW.user_id); RETURN NEW; END $$",
        "CREATE TRIGGER count_score_write AFTER UPDATE OF lead_score ON users FOR EACH ROW "
        "EXECUTE FUNCTION count_score_write()",
    )


#: A database outage the retry budget absorbs (`scorer.stores.sql.RETRY_BUDGET_S`, 30 s): longer than the old
#: budget (~3.5 s, which a 3 s restart plus its shutdown overran), well inside the new one.
OUTAGE_S = 6.0


class ThrowawayServer:
    """A PostgreSQL cluster of its own (pgserver's binaries, in ``root``), for a test that stops and starts it."""

    def __init__(self, root) -> None:
        import pgserver
        from sqlalchemy.engine import make_url

        self._pgserver = pgserver
        self.server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
        self.url = (
            make_url(self.server.get_uri()).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        )

    def outage(self, seconds: float) -> float:
        """Stop the server (fast: every session is closed), keep it down ``seconds`` (the fault's length, not a
        wait for anything), start it again; returns how long it was down in all."""
        import time

        started = time.monotonic()
        self._pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)
        time.sleep(seconds)
        self.server.ensure_postgres_running()
        return time.monotonic() - started

    def close(self) -> None:
        self.server.cleanup()


def test_a_database_restart_within_the_retry_budget_costs_no_batch(trained, tmp_path):
    """The job's PostgreSQL stops after the first batch and comes back `OUTAGE_S` later (every session, the
    run lock's too, is gone). The statements under way are retried until it is back, the run takes its lock
    again (nobody else did), every user is scored, and the run exits 0 with no failed batch."""
    import contextlib
    import uuid

    import sqlalchemy as sa
    from mlflow import MlflowClient

    from scorer.stores.sql import engine_for
    from tests.jobproc import Job, job_env

    settings, _model = trained
    pg = ThrowawayServer(tmp_path)
    try:
        make_product(pg.url, users=3_000, seed=16, events_per_user=4.0)
        experiment = f"scoring-restart-{uuid.uuid4().hex[:8]}"
        env = job_env(pg.url, settings, experiment) | {"LEAD_SCORER_DB_LOCK_TIMEOUT_S": "120"}
        # A row lock on a later user holds the run mid-way (its write waits), so the outage lands inside the
        # run however fast it is; the restart ends the holder's session with everyone else's.
        engine = engine_for(pg.url)
        holder = engine.connect()
        holder.execute(sa.text("SELECT 1 FROM users WHERE user_id = 1500 FOR UPDATE"))
        job = Job(["--batch-size", "50"], env, cwd=tmp_path)
        job.wait_for("batch")
        for _ in range(2_000):  # bounded: until the job's write waits on the lock (a state of the database)
            [[(waiting,)]] = execute(
                pg.url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lead-scorer %' "
                "AND wait_event_type = 'Lock'",
            )
            if waiting:
                break
        assert waiting, job.output()
        down = pg.outage(OUTAGE_S)
        with contextlib.suppress(sa.exc.DBAPIError):
            holder.close()
        engine.dispose()
        code = job.finish()
        assert code == 0, job.output()
        assert job.events("batch_failed") == [] and job.events("store_lost") == [], job.output()
        assert len(job.events("run_lock_retaken")) == 1, job.output()
        # Each retry line names the store's method it retries (stamina alone says "<context block>").
        retried = {e["callable"] for e in job.events("retry_scheduled")}
        assert retried and all(name.startswith("SqlStore.") for name in retried), retried
        assert sum(b["scored"] for b in job.events("batch")) == 3_000, job.output()
        assert snapshot(pg.url)["lead_score"].notna().all()
        client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        assert run.info.status == "FINISHED"
        assert down >= OUTAGE_S
    finally:
        pg.close()


def _rest_store(url: str, **kwargs):
    from scorer.stores.rest import RestStore
    from tests.conftest import REST_KEY

    store = RestStore(url, key=REST_KEY, **kwargs)
    store.open().check()
    return store


def _lease_left_s(url: str) -> float:
    [[(left,)]] = execute(url, "SELECT extract(epoch FROM max(expires_at) - now()) FROM lead_scorer_locks")
    return float(left)


def test_a_rest_run_that_lost_the_api_frees_its_lease_within_a_minute(pg_url):
    """A run loses the Data API and cannot give its lease back. The lease is only ever a minute ahead of its
    last heartbeat, so once the API is back the next run is refused for at most that minute (it was 15)."""
    from lead_errors import RunLocked
    from tests.postgrest_standin import PostgrestStandin

    make_product(pg_url, users=10, seed=53)
    with PostgrestStandin(pg_url, api_key=_key(), max_rows=1000) as rest:
        first = _rest_store(rest.url, heartbeat_s=None)
        first.lock_run("lead_scoring_pipeline")
        assert 0 < _lease_left_s(pg_url) <= 60
        assert first.renew_lease()  # a heartbeat: a minute from now again
        assert 0 < _lease_left_s(pg_url) <= 60
        # The API goes away for this run: it neither renews the lease nor gives it back (it is dropped unclosed).
        del first
        assert execute(pg_url, "SELECT count(*) FROM lead_scorer_locks")[0][0][0] == 1
        with pytest.raises(RunLocked, match="within 60 s"):
            _rest_store(rest.url, heartbeat_s=None).lock_run("lead_scoring_pipeline")
        # A minute later (the stored time moved, not waited for) the next run takes it.
        execute(pg_url, "UPDATE lead_scorer_locks SET expires_at = expires_at - interval '60 seconds'")
        later = _rest_store(rest.url, heartbeat_s=None)
        later.lock_run("lead_scoring_pipeline")
        later.close()
        assert rest.errors == []


def test_a_rest_run_whose_lease_another_run_took_stops_before_writing(pg_url):
    """The heartbeat renews the lease while the run lives; once another run holds it (this one's lapsed), the
    heartbeat finds out and the next write raises RunLocked: nothing written."""
    from lead_errors import RunLocked
    from scorer.stores.base import ScoreWrite
    from tests.postgrest_standin import PostgrestStandin

    make_product(pg_url, users=10, seed=54)
    with PostgrestStandin(pg_url, api_key=_key(), max_rows=1000) as rest:
        store = _rest_store(rest.url, heartbeat_s=0.05)
        store.lock_run("lead_scoring_pipeline")
        execute(pg_url, "UPDATE lead_scorer_locks SET expires_at = now() + interval '1 second'")
        for _ in range(2_000):  # bounded: until a beat has renewed it (a state of the database)
            if _lease_left_s(pg_url) > 30:
                break
        assert _lease_left_s(pg_url) > 30
        execute(pg_url, "UPDATE lead_scorer_locks SET holder = 'another run', expires_at = now() + interval '1 minute'")
        beat = store._heartbeat[0]
        beat.join(timeout=30)  # the heartbeat ends when it finds the lease another run's
        assert not beat.is_alive()
        write = ScoreWrite(user_ids=["1"], scores=[0.5], model="1/m", scored_at=NOW)
        with pytest.raises(RunLocked, match="another run took it"):
            store.write_scores(write)
        store.close()
        assert snapshot(pg_url)["lead_score"].isna().all()
        assert execute(pg_url, "SELECT holder FROM lead_scorer_locks")[0] == [("another run",)]


def _key() -> str:
    from tests.conftest import REST_KEY

    return REST_KEY


def test_the_fault_script_runs_these_trials():
    """`benchmarks/faults.py` runs the tests above by name: every name it lists is a test of this module, and
    every test of this module about a fault is one of its trials (so neither side rots)."""
    import sys

    from benchmarks.faults import TRIALS, check_loopback

    listed = {test for trial in TRIALS for test in trial.tests}
    here = {name for name in dir(sys.modules[__name__]) if name.startswith("test_")}
    assert listed == here - {"test_the_fault_script_runs_these_trials"}
    check_loopback("postgresql://u:p@localhost/db")
    check_loopback("postgresql://u:p@/db?host=/tmp/x")
    with pytest.raises(SystemExit, match="this machine only"):
        check_loopback("postgresql://u:p@db.example.com/db")


def test_sigterm_ends_a_rest_run_whose_requests_keep_failing_within_the_bound(trained, pg_url, tmp_path):
    """Over the Data API: after the first batch every request fails (503), so the job retries with backoff for
    up to two minutes. SIGTERM still ends it within `SIGTERM_BOUND_REST_S`: from the cancel on, no request is
    retried and none starts but the one giving the lease back. (Before, REST's cancel did nothing.)"""
    import signal
    import time
    import uuid

    from tests.conftest import REST_KEY
    from tests.jobproc import Job, job_env
    from tests.postgrest_standin import PostgrestStandin

    settings, _model = trained
    make_product(pg_url, users=2_000, seed=13)
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=1000) as rest:
        env = job_env("", settings, f"scoring-rest-sigterm-{uuid.uuid4().hex[:8]}")
        env |= {"SUPABASE_URL": rest.url, "SUPABASE_SERVICE_ROLE_KEY": REST_KEY}
        # 50 ms a request: the run lasts well past its first batch, so the faults land inside it.
        rest.latency = 0.05
        job = Job(["--batch-size", "50"], env, cwd=tmp_path)
        job.wait_for("batch")
        rest.fail_next(10_000, status=503)
        job.wait_for("rest_retry")  # the job is in its retry loop: a log line, not a time
        started = time.monotonic()
        job.proc.send_signal(signal.SIGTERM)
        code = job.finish()
        elapsed = time.monotonic() - started
        rest.reset()
    assert code == 143, job.output()
    assert elapsed < SIGTERM_BOUND_REST_S, f"{elapsed:.1f}s after SIGTERM\n{job.output()}"
    (finished,) = job.events("run_finished")
    assert finished["status"] == "KILLED"


#: REST's bound: the 8 s grace, at most one retry wait (10 s over REST) and the MLflow run's end, when the API
#: answers (with errors or not); a request that gets no answer holds the run until its own timeout (30 s).
SIGTERM_BOUND_REST_S = 25.0
