"""`lead-scorer spark run` in local mode: the same scores, the same MLflow run, a killed task survived.

Real PostgreSQL (on loopback TCP: Spark's JDBC driver cannot use pgserver's socket), real MLflow, Spark
`local[2,3]` (two cores, a failed task tried up to three times).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import SecretStr
from typer.testing import CliRunner

from scorer.app import run_scoring
from scorer.cli import app
from scorer.edge import run_options
from tests.pg_tcp import TcpPostgres
from tests.support import execute, make_product, snapshot

pytestmark = pytest.mark.spark
pyspark = pytest.importorskip("pyspark")

JAR = "/usr/share/java/postgresql.jar"
USERS, SEED = 700, 31
#: What differs between two runs over the same data by construction: when and how long, and how the work
#: was cut (batches of 2,000 users vs key ranges).
TIMING = {"duration_s", "users_per_s", "batches"}
SCORE_COLUMNS = ["lead_score", "lead_score_model_version", "lead_score_reasons"]


@pytest.fixture(scope="session")
def tcp_pg(tmp_path_factory: pytest.TempPathFactory):
    with TcpPostgres(tmp_path_factory.mktemp("pgtcp")) as pg:
        yield pg


@pytest.fixture(scope="session")
def spark():
    if not Path(JAR).is_file():
        pytest.fail(f"the PostgreSQL JDBC driver is missing ({JAR}): apt-get install libpostgresql-jdbc-java")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this venv's lead-scorer
    session = (
        SparkSession.builder.master("local[2,3]")
        .appName("lead-scorer-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.jars", JAR)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _settings(trained, url: str, **overrides):
    settings, _ = trained
    update = {"database_url": SecretStr(url), "scoring_experiment": f"scoring-{uuid.uuid4().hex[:8]}"} | overrides
    return settings.model_copy(update=update)


def _product(tcp_pg) -> str:
    url = tcp_pg.new_database()
    make_product(url, users=USERS, seed=SEED)
    return url


def _run(settings):
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.scoring_experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return run


@pytest.fixture(scope="module")
def reference(tcp_pg, trained):
    """`lead-scorer run --select all` over the open leads of a product: its data, scores and MLflow run."""
    url = _product(tcp_pg)
    before = snapshot(url)
    settings = _settings(trained, url, population="leads", select="all")
    summary = run_scoring(run_options(settings))
    assert summary.exit_code == 0 and summary.users_scored > 0
    return {"before": before, "after": snapshot(url), "run": _run(settings), "summary": summary}


def _assert_same_scores(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got["user_id"]) == list(want["user_id"])
    scored = want["lead_score"].notna()
    assert (got["lead_score"].notna() == scored).all()
    delta = np.abs(got.loc[scored, "lead_score"].to_numpy(float) - want.loc[scored, "lead_score"].to_numpy(float))
    assert delta.max() <= 1e-9
    assert (got.loc[scored, "lead_score_model_version"] == want.loc[scored, "lead_score_model_version"]).all()
    parsed = [json.loads(r) if isinstance(r, str) else r for r in got.loc[scored, "lead_score_reasons"]]
    assert parsed == list(want.loc[scored, "lead_score_reasons"])


@pytest.mark.slow
@pytest.mark.xdist_group("spark")  # one Spark session (a JVM) for the three
def test_spark_run_scores_and_records_what_the_single_machine_run_does(tcp_pg, trained, spark, reference):
    from scorer.spark import SparkOptions, run_spark

    url = _product(tcp_pg)
    settings = _settings(trained, url, population="leads")
    before = snapshot(url)

    summary = run_spark(run_options(settings), SparkOptions(partitions=2, group_users=200), spark=spark)

    after = snapshot(url)
    assert summary.exit_code == 0 and summary.batches >= 3  # several key ranges, hence several writes
    _assert_same_scores(after, reference["after"])
    # Only the score columns of the open leads changed; customers kept theirs; nothing was inserted.
    untouched = [c for c in after.columns if c not in [*SCORE_COLUMNS, "lead_scored_at"]]
    pd.testing.assert_frame_equal(after[untouched], before[untouched])
    customers = before["converted_at"].notna()
    assert customers.any() and after.loc[customers, "lead_score"].isna().all()
    assert after.loc[~customers, "lead_scored_at"].nunique() == 1  # one run time, as the job writes it

    spark_run, single = _run(settings), reference["run"]
    assert spark_run.info.status == "FINISHED" and spark_run.data.tags["engine"] == "spark"
    same_tags = set(single.data.tags) - {"mlflow.runName", "mlflow.note.content", "store_id", "store_session"}
    assert {k: spark_run.data.tags.get(k) for k in same_tags if not k.startswith("mlflow.")} == {
        k: single.data.tags[k] for k in same_tags if not k.startswith("mlflow.")
    }
    want = {k: v for k, v in single.data.metrics.items() if k not in TIMING and not k.startswith("batch/")}
    got = {k: v for k, v in spark_run.data.metrics.items() if k in want}
    assert got == want
    assert spark_run.data.params == single.data.params

    # The checkpoint says everyone was checked: the next (stale) single-machine run has nothing to do.
    assert run_scoring(run_options(settings.model_copy(update={"select": "stale"}))).users_selected == 0


@pytest.mark.slow
@pytest.mark.xdist_group("spark")  # one Spark session (a JVM) for the three
def test_a_task_killed_mid_write_is_retried_and_every_user_is_scored_once(tcp_pg, trained, spark, reference):
    from scorer.spark import SparkOptions, run_spark

    url = _product(tcp_pg)
    # Every real change of a score is counted, as a realtime subscriber would see it.
    execute(
        url,
        "CREATE TABLE score_writes (user_id bigint, model text)",
        """CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO score_writes VALUES (NEW.user_id, NEW.lead_score_model_version); RETURN NEW; END $$""",
        "CREATE TRIGGER count_write AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION count_write()",
    )
    settings = _settings(trained, url, population="leads")
    spark.sparkContext.setJobGroup("kill-test", "a task dies once after its staging write")

    summary = run_spark(
        run_options(settings),
        SparkOptions(partitions=2, group_users=200, chunk_rows=40),
        spark=spark,
        fail_once_after_staging=True,
    )

    tracker = spark.sparkContext.statusTracker()
    stages = [s for j in tracker.getJobIdsForGroup("kill-test") for s in (tracker.getJobInfo(j).stageIds or [])]
    failed = sum(info.numFailedTasks for s in stages if (info := tracker.getStageInfo(s)) is not None)
    spark.sparkContext.setJobGroup("", "")
    assert failed >= 1  # the task did die, and was retried
    assert summary.exit_code == 0
    after = snapshot(url)
    _assert_same_scores(after, reference["after"])
    writes = pd.DataFrame(execute(url, "SELECT user_id, model FROM score_writes")[0], columns=["user_id", "model"])
    leads = after.loc[after["converted_at"].isna(), "user_id"].astype(np.int64)
    assert sorted(writes["user_id"]) == sorted(leads)  # each open lead written exactly once
    assert set(writes["model"]) == set(reference["after"]["lead_score_model_version"].dropna())
    assert _run(settings).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.xdist_group("spark")  # one Spark session (a JVM) for the three
def test_lake_users_and_events_give_a_parquet_score_table(tcp_pg, trained, spark, reference, tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    users = reference["before"].drop(columns=[*SCORE_COLUMNS, "lead_scored_at"])
    users["user_id"] = users["user_id"].astype(np.int64)
    users.to_parquet(lake / "users.parquet")
    url = _product(tcp_pg)
    events = pd.DataFrame(execute(url, "SELECT visitor_id, event_type, created_at FROM events")[0])
    events.columns = ["visitor_id", "event_type", "created_at"]
    events.to_parquet(lake / "events.parquet")
    settings, _ = trained
    env = {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_SCORING_EXPERIMENT": f"scoring-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": "",
    }
    out = tmp_path / "scores"

    done = CliRunner().invoke(
        app,
        [
            "spark",
            "run",
            f"--users=parquet:{lake / 'users.parquet'}",
            f"--events=parquet:{lake / 'events.parquet'}",
            f"--output=parquet:{out}",
            "--partitions=2",
        ],
        env=env,
    )

    assert done.exit_code == 0, done.output
    got = pd.read_parquet(out)
    got["user_id"] = got["user_id"].astype(str)  # ordered as `snapshot` orders its keys
    got = got.sort_values("user_id").reset_index(drop=True)
    want = reference["after"][reference["after"]["lead_score"].notna()].reset_index(drop=True)
    _assert_same_scores(got, want)
    run = _run(settings.model_copy(update={"scoring_experiment": env["LEAD_SCORER_SCORING_EXPERIMENT"]}))
    assert run.data.tags["store"] == "parquet" and run.data.metrics["users_scored"] == len(want)
    for k in ("score_mean", "score_p50", "tier_hot_share", "events_read"):
        assert run.data.metrics[k] == reference["run"].data.metrics[k]


def test_without_pyspark_the_command_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    done = CliRunner().invoke(app, ["spark", "run"], env={"DATABASE_URL": "", "MLFLOW_TRACKING_URI": ""})
    assert done.exit_code == 2
    assert "pip install 'lead-scorer[spark]'" in done.output


@pytest.mark.slow
@pytest.mark.xdist_group("spark")  # one Spark session (a JVM) for all
def test_a_row_the_database_refuses_fails_alone_and_the_run_is_failed_with_its_user(tcp_pg, trained, spark):
    """As `lead-scorer run` does it (tests/test_run.py): everyone else is written, the run is FAILED and
    `failed_users.json` names the user and the database's message; the next run scores that user."""
    from scorer.spark import SparkOptions, run_spark

    url = _product(tcp_pg)
    before = snapshot(url)
    lead = int(before.loc[before["converted_at"].isna(), "user_id"].astype(np.int64).sort_values().iloc[100])
    execute(
        url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'locked'; END $$",
        f"CREATE TRIGGER refuse BEFORE UPDATE ON users FOR EACH ROW WHEN (NEW.user_id = {lead}) "
        "EXECUTE FUNCTION refuse()",
    )
    settings = _settings(trained, url, population="leads")

    summary = run_spark(run_options(settings), SparkOptions(partitions=2, group_users=200, chunk_rows=40), spark=spark)

    assert summary.exit_code == 1 and summary.users_failed == 1 and not summary.complete
    after = snapshot(url)
    leads, refused = after["converted_at"].isna(), after["user_id"] == str(lead)
    assert after.loc[leads & ~refused, "lead_score"].notna().all()
    assert after.loc[refused, "lead_score"].isna().all()
    run = _run(settings)
    assert run.info.status == "FAILED" and run.data.metrics["users_failed"] == 1
    assert run.data.metrics["users_scored"] == leads.sum() - 1
    assert run.info.run_name.endswith(" UTC · FAILED 1 user"), run.info.run_name
    path = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).download_artifacts(
        run.info.run_id, "failed_users.json"
    )
    failed = json.loads(Path(path).read_text())
    assert [f["user_id"] for f in failed] == [str(lead)] and "locked" in failed[0]["error"]

    execute(url, "DROP TRIGGER refuse ON users")
    run_scoring(run_options(settings.model_copy(update={"select": "stale"})))
    assert snapshot(url).loc[refused, "lead_score"].notna().all()


@pytest.mark.slow
@pytest.mark.xdist_group("spark")  # one Spark session (a JVM) for all
def test_a_stop_request_cancels_the_spark_job_and_the_run_is_killed(tcp_pg, trained, spark):
    """SIGTERM mid-run (`StopSignal.request`, as its handler calls it): the Spark job is cancelled, the run
    ends KILLED, what finished tasks wrote stays, and the next run scores the rest."""
    import psycopg

    from scorer.spark import SparkOptions, run_spark
    from scorer.stop import StopSignal

    url = _product(tcp_pg)
    before = snapshot(url)
    leads = before["converted_at"].isna()
    last = before.loc[leads, "user_id"].astype(np.int64).max()
    # The first committed write tells the test, which asks the run to stop; the last lead's row is held,
    # so its key range cannot finish before the stop arrives.
    execute(
        url,
        "CREATE FUNCTION tell() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('scored', NEW.user_id::text); RETURN NEW; END $$",
        "CREATE TRIGGER tell AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION tell()",
    )
    stop = StopSignal(grace_s=0)
    listener = psycopg.connect(url, autocommit=True)
    listener.execute("LISTEN scored")
    holder = psycopg.connect(url)
    holder.execute(f"SELECT 1 FROM users WHERE user_id = {last} FOR UPDATE")

    def stop_at_first_write() -> None:
        for _ in listener.notifies():
            stop.request()
            break

    watcher = threading.Thread(target=stop_at_first_write, daemon=True)
    watcher.start()
    # A held row makes its writer wait up to the lock timeout: a run that ends sooner was cancelled.
    settings = _settings(trained, url, population="leads", db_lock_timeout_s=60.0)
    try:
        summary = run_spark(
            run_options(settings), SparkOptions(partitions=2, group_users=200, chunk_rows=40), spark=spark, stop=stop
        )
        # Still holding the row: the run ended because its job was cancelled, not because every range finished.
        written = snapshot(url).loc[leads, "lead_score"].notna()
    finally:
        stop.close()
        holder.rollback()
        holder.close()
    watcher.join(timeout=30)
    listener.close()

    assert stop.requested and summary.stopped and not summary.complete
    assert summary.duration_s < 60.0
    assert 0 < written.sum() < leads.sum()  # the finished writes stay; the held key range was not written
    run = _run(settings)
    assert run.info.status == "KILLED" and " UTC · stopped · " in run.info.run_name, run.info.run_name

    # A cancelled task's worker may still finish the write it was in; the next run scores whatever is left.
    run_scoring(run_options(settings.model_copy(update={"select": "stale"})))
    assert snapshot(url).loc[leads, "lead_score"].notna().all()
