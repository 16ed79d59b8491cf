"""`db migrate` on a live product: the indexes on its tables are built without holding back its writes, an
index an interrupted build left INVALID is built again, and `db sql` stays pasteable as one transaction."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import sqlalchemy as sa

from scorer.schema import schema_sql
from scorer.stores.sql import engine_for
from tests.jobproc import LEAD_SCORER, TIMEOUT
from tests.support import execute, make_product

EVENTS_INDEX = "events_visitor_id_created_at_event_type_idx"
#: Lock modes that hold back an UPDATE or INSERT on the table (SHARE and stronger).
BLOCKING = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}


def _migrate(url: str) -> subprocess.Popen[str]:
    """`lead-scorer db migrate` as an operator runs it, in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAD_SCORER_", "MLFLOW_", "SUPABASE_"))}
    return subprocess.Popen(
        [LEAD_SCORER, "db", "migrate"],
        env=env | {"DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _waiting_index_build(conn: sa.Connection, deadline: float) -> int:
    """The pid of the migration's index build once it waits for a lock (here: the product's open transaction)."""
    while time.monotonic() < deadline:
        pid = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX%%' AND wait_event_type = 'Lock'"
        ).scalar()
        if pid is not None:
            return int(pid)
        time.sleep(0.02)  # polling an observable state, bounded by the deadline: not a synchronization guess
    raise AssertionError("the migration never reached an index build waiting on the product's transaction")


def _validity(url: str) -> list[tuple[str, bool]]:
    """(name, valid) of the two indexes the migration builds on the product's tables."""
    rows = execute(
        url,
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname IN (:a, :b)",
        params={"a": EVENTS_INDEX, "b": "users_unscored_idx"},
    )[0]
    return sorted((r[0], r[1]) for r in rows)


def test_db_migrate_builds_indexes_without_blocking_writes_to_users_or_events(pg_url):
    """The previous release's schema (no score columns, no covering index) with a product transaction open on
    events: the migration's index build waits for it, and meanwhile the product still updates users and
    inserts events within a 500 ms lock timeout, and the migration holds no lock that would stop them."""
    make_product(pg_url, users=400, seed=45, with_scores=False)
    engine = engine_for(pg_url)
    product = engine.connect()
    product.exec_driver_sql(
        "INSERT INTO events (visitor_id, event_type, created_at) VALUES ('v-open', 'page_view', now())"
    )  # left open: a transaction of the product's, as a migration meets it in production
    migration = _migrate(pg_url)
    try:
        with engine.connect() as watch:
            watch = watch.execution_options(isolation_level="AUTOCOMMIT")
            pid = _waiting_index_build(watch, time.monotonic() + TIMEOUT)
            held = watch.exec_driver_sql(
                "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = %(pid)s AND l.granted AND c.relname IN ('users', 'events')",
                {"pid": pid},
            ).all()
            assert not [h for h in held if h[1] in BLOCKING], held
            with engine.connect() as writer, writer.begin():
                writer.exec_driver_sql("SET LOCAL lock_timeout = '500ms'")
                updated = writer.exec_driver_sql("UPDATE users SET email = email || '' WHERE user_id = 1").rowcount
                writer.exec_driver_sql(
                    "INSERT INTO events (visitor_id, event_type, created_at) VALUES ('v-2', 'signup', now())"
                )
            assert updated == 1
    finally:
        product.commit()
        product.close()
        out, err = migration.communicate(timeout=TIMEOUT)
    assert migration.returncode == 0, out + err
    assert _validity(pg_url) == [(EVENTS_INDEX, True), ("users_unscored_idx", True)]
    engine.dispose()


def test_an_invalid_index_left_by_an_interrupted_build_is_built_again(pg_url):
    from scorer.schema import migrate

    make_product(pg_url, users=200, seed=46)
    execute(pg_url, f"DROP INDEX {EVENTS_INDEX}")
    # A concurrent build that fails half-way leaves its index behind, INVALID (here: duplicates for UNIQUE).
    admin = engine_for(pg_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX CONCURRENTLY {EVENTS_INDEX} ON events (visitor_id)")
    admin.dispose()
    check = (
        "SELECT i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n"
    )
    assert execute(pg_url, check, params={"n": EVENTS_INDEX})[0][0][:2] == (False, True)
    engine = engine_for(pg_url)
    ran = migrate(engine)
    engine.dispose()
    assert f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{EVENTS_INDEX}";' in ran
    valid, unique, definition = execute(pg_url, check, params={"n": EVENTS_INDEX})[0][0]
    assert valid and not unique and "INCLUDE (event_type)" in definition


def test_db_sql_is_pasteable_as_one_transaction_and_its_concurrent_forms_run_on_their_own(pg_url):
    """The script runs as one transaction (as Supabase's SQL editor runs it); the CONCURRENTLY form in the
    comment above each index runs on its own where the comment says, and the script then skips that index."""
    make_product(pg_url, users=50, seed=47, with_scores=False)
    script = schema_sql()
    concurrent = [
        line.split(": ", 1)[1] for line in script.splitlines() if line.startswith("-- Without blocking writes")
    ]
    assert len(concurrent) == 2 and all("CONCURRENTLY" in c for c in concurrent)
    assert "CONCURRENTLY" not in "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    engine = engine_for(pg_url)
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn:
        conn.exec_driver_sql(concurrent[0])  # "before this script": the events index
    for _ in range(2):
        with engine.begin() as conn:
            conn.exec_driver_sql(script)
    with auto.connect() as conn:
        conn.exec_driver_sql(concurrent[1])  # the users index exists by now: a no-op
    engine.dispose()
    names = {r[0] for r in execute(pg_url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")[0]}
    assert {EVENTS_INDEX, "users_unscored_idx"} <= names


def test_a_build_that_times_out_says_so_and_the_next_migrate_finishes_it(pg_url):
    """The index build waits for the product's open transaction past the lock timeout: the error names the
    index and what was left of it (the drop waits for the same transaction), and `db migrate` run again once
    the transaction ended builds it valid."""
    from lead_errors import StoreError
    from scorer.schema import migrate
    from scorer.stores.sql import Waits

    make_product(pg_url, users=100, seed=51, with_scores=False)
    engine = engine_for(pg_url, waits=Waits(lock_s=0.3))
    product = engine_for(pg_url).connect()
    product.exec_driver_sql("INSERT INTO events (visitor_id, event_type, created_at) VALUES ('v', 'x', now())")
    try:
        with pytest.raises(StoreError) as caught:
            migrate(engine)
    finally:
        product.commit()
        product.close()
    message = caught.value.message
    assert EVENTS_INDEX in message and "lock timeout" in message
    assert "left INVALID" in message and "next `lead-scorer db migrate`" in message
    columns = execute(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")[0]
    assert ("lead_score",) in columns  # the first step was committed
    migrate(engine)
    engine.dispose()
    assert _validity(pg_url) == [(EVENTS_INDEX, True), ("users_unscored_idx", True)]


def test_the_shadow_table_is_unlogged_and_an_earlier_logged_one_keeps_its_rows(pg_url):
    """The challenger's shadow table writes no write-ahead log (docs/champion-challenger.md#cost): new, it is
    made UNLOGGED; one an earlier release made logged is switched by `db migrate` (and by the pasted script)
    with its rows; applying either again changes nothing, and the table keeps its key."""
    from scorer.schema import migrate

    make_product(pg_url, users=20, seed=53)
    persistence = "SELECT relpersistence, relfilenode FROM pg_class WHERE oid = 'lead_score_shadow'::regclass"
    assert execute(pg_url, persistence)[0][0][0] == "u"
    # What an earlier release left: a logged table holding a challenger's scores.
    execute(
        pg_url,
        "ALTER TABLE lead_score_shadow SET LOGGED",
        "INSERT INTO lead_score_shadow SELECT user_id, '2/m-x', 0.25, now() FROM users",
    )
    assert execute(pg_url, persistence)[0][0][0] == "p"
    engine = engine_for(pg_url)
    migrate(engine)
    kind, node = execute(pg_url, persistence)[0][0]
    assert kind == "u"
    migrate(engine)  # again: no rewrite (the same file on disk)
    with engine.begin() as conn:
        conn.exec_driver_sql(schema_sql())  # the pasted script, on an unlogged table: a no-op too
    engine.dispose()
    assert execute(pg_url, persistence)[0][0] == ("u", node)
    assert execute(pg_url, "SELECT count(*), min(score), max(score) FROM lead_score_shadow")[0][0] == (20, 0.25, 0.25)
    with pytest.raises(sa.exc.IntegrityError):
        execute(pg_url, "INSERT INTO lead_score_shadow SELECT user_id, '2/m-x', 0.5, now() FROM users LIMIT 1")
