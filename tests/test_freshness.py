"""Scores that stay true every morning, on SQLite, PostgreSQL and the Supabase REST stand-in: who a daily
`stale` run rereads, what it rewrites, and what it leaves alone.

Days pass by running the loop with a later ``now``; events are inserted with real timestamps.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from scorer.job import JobOptions, score_users
from scorer.stores.sql import engine_for
from tests.support import NOW, execute, make_product, snapshot
from tests.test_job import Recording

LEADS = JobOptions(select="stale", batch_size=64)


def _users(url: str) -> pd.DataFrame:
    frame = snapshot(url)
    frame["user_id"] = frame["user_id"].astype(int)
    return frame.set_index("user_id").sort_index()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal rows and values (a column that was all NULL reads back as None, later as NaN)."""

    def norm(f: pd.DataFrame) -> pd.DataFrame:
        return f.astype(object).where(f.notna(), None)

    return norm(a).equals(norm(b))


def _text(column: pd.Series) -> pd.Series:
    return column.map(lambda v: "" if pd.isna(v) else str(v))


def _json(value: Any) -> Any:
    """jsonb reads back parsed; SQLite's text column as text."""
    return json.loads(value) if isinstance(value, str) else value


def _open_leads(url: str) -> list[int]:
    rows = execute(url, "SELECT user_id FROM users WHERE converted_at IS NULL ORDER BY user_id")[0]
    return [int(r[0]) for r in rows]


def _add_events(url: str, visitor: str, kinds: dict[str, int], *, at: datetime) -> None:
    engine = engine_for(url)
    events = sa.Table("events", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(events),
            [{"visitor_id": visitor, "event_type": t, "created_at": at} for t, n in kinds.items() for _ in range(n)],
        )
    engine.dispose()


def _score(target: Any, model: Any, options: JobOptions = LEADS, *, now: datetime | None = None) -> Any:
    store = Recording(target.store())
    summary = score_users(store=store, model=model, options=options, now=now)
    return summary, store


def test_a_second_run_right_after_selects_nobody_and_converted_users_are_untouched(target, trained):
    _, model = trained
    make_product(target.url, users=300, seed=21)
    execute(target.url, "UPDATE users SET lead_score = 0.5, lead_score_model_version = 'old' WHERE user_id <= 20")
    before = _users(target.url)
    leads = _open_leads(target.url)
    assert 0 < len(leads) < 300

    first, store = _score(target, model)

    assert first.exit_code == 0 and first.users_selected == len(leads)
    assert sorted(store.written) == leads  # open leads, each exactly once
    after = _users(target.url)
    customers = after.index.difference(leads)
    # A customer keeps its last score, model and time: the old 0.5 of the first twenty included.
    assert _same(after.loc[customers], before.loc[customers])
    assert (after.loc[customers.intersection(range(1, 21)), "lead_score"] == 0.5).all()
    assert after.loc[leads, "lead_score"].notna().all()
    assert set(after.loc[leads, "lead_score_model_version"]) == {model.resolved.identity}

    second, store = _score(target, model)
    assert second.users_selected == 0 and second.batches == 0 and store.written == []
    assert _same(_users(target.url), after)


def test_new_events_rescore_that_lead_only_and_its_reasons_name_them(target, trained):
    _, model = trained
    make_product(target.url, users=300, seed=22)
    _score(target, model)
    before = _users(target.url)
    leads = before[before["converted_at"].isna() & before["visitor_id"].notna()]
    lead = int(leads["lead_score"].idxmin())
    visitor = str(before.loc[lead, "visitor_id"])
    # Fresh high-intent behaviour, after the score was computed.
    _add_events(
        target.url,
        visitor,
        {"pricing_view": 8, "demo_request": 4, "invite_sent": 4, "signup_started": 3, "feature_used": 10},
        at=datetime.now(UTC),
    )

    summary, store = _score(target, model)

    assert summary.users_selected == 1 and store.written == [lead]
    after = _users(target.url)
    assert after.loc[lead, "lead_score"] > before.loc[lead, "lead_score"] + 0.3
    assert after.loc[lead, "lead_scored_at"] != before.loc[lead, "lead_scored_at"]
    others = after.index != lead
    assert _same(after[others], before[others])
    reasons = _json(after.loc[lead, "lead_score_reasons"])
    assert 1 <= len(reasons) <= 3
    words = " ".join(r["reason"] for r in reasons)
    assert any(w in words for w in ("pricing view", "demo request", "invite sent", "signup started", "feature used"))
    assert all(r["effect"] > 0 for r in reasons)  # what raised it


def test_the_next_day_rereads_active_leads_only_and_rewrites_only_what_moved(target, trained):
    _, model = trained
    make_product(target.url, users=300, seed=23)
    leads = _open_leads(target.url)
    # One lead whose only events are older than the catalog's lookback: its features cannot change.
    old_visitor = str(execute(target.url, f"SELECT visitor_id FROM users WHERE user_id = {leads[0]}")[0][0][0])
    execute(target.url, "DELETE FROM events WHERE visitor_id = :v", params={"v": old_visitor})
    _add_events(target.url, old_visitor, {"page_view": 3}, at=NOW - timedelta(days=400))
    execute(target.url, "UPDATE users SET visitor_id = NULL WHERE user_id = :u", params={"u": leads[1]})
    _score(target, model)
    before = _users(target.url)

    tomorrow = datetime.now(UTC) + timedelta(days=1)
    reread = set(int(u) for u in _selected(target, model, tomorrow))
    summary, store = _score(target, model, now=tomorrow)

    assert leads[0] not in reread and leads[1] not in reread  # nothing in the lookback, no visitor
    assert summary.users_selected == len(reread) > 0
    assert summary.users_changed + summary.users_unchanged == summary.users_selected
    assert summary.users_unchanged > 0 and summary.users_changed > 0
    after = _users(target.url)
    moved = (after["lead_score"] - before["lead_score"]).abs()
    rewritten = after.index[_text(after["lead_scored_at"]) != _text(before["lead_scored_at"])]
    assert sorted(store.written) == sorted(int(u) for u in rewritten)
    assert len(rewritten) == summary.users_changed
    # The rows left alone are byte for byte what they were, and moved less than the tolerance would have.
    kept = after.index.difference(rewritten)
    assert _same(after.loc[kept], before.loc[kept])
    assert (moved.loc[rewritten] > 0).all()

    # A rerun the same day redoes nothing: the unchanged users were checked although not rewritten.
    again, store = _score(target, model, now=tomorrow + timedelta(minutes=5))
    assert again.users_selected == 0 and store.written == []


def _selected(target: Any, model: Any, now: datetime) -> list[Any]:
    """Who a stale run at ``now`` would read, by a dry run (nothing written, no checkpoint moved)."""
    store = Recording(target.store())
    pages: list[Any] = []
    inner = store.select_users

    def keep(selector: Any, **kw: Any) -> Any:
        page = inner(selector, **kw)
        pages.extend(page.user_ids)
        return page

    store.select_users = keep  # type: ignore[method-assign]
    score_users(store=store, model=model, options=dataclasses.replace(LEADS, dry_run=True), now=now)
    return pages


def test_a_rerun_after_a_crash_the_same_day_redoes_nothing_finished(target, trained):
    _, model = trained
    make_product(target.url, users=400, seed=24)
    _score(target, model)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    options = dataclasses.replace(LEADS, batch_size=20)
    todo = _selected(target, model, tomorrow)
    assert len(todo) > 60

    # The run stops after three batches (a crash between batches loses the batch in flight, like this).
    calls = iter(range(10_000))
    stopped = score_users(
        store=target.store(), model=model, options=options, now=tomorrow, should_stop=lambda: next(calls) >= 3
    )
    assert stopped.stopped and stopped.batches == 3
    done = todo[:60]

    summary, store = _score(target, model, options, now=tomorrow + timedelta(minutes=1))
    assert summary.users_selected == len(todo) - 60
    assert not set(done) & set(store.written)
    assert _selected(target, model, tomorrow + timedelta(minutes=2)) == []


def test_tolerance_decides_what_is_rewritten(target, trained):
    _, model = trained
    make_product(target.url, users=200, seed=25)
    _score(target, model)
    before = _users(target.url)
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    summary, store = _score(target, model, dataclasses.replace(LEADS, tolerance=0.99), now=tomorrow)

    assert summary.users_selected > 0 and summary.users_changed == 0 and store.written == []
    assert _same(_users(target.url), before)


def test_another_registry_with_the_same_version_number_rescores(target, trained):
    _, model = trained
    make_product(target.url, users=150, seed=26)
    _score(target, model)
    # Version "1" of another registry: same number, another logged model.
    other = dataclasses.replace(
        model, resolved=dataclasses.replace(model.resolved, model_id="m-another-registry", run_id="r2")
    )
    assert other.resolved.version == model.resolved.version

    summary, _ = _score(target, other)

    assert summary.users_selected == len(_open_leads(target.url)) and summary.users_changed == summary.users_selected
    assert set(_users(target.url).dropna(subset=["lead_score"])["lead_score_model_version"]) <= {
        other.resolved.identity,
        None,
    } | set(_users(target.url)["lead_score_model_version"].dropna())


def test_everyone_scores_customers_too(target, trained):
    _, model = trained
    make_product(target.url, users=120, seed=27)
    summary, store = _score(target, model, dataclasses.replace(LEADS, leads_only=False))
    assert summary.users_selected == 120 and sorted(store.written) == list(range(1, 121))


def test_history_rows_equal_the_updates(target, trained):
    _, model = trained
    make_product(target.url, users=150, seed=28)
    options = dataclasses.replace(LEADS, history=True)
    first, _ = _score(target, model, options)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    second, store = _score(target, model, options, now=tomorrow)

    history = execute(target.url, "SELECT user_id, scored_at, score, model_version FROM lead_score_history")[0]
    assert len(history) == first.users_changed + second.users_changed
    users = _users(target.url)
    latest: dict[int, tuple[Any, float, str]] = {}
    for uid, at, score, version in sorted(history, key=lambda r: str(r[1])):
        latest[int(uid)] = (at, float(score), version)
        assert version == model.resolved.identity
    # Every user's newest history row is its current score, to the bit.
    for uid, (_, score, _) in latest.items():
        assert score == users.loc[uid, "lead_score"]
    assert sorted(latest) == sorted(int(u) for u in users.index[users["lead_score"].notna()])
    rows_day2 = [r for r in history if str(r[1]) != str(history[0][1])]
    assert sorted(int(r[0]) for r in rows_day2) == sorted(store.written)


def test_reasons_are_readable_at_most_three_and_deterministic(target, trained):
    _, model = trained
    make_product(target.url, users=120, seed=29)
    _score(target, model)
    first = _users(target.url)["lead_score_reasons"].dropna()
    assert len(first) == len(_open_leads(target.url))
    names = set(model.input_names)
    for raw in first:
        reasons = _json(raw)
        assert len(reasons) <= 3
        for r in reasons:
            assert r["reason"] and "_" not in r["reason"] and not any(n in r["reason"] for n in names)
        effects = [abs(r["effect"]) for r in reasons]
        assert effects == sorted(effects, reverse=True)
    execute(target.url, "UPDATE users SET lead_score = NULL")
    _score(target, model, dataclasses.replace(LEADS, select="unscored"))
    again = _users(target.url)["lead_score_reasons"].dropna()
    assert [_json(r) for r in again] == [_json(r) for r in first]


@pytest.mark.parametrize("shift", [False, True], ids=["unchanged", "shifted"])
def test_drift_is_measured_on_the_population_the_reference_describes(sqlite_url, trained, shift):
    """The trained model's reference deciles (and what its holdout holds through each) come from open leads
    of the same generator: the same kind of data gives a PSI under the 0.2 a run warns at, whatever the time
    of day; a real shift (every lead far more active) gives one over it."""
    _, model = trained
    make_product(sqlite_url, users=1500, seed=30)
    if shift:
        execute(
            sqlite_url,
            "INSERT INTO events (visitor_id, event_type, created_at) "
            "SELECT visitor_id, event_type, created_at FROM events",
            "INSERT INTO events (visitor_id, event_type, created_at) "
            "SELECT visitor_id, 'pricing_view', created_at FROM events WHERE event_type = 'page_view'",
        )
    from tests.conftest import Target

    summary, _ = _score(Target("sqlite", sqlite_url), model)
    psi = summary.distribution.psi(model.resolved.reference_deciles(), model.resolved.reference_shares())
    assert summary.population is not None and summary.population.count == summary.users_changed
    assert (psi > 0.2) if shift else (psi < 0.2), psi
    assert np.isfinite(psi)
