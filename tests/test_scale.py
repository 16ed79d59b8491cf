"""Memory is bounded by the batch size, not the table: 20,000 vs 200,000 users."""

from __future__ import annotations

import tracemalloc

import pytest
import sqlalchemy as sa

from scorer.job import JobOptions, score_users
from scorer.schema import migrate
from scorer.stores.sql import SqlStore
from tests.test_job import Recording


def _bulk_product(url: str, users: int) -> None:
    """Users and two events each, generated inside SQLite (seconds, not minutes)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE users (user_id INTEGER PRIMARY KEY, visitor_id TEXT, email TEXT NOT NULL, "
            "lead_score REAL, lead_score_model_version TEXT, lead_scored_at TEXT)"
        )
        conn.exec_driver_sql("CREATE TABLE events (visitor_id TEXT, event_type TEXT, created_at TEXT)")
        conn.exec_driver_sql(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}) "
            "INSERT INTO users (user_id, visitor_id, email) SELECT i, 'v' || i, 'u' || i || '@x' FROM n"
        )
        conn.exec_driver_sql(
            "INSERT INTO events SELECT visitor_id, CASE WHEN user_id % 3 = 0 THEN 'pricing_view' ELSE 'page_view' END, "
            "datetime('now', '-' || (user_id % 60) || ' days') FROM users"
        )
        conn.exec_driver_sql(
            "INSERT INTO events SELECT visitor_id, 'docs_view', datetime('now', '-' || (user_id % 7) || ' days') "
            "FROM users"
        )
        conn.exec_driver_sql("CREATE INDEX events_visitor ON events (visitor_id, created_at)")
    migrate(engine)  # the job's own tables and the reasons column
    engine.dispose()


def _peak(url: str, model, batch_size: int) -> tuple[int, Recording, int]:
    store = Recording(SqlStore(url), keep_ids=False)  # keeping 200,000 ids would be the test's own growth
    store.open().check()
    tracemalloc.start()
    summary = score_users(store=store, model=model, options=JobOptions(batch_size=batch_size))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, store, summary.users_scored


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_table(tmp_path, trained):
    _, model = trained
    small, large = f"sqlite:///{tmp_path / 'small.db'}", f"sqlite:///{tmp_path / 'large.db'}"
    _bulk_product(small, 20_000)
    _bulk_product(large, 200_000)

    peak_small, _, n_small = _peak(small, model, 2_000)
    peak_large, store, n_large = _peak(large, model, 2_000)

    assert (n_small, n_large) == (20_000, 200_000)
    assert max(store.limits) <= 2_000 and max(store.pages) <= 2_000 and max(store.event_batches) <= 2_000
    # Holding every user would cost far more than this: 200,000 users' features alone are ~64 MB and
    # their ids ~7 MB. What is left of the difference is cyclic garbage awaiting the collector.
    assert peak_large < 2 * peak_small and peak_large < 25_000_000, (peak_small, peak_large)


@pytest.mark.slow
def test_the_largest_batch_stays_under_the_memory_budget(tmp_path, trained):
    """`--batch-size 100000` on the default budget (512 MB, Render's starter plan): the batch is capped and
    the process's own peak RSS stays under the budget. Uncapped, 60,000 users in one batch go well over it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.jobproc import job_env

    settings, _ = trained
    url = f"sqlite:///{tmp_path / 'big.db'}"
    _bulk_product(url, 60_000)
    stats = tmp_path / "stats.json"
    env = job_env(url, settings, "scale-memory") | {"BENCH_STATS": str(stats), "LEAD_SCORER_MEMORY_MB": "512"}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.counted", "run", "--batch-size", "100000"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    capped = [e for e in events if e.get("event") == "batch_size_capped"]
    assert capped and capped[0]["used"] < 100_000
    assert all(e["users"] <= capped[0]["used"] for e in events if e.get("event") == "batch")
    peak = json.loads(stats.read_text())["peak_rss_mib"]
    assert 0 < peak < 512, peak
