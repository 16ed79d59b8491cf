"""The Supabase REST store under Supabase's real limits, through the PostgREST stand-in."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from lead_errors import AuthError, SchemaError, StoreError
from models import FeatureCatalog
from scorer.cli import app
from scorer.job import JobOptions, score_users
from scorer.stores.base import ScoreWrite, Selector
from scorer.stores.rest import RestStore
from scorer.stores.sql import SqlStore, engine_for
from tests.conftest import REST_KEY
from tests.postgrest_standin import PostgrestStandin
from tests.support import execute, make_product, snapshot
from tests.test_job import Recording


@pytest.fixture
def rest(pg_url):
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=1000, max_url_bytes=8192) as server:
        yield server
        assert server.errors == []


def _heavy_visitors(url: str, visitors: list[str], per_visitor: int) -> None:
    """``per_visitor`` events each, spread over 120 days and several types, generated in SQL."""
    execute(
        url,
        "INSERT INTO events (visitor_id, event_type, created_at) "
        "SELECT v, (ARRAY['page_view','pricing_view','Docs_View ','demo_request'])[1 + i % 4], "
        "now() - make_interval(days => i % 120, mins => i) "
        "FROM unnest(CAST(:v AS text[])) AS v, generate_series(1, :n) AS i",
        params={"v": visitors, "n": per_visitor},
    )


@pytest.mark.parametrize("fast", [True, False], ids=["aggregated-rpc", "raw-events"])
def test_complete_reads_past_the_row_cap_match_the_sql_store(pg_url, rest, trained, fast):
    _, model = trained
    data = make_product(pg_url, users=1037, seed=41)
    heavy = [v for v in data.users["visitor_id"].dropna()[:12]]
    _heavy_visitors(pg_url, heavy, 1500)  # 18,000 events among 12 users of the first batch
    if not fast:
        execute(pg_url, "DROP FUNCTION lead_scorer_daily_events")
    store = RestStore(rest.url, key=REST_KEY, max_rows=1000)
    store.open().check()
    assert store.fast_events is fast
    sql = SqlStore(pg_url)
    sql.open().check()

    # The same features as the SQL store, batch by batch, for the heaviest batch.
    cat = FeatureCatalog()
    as_of = datetime.now(UTC)
    page = sql.select_users(Selector(select="all", leads_only=False), after=None, limit=100)
    a = store.read_events(page.visitor_ids, since=cat.since(as_of), as_of=as_of)
    b = sql.read_events(page.visitor_ids, since=cat.since(as_of), as_of=as_of)
    assert a.events_read == b.events_read >= 18_000 and a.dropped == b.dropped
    fa = cat.build(a.daily, visitor_ids=page.visitor_ids, as_of=as_of, names=model.input_names)
    fb = cat.build(b.daily, visitor_ids=page.visitor_ids, as_of=as_of, names=model.input_names)
    pd.testing.assert_frame_equal(fa, fb)

    recording = Recording(store)
    summary = score_users(
        store=recording, model=model, options=JobOptions(select="unscored", batch_size=100, leads_only=False)
    )
    assert summary.batches == 11 and summary.users_scored == 1037 and summary.exit_code == 0
    assert set(Counter(recording.written).values()) == {1} and len(recording.written) == 1037
    after = snapshot(pg_url)
    assert len(after) == 1037 and after["lead_score"].notna().all()
    assert max(r.target_bytes for r in rest.requests) <= 6_000  # the URL budget, well under the 8 KB limit
    assert all(r.status != 414 for r in rest.requests)


def test_requests_per_thousand_users_stay_low_whatever_the_events(pg_url, rest, trained):
    _, model = trained
    make_product(pg_url, users=3000, seed=42, events_per_user=40)
    store = RestStore(rest.url, key=REST_KEY, max_rows=1000)
    store.open().check()
    rest.reset()
    summary = score_users(store=store, model=model, options=JobOptions(select="all", batch_size=2000, leads_only=False))
    assert summary.users_scored == 3000
    # Per run: the checkpoint read, the population histogram and the checkpoint's completion; per batch of
    # 2,000: two key pages (1,000-row cap), one events call, one write.
    per_thousand = len(rest.requests) / 3
    assert per_thousand <= 4, [(r.method, r.path) for r in rest.requests]


def test_url_budget_splits_awkward_text_ids_on_the_raw_path(pg_url, rest, trained):
    _, model = trained
    ids = [f'acct,{i}"(x):\\' + "y" * 40 for i in range(600)]
    make_product(pg_url, users=600, seed=43, id_type=sa.Text, user_ids=ids)
    execute(pg_url, "UPDATE users SET visitor_id = user_id", "UPDATE events SET visitor_id = NULL")
    execute(
        pg_url,
        "INSERT INTO events (visitor_id, event_type, created_at) "
        "SELECT user_id, 'pricing_view', now() - interval '1 day' FROM users",
        "DROP FUNCTION lead_scorer_daily_events",
    )
    store = RestStore(rest.url, key=REST_KEY, max_rows=1000, url_budget=4000)
    store.open().check()
    summary = score_users(
        store=store, model=model, options=JobOptions(select="unscored", batch_size=600, leads_only=False)
    )
    assert summary.users_scored == 600 and summary.events_read == 600
    assert max(r.target_bytes for r in rest.requests) <= 4000
    assert sum(1 for r in rest.requests if r.path.endswith("/events")) > 2  # the batch was split


def test_three_503s_then_success_is_retried_and_logged(pg_url, rest, trained, capsys):
    _, model = trained
    make_product(pg_url, users=150, seed=44)
    store = RestStore(rest.url, key=REST_KEY)
    store.open().check()
    rest.fail_next(3, status=503)
    summary = score_users(
        store=store, model=model, options=JobOptions(select="unscored", batch_size=100, leads_only=False)
    )
    assert summary.exit_code == 0 and summary.users_scored == 150
    assert store.retries == 3
    assert capsys.readouterr().out.count("rest_retry") == 3


def test_520_storm_fails_that_batch_only_and_writes_nothing_half(pg_url, rest, trained):
    _, model = trained
    make_product(pg_url, users=300, seed=45)
    store = RestStore(rest.url, key=REST_KEY)
    store.open().check()
    batches = []

    def storm_on_second_batch(visitor_ids):
        batches.append(len(visitor_ids))
        if len(batches) == 2:
            rest.fail_next(5, status=520)  # every attempt of the retry budget (5 in tests) fails

    class Storm(Recording):
        def read_events(self, visitor_ids, **kw):
            storm_on_second_batch(visitor_ids)
            return super().read_events(visitor_ids, **kw)

    summary = score_users(
        store=Storm(store), model=model, options=JobOptions(select="stale", batch_size=100, leads_only=False)
    )
    assert summary.exit_code == 1 and summary.failed_batches == 1 and summary.batches == 3
    unscored = execute(pg_url, "SELECT min(user_id), max(user_id), count(*) FROM users WHERE lead_score IS NULL")
    assert tuple(unscored[0][0]) == (101, 200, 100)


def test_a_dropped_connection_mid_write_is_retried_safely(pg_url, rest, trained):
    _, model = trained
    make_product(pg_url, users=80, seed=46)
    store = RestStore(rest.url, key=REST_KEY)
    store.open().check()
    before = len(snapshot(pg_url))

    class DropWrite(Recording):
        def write_scores(self, write):
            rest.drop_next(1, after_executing=True)  # the write commits, the answer is lost
            return super().write_scores(write)

    summary = score_users(
        store=DropWrite(store), model=model, options=JobOptions(select="unscored", batch_size=80, leads_only=False)
    )
    after = snapshot(pg_url)
    assert summary.exit_code == 0 and len(after) == before and after["lead_score"].notna().all()


def test_wrong_key_stops_at_once_with_a_clear_message(pg_url, rest):
    make_product(pg_url, users=20, seed=47)
    wrong = "sb_secret_this-is-not-the-key-4242"
    started = time.monotonic()
    with pytest.raises(AuthError, match="SUPABASE_SERVICE_ROLE_KEY") as err:
        RestStore(rest.url, key=wrong).open().check()
    assert time.monotonic() - started < 5 and len(rest.requests) == 1  # no retry
    assert "Invalid API key" in str(err.value) and wrong not in str(err.value)

    result = CliRunner().invoke(
        app,
        ["run"],
        env={
            "SUPABASE_URL": rest.url,
            "SUPABASE_SERVICE_ROLE_KEY": wrong,
            "MLFLOW_TRACKING_URI": "sqlite:///x.db",
            "DATABASE_URL": "",
            "LEAD_SCORER_LOG_LEVEL": "WARNING",
        },
    )
    assert result.exit_code == 4 and "Invalid API key" in result.output and wrong not in result.output
    assert snapshot(pg_url)["lead_score"].isna().all()


def test_missing_function_and_column_are_named(pg_url, rest):
    make_product(pg_url, users=20, seed=48)
    execute(pg_url, "DROP FUNCTION lead_scorer_write_scores")
    with pytest.raises(SchemaError, match="lead-scorer db sql"):
        RestStore(rest.url, key=REST_KEY).open().check()
    execute(pg_url, "ALTER TABLE users DROP COLUMN lead_scored_at")
    with pytest.raises(SchemaError, match="lead_scored_at"):
        RestStore(rest.url, key=REST_KEY).open().check()


def test_both_stores_configured_is_an_error():
    result = CliRunner().invoke(
        app,
        ["run"],
        env={
            "SUPABASE_URL": "https://x.supabase.co",
            "SUPABASE_KEY": "k",
            "DATABASE_URL": "sqlite:///x.db",
            "MLFLOW_TRACKING_URI": "sqlite:///m.db",
            "LEAD_SCORER_LOG_LEVEL": "WARNING",
        },
    )
    assert result.exit_code == 2 and "both DATABASE_URL and SUPABASE_URL" in result.output


def test_training_over_rest_is_refused_before_any_request(rest, tmp_path):
    """The REST store is a scoring source only: training reads every user and event, which the Data API is
    not made for. `lead-scorer train` says so (exit 4) before it sends a single request."""
    result = CliRunner().invoke(
        app,
        ["train"],
        env={
            "SUPABASE_URL": rest.url,
            "SUPABASE_SERVICE_ROLE_KEY": REST_KEY,
            "DATABASE_URL": "",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "LEAD_SCORER_LOG_LEVEL": "WARNING",
        },
    )
    assert result.exit_code == 4 and "not made for" in result.output, result.output
    assert rest.requests == []
    assert not hasattr(RestStore, "top_event_types") and not hasattr(RestStore, "labelled_users")


def test_the_store_never_inserts(pg_url, rest):
    """The write function is update-only: ids that do not exist are not created."""
    make_product(pg_url, users=10, seed=49)
    store = RestStore(rest.url, key=REST_KEY)
    store.open().check()
    n = store.write_scores(
        ScoreWrite(user_ids=[3, 999_999], scores=[0.25, 0.5], model="7", scored_at=datetime.now(UTC))
    )
    assert n == 1 and len(snapshot(pg_url)) == 10
    engine = engine_for(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT lead_score FROM users WHERE user_id = 3")).scalar_one() == 0.25
    engine.dispose()


def _grain(daily: pd.DataFrame) -> list[tuple[str, ...]]:
    return sorted(map(tuple, daily[["visitor_id", "event_type", "day", "n"]].astype(str).to_numpy()))


def _same_as_sql(pg_url: str, read, visitors: list[str], as_of: datetime, model=None) -> None:
    """The REST read equals the SQL store's read of the database as it is now."""
    sql = SqlStore(pg_url)
    sql.open().check()
    cat = FeatureCatalog()
    b = sql.read_events(visitors, since=cat.since(as_of), as_of=as_of)
    assert read.events_read == b.events_read and read.dropped == b.dropped
    assert _grain(read.daily) == _grain(b.daily)  # no event read twice, none skipped
    if model is not None:
        fa = cat.build(read.daily, visitor_ids=visitors, as_of=as_of, names=model.input_names)
        fb = cat.build(b.daily, visitor_ids=visitors, as_of=as_of, names=model.input_names)
        pd.testing.assert_frame_equal(fa, fb)


def test_raw_reads_take_each_event_once_while_the_product_writes(pg_url, rest, trained):
    """Events have no key, and offset pages over a table that moves repeat or skip rows: an insert behind the
    reader shifts every later offset by one, and a delete ahead of it keeps the count the same, so a count
    check does not see it. The raw path reads by visitor, then by time, with no offsets. Here the first page
    holds a light visitor whole and the start of a heavy one; the heavy visitor is then read alone, and its
    first page ends inside a run of 600 identical rows. Every event that exists for the whole read is taken
    exactly once, inserts behind the reader wait for the next run, and live traffic lands after ``as_of``."""
    _, model = trained
    make_product(pg_url, users=50, seed=43)
    light, heavy = "a-light", "b-heavy"  # this order in any collation
    execute(
        pg_url,
        "UPDATE users SET visitor_id = CASE user_id WHEN 1 THEN :light ELSE :heavy END WHERE user_id IN (1, 2)",
        "INSERT INTO events (visitor_id, event_type, created_at) "
        "SELECT :light, 'page_view', now() - interval '100 days' + make_interval(mins => i) "
        "FROM generate_series(1, 500) i "
        "UNION ALL SELECT :heavy, 'page_view', now() - interval '150 days' + make_interval(mins => i) "
        "FROM generate_series(1, 700) i "
        "UNION ALL SELECT :heavy, 'pricing_view', now() - interval '60 days' FROM generate_series(1, 600) "
        "UNION ALL SELECT :heavy, 'docs_view', now() - interval '30 days' + make_interval(mins => i) "
        "FROM generate_series(1, 700) i",
        "DROP FUNCTION lead_scorer_daily_events",
        params={"light": light, "heavy": heavy},
    )
    as_of = datetime.now(UTC)
    pages = 0
    reading = False  # past the schema check, whose probe of the events table is not a page

    class LiveProduct(RestStore):
        def _call(self, what, fn):
            nonlocal pages
            result = super()._call(what, fn)
            if what == "reading events" and reading:
                pages += 1
                if pages == 2:  # the light visitor is done and the heavy one's first 1,000 rows are read
                    execute(
                        pg_url,
                        "INSERT INTO events (visitor_id, event_type, created_at) VALUES "
                        "(:light, 'backdated', now() - interval '170 days'), "
                        "(:heavy, 'backdated', now() - interval '170 days'), (:heavy, 'page_view', now())",
                        "DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE visitor_id = :heavy "
                        "AND event_type = 'docs_view' ORDER BY created_at DESC LIMIT 1)",
                        params={"light": light, "heavy": heavy},
                    )
            return result

    store = LiveProduct(rest.url, key=REST_KEY, max_rows=1000)
    store.open().check()
    assert store.fast_events is False
    reading = True
    cat = FeatureCatalog()
    read = store.read_events([light, heavy], since=cat.since(as_of), as_of=as_of)
    assert pages == 4  # ~2,500 rows: the light visitor whole, then the heavy one in three answers
    assert read.dropped["future"] >= 1  # the live event, counted and not read
    execute(pg_url, "DELETE FROM events WHERE event_type = 'backdated'")  # both came in behind the reader
    _same_as_sql(pg_url, read, [light, heavy], as_of, model)


def test_more_identical_events_than_one_answer_holds_are_counted(pg_url):
    """A backfill gives many events one timestamp, and events without a time are legal: when one answer
    holds nothing but one visitor's events at one timestamp, they are read type by type, and a run of
    identical events is counted rather than read."""
    make_product(pg_url, users=5, seed=50)
    vids = sorted(v for (v,) in execute(pg_url, "SELECT visitor_id FROM users WHERE visitor_id IS NOT NULL")[0])
    heavy = vids[0]
    execute(
        pg_url,
        "INSERT INTO events (visitor_id, event_type, created_at) "
        "SELECT :v, t, timestamptz '2026-11-20 10:00:00+00' FROM unnest(ARRAY['page_view', 'pricing_view']) t, "
        "generate_series(1, 60) "
        "UNION ALL SELECT :v, NULL, timestamptz '2026-11-20 10:00:00+00' FROM generate_series(1, 3) "
        "UNION ALL SELECT :v, 'signup', NULL FROM generate_series(1, 70) "
        "UNION ALL SELECT :v, NULL, NULL FROM generate_series(1, 55) "
        "UNION ALL SELECT :v, 'docs_view', now() - make_interval(hours => i) FROM generate_series(1, 80) i",
        "DROP FUNCTION lead_scorer_daily_events",
        params={"v": heavy},
    )
    as_of = datetime.now(UTC)
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=50) as small:
        store = RestStore(small.url, key=REST_KEY, max_rows=50)
        store.open().check()
        read = store.read_events(vids, since=FeatureCatalog().since(as_of), as_of=as_of)
        assert small.errors == []
    assert read.dropped["null_time"] >= 70 and read.dropped["null_type"] >= 3
    _same_as_sql(pg_url, read, vids, as_of)


def test_visitor_ids_the_api_returns_in_another_form_stop_the_read(pg_url):
    """``events.visitor_id`` as uuid, ``users.visitor_id`` as upper-case text: the API returns the events under
    ids nobody asked for. The read stops with the reason, rather than asking again forever."""
    make_product(pg_url, users=6, seed=51)
    execute(
        pg_url,
        "DROP FUNCTION lead_scorer_daily_events",
        "UPDATE users SET visitor_id = upper(md5(visitor_id)::uuid::text) WHERE visitor_id IS NOT NULL",
        "ALTER TABLE events ALTER COLUMN visitor_id TYPE uuid USING md5(visitor_id)::uuid",
    )
    vids = [v for (v,) in execute(pg_url, "SELECT visitor_id FROM users WHERE visitor_id IS NOT NULL")[0]]
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=20) as small:
        store = RestStore(small.url, key=REST_KEY, max_rows=20)
        store.open().check()
        as_of = datetime.now(UTC)
        with pytest.raises(StoreError, match="in a form it was not asked for") as err:
            store.read_events(vids, since=FeatureCatalog().since(as_of), as_of=as_of)
    assert "uuid" in (err.value.hint or "")


def test_one_run_at_a_time_over_rest_and_a_dead_holder_lets_go(pg_url, rest):
    """Over the Data API the run lock is a lease: a second store is refused while the first holds it, gets it
    once the first gives it back, and gets it from a holder that died once its lease ran out."""
    from lead_errors import RunLocked

    make_product(pg_url, users=10, seed=53)
    first = RestStore(rest.url, key=REST_KEY)
    first.open().check()
    first.lock_run("lead_scoring_pipeline")
    second = RestStore(rest.url, key=REST_KEY)
    second.open().check()
    with pytest.raises(RunLocked, match="holds"):
        second.lock_run("lead_scoring_pipeline")
    second.lock_run("another_model")  # another model's runs are not this one's
    second.close()

    first.close()  # gives the lease back
    third = RestStore(rest.url, key=REST_KEY)
    third.lock_run("lead_scoring_pipeline")
    # The holder dies without closing: its lease runs out (here: made to have run out), and the next run takes it.
    third._pg.session.close()
    execute(pg_url, "UPDATE lead_scorer_locks SET expires_at = now() - interval '1 second'")
    fourth = RestStore(rest.url, key=REST_KEY)
    fourth.lock_run("lead_scoring_pipeline")
    holders = execute(pg_url, "SELECT count(*) FROM lead_scorer_locks WHERE key = 'lead-scorer:lead_scoring_pipeline'")
    assert holders[0][0][0] == 1
    fourth.close()
    assert execute(pg_url, "SELECT count(*) FROM lead_scorer_locks WHERE key LIKE '%pipeline'")[0][0][0] == 0
