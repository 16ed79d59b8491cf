"""The batch loop against real databases (SQLite and PostgreSQL): what a data team would notice.

These tests are about the loop's mechanics (paging, writing, failures), so they score everyone; who is
selected (open leads, freshness) is tested in test_freshness.py."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from scorer.job import JobOptions, score_users
from scorer.stores.sql import engine_for
from tests.support import execute, make_product, snapshot


class Recording:
    """Wraps a real store and records what the loop asked of it (the store itself is untouched)."""

    def __init__(self, inner: Any, before_write: Any = None, *, keep_ids: bool = True) -> None:
        self.keep_ids = keep_ids
        self.inner = inner
        self.kind = inner.kind
        self.written: list[Any] = []
        self.pages: list[int] = []
        self.limits: list[int] = []
        self.event_batches: list[int] = []
        self.before_write = before_write

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def select_users(self, selector: Any, **kw: Any) -> Any:
        self.limits.append(kw["limit"])
        page = self.inner.select_users(selector, **kw)
        self.pages.append(len(page))
        return page

    def read_events(self, visitor_ids: Any, **kw: Any) -> Any:
        self.event_batches.append(len(visitor_ids))
        return self.inner.read_events(visitor_ids, **kw)

    def write_scores(self, write: Any) -> int:
        if self.before_write is not None and len(write.user_ids):
            self.before_write(list(write.user_ids))
        n = self.inner.write_scores(write)
        if self.keep_ids:
            self.written.extend(write.user_ids)
        return n


def test_keyset_pages_score_every_unscored_user_exactly_once(target, trained):
    _, model = trained
    make_product(target.url, users=1037, seed=3)
    before = snapshot(target.url)
    store = Recording(target.store())

    summary = score_users(
        store=store, model=model, options=JobOptions(select="unscored", batch_size=100, leads_only=False)
    )

    assert summary.batches == 11 and summary.exit_code == 0
    assert summary.users_scored == 1037 and summary.users_failed == 0
    counts = Counter(store.written)
    assert len(counts) == 1037 and set(counts.values()) == {1}
    after = snapshot(target.url)
    assert len(after) == len(before) == 1037
    assert after["lead_score"].notna().all()
    assert after["lead_score"].between(0, 1).all()
    assert set(after["lead_score_model_version"]) == {model.resolved.identity}
    untouched = [c for c in before.columns if not c.startswith("lead_score")]
    assert after[untouched].equals(before[untouched])
    # A second run finds nothing left to do.
    again = score_users(
        store=target.store(), model=model, options=JobOptions(select="unscored", batch_size=100, leads_only=False)
    )
    assert again.users_selected == 0 and again.batches == 0


def test_unscored_leaves_scored_users_alone_and_all_rescores_everyone(target, trained):
    _, model = trained
    make_product(target.url, users=250, seed=4)
    execute(target.url, "UPDATE users SET lead_score = 0.5, lead_score_model_version = 'old' WHERE user_id <= 100")
    summary = score_users(
        store=target.store(), model=model, options=JobOptions(select="unscored", batch_size=64, leads_only=False)
    )
    assert summary.users_scored == 150
    kept = execute(target.url, "SELECT count(*) FROM users WHERE lead_score = 0.5 AND lead_score_model_version = 'old'")
    assert kept[0][0][0] == 100
    everyone = score_users(
        store=target.store(), model=model, options=JobOptions(select="all", batch_size=64, leads_only=False)
    )
    assert everyone.users_scored == 250


def test_user_deleted_between_read_and_write_is_not_inserted(target, trained):
    _, model = trained
    make_product(target.url, users=120, seed=5)
    victim: list[Any] = []

    def delete_one(user_ids: list[Any]) -> None:
        if not victim:
            victim.append(user_ids[10])
            execute(target.url, "DELETE FROM users WHERE user_id = :u", params={"u": user_ids[10]})

    store = Recording(target.store(), before_write=delete_one)
    summary = score_users(
        store=store, model=model, options=JobOptions(select="unscored", batch_size=50, leads_only=False)
    )

    after = snapshot(target.url)
    assert len(after) == 119  # the users table has NOT NULL email/signed_up_at: an upsert would have failed
    assert str(victim[0]) not in set(after["user_id"])
    assert after["lead_score"].notna().all()
    assert summary.users_scored == 119 and summary.users_vanished == 1 and summary.exit_code == 0


def test_messy_events_are_dropped_and_counted_never_nan(target, trained):
    _, model = trained
    make_product(target.url, users=40, seed=6, events_per_user=3)
    execute(
        target.url,
        "DELETE FROM events",
        "UPDATE users SET visitor_id = NULL WHERE user_id = 1",  # no visitor → zero activity
        "UPDATE users SET visitor_id = 'quiet' WHERE user_id = 2",  # a visitor with no events
        "UPDATE users SET visitor_id = 'messy' WHERE user_id = 3",
    )
    rows = [
        ("messy", "page_view", "CURRENT"),
        ("messy", None, "CURRENT"),  # NULL type
        ("messy", "   ", "CURRENT"),  # blank type
        ("messy", "page_view", None),  # NULL time
        ("messy", "page_view", "FUTURE"),  # after as_of
        ("messy", "never_seen_in_training", "CURRENT"),
        ("messy", "  PRICING_View ", "CURRENT"),
    ]
    engine = engine_for(target.url)
    events = sa.Table("events", sa.MetaData(), autoload_with=engine)
    stamp = {
        "CURRENT": datetime.now(UTC) - timedelta(days=2),
        "FUTURE": datetime.now(UTC) + timedelta(days=3),
        None: None,
    }
    with engine.begin() as conn:
        conn.execute(
            sa.insert(events), [{"visitor_id": v, "event_type": t, "created_at": stamp[c]} for v, t, c in rows]
        )
    engine.dispose()

    summary = score_users(
        store=target.store(), model=model, options=JobOptions(select="unscored", batch_size=10, leads_only=False)
    )

    after = snapshot(target.url)
    assert after["lead_score"].notna().all() and np.isfinite(after["lead_score"].to_numpy(dtype=float)).all()
    assert summary.dropped == {"null_type": 2, "null_time": 1, "future": 1}
    assert summary.events_read == len(rows)
    assert summary.users_scored == 40


def test_a_row_the_database_rejects_costs_that_user_only_and_a_rerun_resumes(target, trained, capsys):
    """A trigger that raises for one user fails its batch's write every time. The batch is split down to that
    user: the other 99 are written, the one is named (id and cause, not its data), the exit code says so."""
    _, model = trained
    make_product(target.url, users=300, seed=8)
    if target.url.startswith("sqlite"):
        trigger = [
            "CREATE TRIGGER refuse_150 BEFORE UPDATE OF lead_score ON users WHEN NEW.user_id = 150 "
            "BEGIN SELECT RAISE(ABORT, 'user 150 is locked'); END"
        ]
        drop = "DROP TRIGGER refuse_150"
    else:
        trigger = [
            "CREATE FUNCTION refuse_150() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.user_id = 150 THEN RAISE EXCEPTION 'user 150 is locked'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_150 BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION refuse_150()",
        ]
        drop = "DROP TRIGGER refuse_150 ON users"
    execute(target.url, *trigger)
    options = JobOptions(select="stale", batch_size=100, leads_only=False)

    first = score_users(store=target.store(), model=model, options=options)

    assert first.exit_code == 1 and first.failed_batches == 0 and first.batches == 3
    assert first.users_scored == 299 and first.users_failed == 1
    assert first.failed_users == [{"user_id": "150", "error": first.failed_users[0]["error"]}]
    assert "user 150 is locked" in first.failed_users[0]["error"]
    unscored = execute(target.url, "SELECT user_id FROM users WHERE lead_score IS NULL")[0]
    assert [int(r[0]) for r in unscored] == [150]
    out = capsys.readouterr().out
    assert "users_failed" in out and len(max(out.splitlines(), key=len)) < 2_000  # no line lists a batch's ids

    execute(target.url, drop)
    store = Recording(target.store())
    second = score_users(store=store, model=model, options=options)
    assert second.exit_code == 0 and second.users_scored == 1  # only the failed user is redone
    assert store.written == [150]


def test_an_event_at_infinity_is_dropped_and_counted_not_a_failed_batch(target, trained):
    """`created_at = 'infinity'` (and '-infinity') made the day arithmetic fail for the whole batch on every
    run. It is a time after the run (counted as future) or before the window (not read)."""
    if target.kind == "sqlite":
        pytest.skip("SQLite has no infinite timestamps")
    _, model = trained
    make_product(target.url, users=120, seed=15)
    visitor = execute(target.url, "SELECT visitor_id FROM users WHERE visitor_id IS NOT NULL LIMIT 1")[0][0][0]
    execute(
        target.url,
        "INSERT INTO events (visitor_id, event_type, created_at) VALUES "
        "(:v, 'page_view', 'infinity'), (:v, 'page_view', '-infinity')",
        params={"v": visitor},
    )
    summary = score_users(store=target.store(), model=model, options=JobOptions(batch_size=50, leads_only=False))
    assert summary.exit_code == 0 and summary.users_scored == 120 and summary.users_failed == 0
    plain = score_users(
        store=target.store(), model=model, options=JobOptions(select="all", dry_run=True, leads_only=False)
    )
    assert plain.dropped["future"] >= 1


def test_text_and_uuid_ids_page_by_key(pg_target, trained):
    import uuid

    _, model = trained
    ids = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(1, 231)]
    make_product(pg_target.url, users=230, seed=9, id_type=sa.Uuid, user_ids=ids)
    summary = score_users(
        store=pg_target.store(), model=model, options=JobOptions(select="unscored", batch_size=64, leads_only=False)
    )
    assert summary.users_scored == 230 and summary.batches == 4
    assert snapshot(pg_target.url)["lead_score"].notna().all()


def test_text_ids_with_awkward_characters(target, trained):
    _, model = trained
    ids = [f'acct,{i}"(x)\\{{y}}' if i % 2 else f"user {i:04d}" for i in range(1, 131)]
    make_product(target.url, users=130, seed=10, id_type=sa.Text, user_ids=ids)
    store = Recording(target.store())
    summary = score_users(
        store=store, model=model, options=JobOptions(select="unscored", batch_size=40, leads_only=False)
    )
    assert summary.users_scored == 130 and sorted(store.written) == sorted(ids)


def test_visitor_ids_with_awkward_characters_find_their_events(target, trained):
    """Ids travel inside one array literal on PostgreSQL: quotes, backslashes, braces and commas in a
    visitor id must still find that visitor's events, so the scores do not change when ids do."""
    _, model = trained
    make_product(target.url, users=150, seed=12)
    options = JobOptions(select="all", batch_size=50, leads_only=False)
    assert score_users(store=target.store(), model=model, options=options).users_scored == 150
    before = snapshot(target.url)
    awkward = """'a\\"{' || visitor_id || '}", NULL' """
    execute(target.url, f"UPDATE users SET visitor_id = {awkward}", f"UPDATE events SET visitor_id = {awkward}")
    execute(target.url, "UPDATE users SET lead_score = NULL")
    summary = score_users(store=target.store(), model=model, options=options)
    after = snapshot(target.url)
    assert summary.users_scored == 150 and summary.events_read > 0
    assert after["visitor_id"].dropna().str.startswith('a\\"{').all()
    np.testing.assert_allclose(after["lead_score"], before["lead_score"], rtol=0, atol=1e-12)


def test_dry_run_writes_nothing(target, trained):
    _, model = trained
    make_product(target.url, users=80, seed=11)
    before = snapshot(target.url)
    summary = score_users(
        store=target.store(), model=model, options=JobOptions(dry_run=True, batch_size=30, leads_only=False)
    )
    assert summary.users_scored == 80 and summary.stats.count == 80
    assert snapshot(target.url).equals(before)


def test_limit_caps_the_users_selected(target, trained):
    _, model = trained
    make_product(target.url, users=100, seed=12)
    summary = score_users(
        store=target.store(), model=model, options=JobOptions(limit=45, batch_size=20, leads_only=False)
    )
    assert summary.users_selected == 45 and summary.batches == 3
    assert int(snapshot(target.url)["lead_score"].notna().sum()) == 45


def test_a_store_lost_beyond_its_retries_ends_the_run_with_exit_4_and_keeps_the_totals(target, trained, capsys):
    """The database goes away after two batches and stays away longer than the store's retry budget: the run
    stops (exit 4, not 1, which means "some batches failed"), the two batches stay written, and the totals
    say how far it got."""
    _, model = trained
    make_product(target.url, users=300, seed=13)

    class Outage(Recording):
        def select_users(self, selector: Any, **kw: Any) -> Any:
            if len(self.pages) == 2:
                raise sa.exc.OperationalError("SELECT …", {}, Exception("connection refused (after 4 attempts)"))
            return super().select_users(selector, **kw)

    store = Outage(target.store())
    summary = score_users(store=store, model=model, options=JobOptions(batch_size=100, leads_only=False))

    assert summary.exit_code == 4 and summary.store_lost and "connection refused" in summary.store_lost
    assert summary.batches == 2 and summary.users_scored == 200 and summary.failed_batches == 0
    assert sorted(store.written) == list(range(1, 201))
    assert int(snapshot(target.url)["lead_score"].notna().sum()) == 200
    assert "store_lost" in capsys.readouterr().out


def test_a_held_row_lock_fails_that_batch_within_the_lock_timeout(pg_url, trained):
    """Another session holds one user's row lock for as long as it likes: that batch gives up after the lock
    timeout (and the store's retries), the other batches are written, and the run does not hang."""
    import time

    from scorer.stores.sql import SqlStore, Waits

    _, model = trained
    make_product(pg_url, users=300, seed=14)
    engine = engine_for(pg_url)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT 1 FROM users WHERE user_id = 150 FOR UPDATE"))
        store = SqlStore(pg_url, waits=Waits(lock_s=0.5))
        store.open().check()
        started = time.monotonic()
        summary = score_users(store=store, model=model, options=JobOptions(batch_size=100, leads_only=False))
        elapsed = time.monotonic() - started
        holder.rollback()
    engine.dispose()
    assert elapsed < 15, elapsed
    assert summary.failed_batches == 1 and summary.users_scored == 200 and summary.exit_code == 1
    unscored = execute(pg_url, "SELECT min(user_id), max(user_id) FROM users WHERE lead_score IS NULL")
    assert tuple(unscored[0][0]) == (101, 200)


def test_a_model_without_contributions_scores_without_reasons_and_says_so_once(target, trained, capsys):
    """A tree model has no per-feature contributions to name: scores are written, reasons are not, and the run
    says so once, not once per batch."""
    import dataclasses

    from sklearn.tree import DecisionTreeClassifier

    _, model = trained
    make_product(target.url, users=150, seed=18)
    rng = np.random.default_rng(0)
    x = rng.poisson(2, (300, len(model.input_names))).astype(float)
    import pandas as pd

    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(
        pd.DataFrame(x, columns=model.input_names), rng.integers(0, 2, 300)
    )
    treed = dataclasses.replace(model, pipeline=tree)
    summary = score_users(store=target.store(), model=treed, options=JobOptions(batch_size=50, leads_only=False))
    assert summary.exit_code == 0 and summary.users_scored == 150
    after = snapshot(target.url)
    assert after["lead_score"].notna().all() and after["lead_score_reasons"].isna().all()
    assert capsys.readouterr().out.count("reasons_unavailable") == 1
