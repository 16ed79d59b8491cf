"""The store's statements keep their plans on a real PostgreSQL, with the generic plan a prepared statement
gets after five executions (and Supabase's pooler can force): events are reached through the
(visitor_id, created_at) index by id, never by a filter that re-reads the id list for every row, whether the
store reads the daily grain or computes the features in the database.

The events are laid out as a product writes them: appended in time order, one visitor's events scattered
over the whole table.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from models import FeatureCatalog
from scorer.stores.base import FeatureRequest
from scorer.stores.sql import SqlStore
from tests.support import execute, make_product

VISITORS = 30_000
EVENTS = 300_000


@pytest.fixture
def scattered(pg_url: str) -> str:
    make_product(pg_url, users=50, seed=40)
    execute(
        pg_url,
        "DELETE FROM events",
        # Time order, visitors interleaved: the layout of an append-only event log.
        f"INSERT INTO events (visitor_id, event_type, created_at) "
        f"SELECT 'v' || ((i::bigint * 7919) % {VISITORS}), (ARRAY['page_view','pricing_view','login'])[1 + i % 3], "
        f"now() - interval '170 days' + i * interval '{170 * 86_400 // EVENTS} seconds' "
        f"FROM generate_series(1, {EVENTS}) AS i",
        "INSERT INTO users (user_id, visitor_id, email, signed_up_at) "
        "SELECT i, 'v' || i, 'user' || i || '@example.com', now() FROM generate_series(51, 100000) AS i",
        "ANALYZE events",
        "ANALYZE users",
    )
    return pg_url


def _captured(store: SqlStore, call: Any) -> tuple[str, dict[str, Any]]:
    """The statement (and its parameters) the store sends for ``call``, as the driver saw it."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, dict(parameters)))

    sa.event.listen(store.engine, "before_cursor_execute", grab)
    try:
        call()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", grab)
    return seen[-1]


def _generic_plan(url: str, statement: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN ANALYZE of ``statement`` prepared, with PostgreSQL told to use its generic plan."""
    order: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[1] not in order:
            order.append(m[1])
        return f"${order.index(m[1]) + 1}"

    sql = re.sub(r"%\((\w+)\)s", number, statement)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # The simple query protocol: over the extended one the server would read $n as PREPARE's own arguments.
        result = conn.pgconn.exec_(f"PREPARE q AS {sql}".encode())
        assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, result.error_message
        args = ", ".join("%s" for _ in order)
        # Values bound on the client, as literals: EXECUTE's arguments take the prepared statement's types.
        cur = psycopg.ClientCursor(conn)
        row = cur.execute(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q({args})", [parameters[k] for k in order]
        ).fetchone()
    assert row is not None
    plan = row[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


@pytest.mark.parametrize("features", [False, True], ids=["daily-grain", "features-in-the-database"])
def test_event_reads_use_the_index_by_id_under_a_generic_plan(scattered: str, features: bool) -> None:
    store = SqlStore(scattered)
    store.open().check()
    as_of = datetime.now(UTC)
    visitors = [f"v{i}" for i in range(0, VISITORS, 30)]  # 1,000 visitors spread over the table
    catalog = FeatureCatalog()
    request = FeatureRequest(catalog=catalog, names=catalog.feature_names(event_types=["login"])) if features else None
    statement, parameters = _captured(
        store,
        lambda: store.read_events(visitors, since=as_of - timedelta(days=181), as_of=as_of, features=request),
    )
    assert ("_lookback_events" in statement) == features  # the statement asked about is the one under test
    plan = _generic_plan(scattered, statement, parameters)

    on_events = [n for n in _nodes(plan) if n.get("Relation Name") == "events" or "Index Cond" in n]
    assert on_events, plan
    conds = " ".join(n.get("Index Cond", "") for n in on_events)
    filters = " ".join(n.get("Filter", "") for n in on_events)
    assert "visitor_id = ANY" in conds, json.dumps(plan, indent=1)[:3000]
    assert "visitor_id" not in filters, json.dumps(plan, indent=1)[:3000]
    assert not any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "events" for n in _nodes(plan))
    # And the read is complete: every event of those visitors (10 each), none of anyone else's.
    read = store.read_events(visitors, since=as_of - timedelta(days=181), as_of=as_of, features=request)
    assert read.events_read == EVENTS // VISITORS * len(visitors)
    store.close()


def test_the_write_finds_its_rows_by_key_under_a_generic_plan(scattered: str) -> None:
    from scorer.stores.base import ScoreWrite

    store = SqlStore(scattered)
    store.open().check()
    ids = list(range(1, 41))
    write = ScoreWrite(user_ids=ids, scores=[0.5] * len(ids), model="1/m-x", scored_at=datetime.now(UTC))
    statement, parameters = _captured(store, lambda: store.write_scores(write))
    plan = _generic_plan(scattered, statement, parameters)
    users = [n for n in _nodes(plan) if n.get("Relation Name") == "users" and n["Node Type"] != "ModifyTable"]
    assert users and all("Index" in n["Node Type"] for n in users), json.dumps(plan, indent=1)[:3000]
    store.close()


def test_the_stale_selection_walks_the_key_and_probes_events_by_index(scattered: str) -> None:
    """A page of the `stale` rule is a walk of the primary key from the last key, each lead checked with
    one probe of the events index: no sort, no scan of the events table, whatever the table's size."""
    from models import FeatureCatalog
    from scorer.job import JobOptions, selector_for

    store = SqlStore(scattered)
    store.open().check()
    execute(scattered, "UPDATE users SET lead_score = 0.5, lead_score_model_version = '1/m-x', lead_scored_at = now()")
    as_of = datetime.now(UTC) + timedelta(days=1)
    selector = selector_for(store, options=JobOptions(), model="1/m-x", catalog=FeatureCatalog(), as_of=as_of)
    statement, parameters = _captured(store, lambda: store.select_users(selector, after=5_000, limit=2_000))
    plan = _generic_plan(scattered, statement, parameters)
    nodes = _nodes(plan)
    text = json.dumps(plan, indent=1)[:4000]
    assert not any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes), text
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), text
    users = [n for n in nodes if n.get("Relation Name") == "users"]
    assert users and all(
        n["Node Type"].startswith("Index") and "user_id >" in n.get("Index Cond", "") for n in users
    ), text
    events = [n for n in nodes if n.get("Relation Name") == "events"]
    assert events and all("visitor_id =" in n.get("Index Cond", "") for n in events), text
    store.close()
