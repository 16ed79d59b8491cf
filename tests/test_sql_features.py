"""PostgreSQL computes a batch's features itself (`scorer.stores.pg_features`, generated from the catalog): on
messy data they equal, to the last bit, what the catalog computes from the same store's daily grain, and the
rows read and dropped are counted the same."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from models import FeatureCatalog
from scorer.stores.base import FeatureRequest
from scorer.stores.sql import SqlStore, engine_for
from tests.support import execute, make_product

pytestmark = pytest.mark.usefixtures("pg_url")


def _insert(url: str, rows: list[tuple[str | None, str | None, object]]) -> None:
    engine = engine_for(url)
    events = sa.Table("events", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(events), [{"visitor_id": v, "event_type": t, "created_at": c} for v, t, c in rows])
    engine.dispose()


def _messy(now: datetime, as_of: datetime, catalog: FeatureCatalog) -> list[tuple[str | None, str | None, object]]:
    """Every way an event can be odd, over 30 visitors, one of them heavy."""
    rnd = random.Random(7)
    spellings = ["pricing_view", "\tPricing_View", "PRICING VIEW\n", "\u00a0pricing-view ", "Login", " login\t"]
    spellings += [f"custom type {i}" for i in range(80)]  # more than 64 distinct types: the array path
    rows: list[tuple[str | None, str | None, object]] = []
    for i in range(3_000):
        v = f"v{i % 29}" if i % 7 else "heavy"
        age = timedelta(days=rnd.uniform(0, catalog.lookback_days + 3), seconds=rnd.randint(0, 86_399))
        rows.append((v, rnd.choice(spellings), now - age))
    oldest = catalog.since(as_of)
    rows += [
        ("v1", None, now),  # no type
        ("v1", " \t", now),  # blank type
        ("v2", "login", None),  # no time
        ("v2", None, None),  # neither: counted as no type
        ("v3", "login", as_of),  # exactly at as_of: not yet
        ("v3", "login", as_of + timedelta(days=2)),  # future
        ("v3", "login", "infinity"),  # +infinity: future, not an error
        ("v4", "login", "-infinity"),  # before anything read
        ("v4", "login", oldest),  # the oldest instant read: older than every feature day
        ("v4", "login", oldest - timedelta(microseconds=1)),  # not read
        ("v5", "login", catalog.day_start(as_of)),  # the first instant of age 0
        ("v5", "login", catalog.day_start(as_of) - timedelta(microseconds=1)),  # the last of age 1
        ("only-dropped", None, now),  # a visitor whose every event is dropped
        ("only-dropped", "login", None),
        (None, "login", now),  # no visitor
    ]
    return rows


@pytest.mark.parametrize("types", [0, 2, "all"], ids=["no-type-features", "two-types", "every-type"])
def test_database_features_equal_the_catalog_on_the_same_events(pg_url, types):
    make_product(pg_url, users=10, seed=3)
    execute(pg_url, "DELETE FROM events")
    catalog = FeatureCatalog()
    now = datetime.now(UTC).replace(microsecond=0)
    as_of = now + timedelta(minutes=1)
    _insert(pg_url, _messy(now, as_of, catalog))
    store = SqlStore(pg_url)
    store.open().check()
    event_types = {
        0: [],
        2: ["pricing_view", "login"],
        "all": store.top_event_types(since=catalog.since(as_of), as_of=as_of, limit=100),
    }[types]
    names = catalog.feature_names(event_types=event_types)
    request = FeatureRequest(catalog=catalog, names=names)
    visitors = ["heavy", "only-dropped", "nobody", *(f"v{i}" for i in range(29))]
    users = [*visitors, None, "v1"]  # a user without a visitor id; two users sharing one

    computed = store.read_events(visitors, since=catalog.since(as_of), as_of=as_of, features=request)
    grain = store.read_events(visitors, since=catalog.since(as_of), as_of=as_of)
    store.close()

    assert computed.features is not None and len(computed.grain) == 0  # the database did compute them
    assert grain.features is None
    got = computed.features_for(request, visitor_ids=users, as_of=as_of)
    want = grain.features_for(request, visitor_ids=users, as_of=as_of)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert computed.events_read == grain.events_read
    assert computed.dropped == grain.dropped
    assert computed.dropped == {"null_type": 4, "null_time": 2, "future": 3}
    # The data exercised what it was built for: a heavy visitor, types past the first 64, the zero row.
    assert got.loc[0, "events_180d"] > 300
    if types == "all":
        assert max(got[f"distinct_types_{w}d"].max() for w in catalog.windows[1:]) > 64
    zero = got.iloc[visitors.index("nobody")]
    assert (zero == got.iloc[visitors.index("only-dropped")]).all()
    assert zero["days_since_last_event"] == catalog.lookback_days + 1


def test_the_job_scores_equal_with_database_features_and_with_the_grain(pg_url, trained):
    """The same run through both reads (the grain forced by a store that ignores the request) writes the same
    scores to the last bit."""
    from scorer.job import JobOptions, score_users

    class GrainOnly(SqlStore):
        def read_events(self, visitor_ids, *, since, as_of, features=None):
            return super().read_events(visitor_ids, since=since, as_of=as_of)

    computed: list[bool] = []

    class Computing(SqlStore):
        def read_events(self, visitor_ids, **kw):
            read = super().read_events(visitor_ids, **kw)
            computed.append(read.features is not None)
            return read

    make_product(pg_url, users=600, seed=11)
    when = datetime.now(UTC)
    scores = []
    for store_class in (Computing, GrainOnly):
        execute(pg_url, "UPDATE users SET lead_score = NULL, lead_score_model_version = NULL")
        execute(pg_url, "DELETE FROM lead_scorer_checkpoints")
        store = store_class(pg_url)
        store.open().check()
        summary = score_users(
            store=store, model=trained[1], options=JobOptions(select="all", batch_size=128, leads_only=False), now=when
        )
        store.close()
        assert summary.users_scored == 600
        scores.append(execute(pg_url, "SELECT user_id, lead_score FROM users ORDER BY user_id")[0])
    a, b = (np.array([s for _, s in rows]) for rows in scores)
    assert np.array_equal(a, b)
    assert computed and all(computed)  # the first run's features did come from the database


def test_the_migration_replaces_the_old_index_past_the_statement_timeout(pg_url):
    """`db migrate` builds the covering index however long it takes (the job's 60 s statement timeout is for
    its own reads: an index over a large events table takes minutes), drops the index it replaces, and a
    batch's events are then read from the index alone."""
    from scorer.schema import migrate
    from scorer.stores.sql import Waits

    make_product(pg_url, users=3000, seed=5)
    execute(
        pg_url,
        "DROP INDEX events_visitor_id_created_at_event_type_idx",
        "CREATE INDEX events_visitor_id_created_at_idx ON events (visitor_id, created_at)",  # as 0.x made it
    )
    engine = engine_for(pg_url, waits=Waits(statement_s=0.5))
    timeouts: list[str] = []

    def during(_conn, cursor, statement, *_args):
        if statement.startswith('CREATE INDEX CONCURRENTLY IF NOT EXISTS "events_'):
            cursor.execute("SHOW statement_timeout")
            timeouts.append(cursor.fetchone()[0])

    sa.event.listen(engine, "after_cursor_execute", during)
    migrate(engine)
    engine.dispose()
    assert timeouts == ["0"]  # the job's sessions have 500 ms here, its migration none
    with engine_for(pg_url, waits=Waits(statement_s=0.5)).connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "500ms"
    indexes = {r[0] for r in execute(pg_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'events'")[0]}
    assert indexes == {"events_pkey", "events_visitor_id_created_at_event_type_idx"}

    admin = engine_for(pg_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("VACUUM ANALYZE events")  # what autovacuum does for an append-only table
        conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table would be read whole otherwise
        vids = [r[0] for r in conn.exec_driver_sql("SELECT visitor_id FROM users LIMIT 50")]
        plan = conn.exec_driver_sql(
            "EXPLAIN SELECT event_type, created_at FROM events WHERE visitor_id = ANY(%(v)s)", {"v": vids}
        ).all()
    admin.dispose()
    assert "Index Only Scan" in " ".join(r[0] for r in plan)


def test_the_whitespace_list_is_what_python_strips():
    from scorer.stores.pg_features import WHITESPACE

    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == WHITESPACE


def test_a_visitor_too_busy_for_a_packed_counter_is_counted_from_the_daily_grain(pg_url):
    """Counts are packed three to a word (17 bits each): a visitor of 131,072 events or more in the lookback
    gets its features from its own daily grain, the rest of its batch from SQL, and all stay exact."""
    from scorer.stores.pg_features import FIELD_BITS

    make_product(pg_url, users=5, seed=9)
    execute(
        pg_url,
        "DELETE FROM events",
        f"INSERT INTO events (visitor_id, event_type, created_at) SELECT 'bot', 'page_view', "
        f"now() - (i % 20) * interval '1 day' - interval '1 hour' FROM generate_series(1, {1 << FIELD_BITS}) AS i",
        "INSERT INTO events (visitor_id, event_type, created_at) VALUES ('human', 'login', now() - interval '2 days')",
    )
    catalog = FeatureCatalog()
    as_of = datetime.now(UTC)
    names = catalog.feature_names(event_types=["page_view", "login"])
    request = FeatureRequest(catalog=catalog, names=names)
    store = SqlStore(pg_url)
    store.open().check()
    read = store.read_events(["bot", "human"], since=catalog.since(as_of), as_of=as_of, features=request)
    alone = store.read_events(["human"], since=catalog.since(as_of), as_of=as_of, features=request)
    store.close()
    # The batch stays one read of computed features: only the busy visitor's come from its own daily grain.
    assert read.features is not None and alone.features is not None
    got = read.features_for(request, visitor_ids=["bot", "human"], as_of=as_of)
    assert got.loc[0, "events_180d"] == got.loc[0, "evt_page_view_90d"] == 1 << FIELD_BITS
    assert got.loc[1].equals(alone.features_for(request, visitor_ids=["human"], as_of=as_of).loc[0])
