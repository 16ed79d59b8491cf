"""What one Spark task does with one group of users: the batch loop's step 5, on an executor.

A group is the users of one key range and the daily-grain rows of their visitors (a cogroup). The rows go
through the same code the single-machine job runs: `scorer.stores.base.split_dropped` (normalized types,
dropped rows counted), `FeatureCatalog.features`, then `scorer.page.score_page` (scores → checked → changed →
reasons), the batch loop's step. Only the write is Spark's own (`PgWriter`). A user fails alone, as in the batch
loop: a score that is not a probability, or a row the database refuses, is named in the ``error`` column and
the others of its key range are written.

Nothing here imports pyspark at module level: the function runs inside Spark's Python workers, and the
module stays importable (and testable) without Spark. `group_scorer` is called on the driver with a
picklable `GroupPlan`; the function it returns runs on an executor, once per key range.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from lead_errors import ScoreValueError
from models import FeatureCatalog
from registry import LoadedModel
from scorer.contract import Names
from scorer.logs import redact_text
from scorer.page import PageScores, check_scores, not_probabilities, score_page
from scorer.stores.base import UserPage, split_dropped

__all__ = ["GROUP_COUNTS", "OUT_COLUMNS", "GroupPlan", "PgWriter", "group_scorer"]

Sink = Literal["db", "parquet", "none"]

#: What a group hands back, one row per user; the group's own counts ride on its first row (0 elsewhere),
#: so one aggregation on the driver sums them without a second pass over the data.
OUT_COLUMNS = (
    "lead_score",  # the new score
    "lead_score_reasons",  # JSON text (None: not computed for this user, or the model gives none)
    "changed",  # written (or would be): new, another model, or moved by the tolerance
    "final_score",  # the user's score once the run is done: new if changed, else the one it kept
    "group_batches",
    "group_vanished",
    "group_events",
    "group_null_type",
    "group_null_time",
    "group_future",
    "group_moved",  # of those changed, how many are new or moved by the tolerance (the rest: another model's)
    "error",  # why this user failed (its score is not a probability, or the database refused its row), else None
)
#: The group's own counts (on its first row), which the driver sums.
GROUP_COUNTS = tuple(c for c in OUT_COLUMNS if c.startswith("group_"))


@dataclass(frozen=True, kw_only=True)
class GroupPlan:
    """Everything a task needs, fixed on the driver: pinned model, run time, where and how to write."""

    model: Any  # a Broadcast of the LoadedModel, or the LoadedModel itself (tests, local calls)
    catalog: FeatureCatalog
    as_of: datetime
    tolerance: float
    sink: Sink
    reasons: bool  # write reasons (the store has the column and the model gives them)
    compare: bool  # the users carry their current score and model (skip nothing otherwise)
    user_id: str = "user_id"
    visitor_id: str = "visitor_id"
    lead_score: str = "lead_score"
    model_version: str = "model_version"
    writer: PgWriter | None = None
    chunk_rows: int = 5_000
    #: Test-only: the task of the first key range (bucket 0) dies (its Python worker exits) on its first attempt, after
    #: its second chunk is staged and before that chunk's UPDATE runs, so Spark retries it.
    fail_once_after_staging: bool = False


def _loaded(model: Any) -> LoadedModel:
    return model.value if hasattr(model, "value") else model


def group_scorer(plan: GroupPlan) -> Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]:
    """The function `cogroup(...).applyInPandas` calls per key range: (users, their visitors' grain) → rows."""

    def score_group(users: pd.DataFrame, grain: pd.DataFrame) -> pd.DataFrame:
        return _score_group(plan, users, grain)

    return score_group


def _objects(values: pd.Series) -> np.ndarray:
    """A column as an object array with None for a missing value (what `split_dropped` expects)."""
    arr = values.to_numpy(dtype=object)
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in arr], dtype=object)


def _score_group(plan: GroupPlan, users: pd.DataFrame, grain: pd.DataFrame) -> pd.DataFrame:
    if users.empty:
        return pd.DataFrame({plan.user_id: users[plan.user_id]} | {c: [] for c in OUT_COLUMNS})
    model = _loaded(plan.model)
    users = users.sort_values(plan.user_id, kind="stable").reset_index(drop=True)
    read = split_dropped(
        visitor_id=_objects(grain["visitor_id"]),
        event_type=_objects(grain["event_type"]),
        day=_objects(grain["day"].astype(object)),
        future=_objects(grain["future"].astype(object)),
        n=grain["n"].to_numpy(dtype=np.int64),
    )
    visitor_ids = [v if isinstance(v, str) else None for v in users[plan.visitor_id].to_numpy(dtype=object)]
    features = plan.catalog.features(read.grain, visitor_ids=visitor_ids, as_of=plan.as_of, names=model.input_names)
    user_ids = users[plan.user_id].tolist()
    n = len(user_ids)
    if plan.compare:
        old = pd.to_numeric(users[plan.lead_score], errors="coerce").to_numpy(dtype=np.float64)
        models = [m if isinstance(m, str) else None for m in users[plan.model_version].to_numpy(dtype=object)]
        page = UserPage(user_ids=user_ids, visitor_ids=visitor_ids, scores=old, models=models)
    else:
        old = np.full(n, np.nan)
        page = UserPage(user_ids=user_ids, visitor_ids=visitor_ids)
    # Step 5 as the batch loop runs it; a user whose score is not a probability fails alone, as there.
    errors: list[str | None] = [None] * n
    ok = np.ones(n, dtype=bool)
    try:
        scored = _score_page(plan, model, features, page)
    except ScoreValueError:
        raw = np.asarray(model.predict_scores(features), dtype=np.float64)
        ok = ~not_probabilities(raw)
        for i in np.flatnonzero(~ok):
            errors[i] = _score_error(raw[i])
        keep = np.flatnonzero(ok)
        scored = _score_page(plan, model, features.iloc[keep].reset_index(drop=True), _take(page, keep))
    kept = np.flatnonzero(ok)
    scores = np.full(n, np.nan)
    changed = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    moved = 0
    if scored is not None:
        scores[kept] = scored.scores
        changed[kept] = scored.changed
        moved = scored.moved
        if scored.reasons is not None:
            for i, r in zip(kept[scored.explained], scored.reasons, strict=True):
                reasons[i] = r
    vanished = 0
    if plan.sink == "db" and changed.any():
        if plan.writer is None:
            raise ValueError("a database sink needs a writer")
        idx = np.flatnonzero(changed)
        vanished, refused = plan.writer.write(
            user_ids=[user_ids[i] for i in idx],
            scores=scores[idx],
            reasons=[reasons[i] for i in idx] if plan.reasons else None,
            model=model.resolved.identity,
            scored_at=plan.as_of,
            chunk_rows=plan.chunk_rows,
            fail_once_after_staging=plan.fail_once_after_staging and int(users["bucket"].iloc[0]) == 0,
        )
        if refused:
            # The database refused these users' own rows: they keep their stored score, as in the batch loop.
            where = {str(user_ids[i]): i for i in idx}
            for user, error in refused.items():
                i = where[user]
                errors[i], changed[i] = error, False
                moved -= int(np.isnan(old[i]) or abs(scores[i] - old[i]) >= plan.tolerance)
    failed = np.array([e is not None for e in errors])
    # A lake's score table is a snapshot of everyone; the database holds the new score where it was written.
    final = np.where((changed | (plan.sink == "parquet")) & ~failed, scores, old)
    first = np.zeros(n, dtype=np.int64)
    out = pd.DataFrame(
        {
            plan.user_id: users[plan.user_id],
            "lead_score": scores,
            "lead_score_reasons": pd.Series(reasons, dtype=object),
            "changed": changed,
            "final_score": final,
            "error": pd.Series(errors, dtype=object),
        }
    )
    for name, value in (
        ("group_batches", 1),
        ("group_vanished", vanished),
        ("group_events", read.events_read),
        ("group_null_type", read.dropped.get("null_type", 0)),
        ("group_null_time", read.dropped.get("null_time", 0)),
        ("group_future", read.dropped.get("future", 0)),
        ("group_moved", moved),
    ):
        col = first.copy()
        col[0] = value
        out[name] = col
    return out


def _score_page(plan: GroupPlan, model: LoadedModel, features: pd.DataFrame, page: UserPage) -> PageScores | None:
    """`score_page` for a key range (None when no user in it is left to score)."""
    if not len(page):
        return None
    return score_page(
        model,
        features,
        page,
        identity=model.resolved.identity,
        tolerance=plan.tolerance,
        catalog=plan.catalog,
        reasons=plan.reasons,
        explain_all=plan.sink == "parquet",
    )


def _take(page: UserPage, rows: np.ndarray) -> UserPage:
    """The users of ``page`` at ``rows`` (those whose scores are probabilities)."""
    return UserPage(
        user_ids=[page.user_ids[i] for i in rows],
        visitor_ids=[page.visitor_ids[i] for i in rows],
        scores=None if page.scores is None else page.scores[rows],
        models=None if page.models is None else [page.models[i] for i in rows],
    )


def _score_error(score: float) -> str:
    """A failing user's error, in the batch loop's words for one user whose score is not a probability."""
    try:
        check_scores(np.array([score]))
    except ScoreValueError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ScoreValueError"


@dataclass(frozen=True, kw_only=True)
class PgWriter:
    """Update-only writes from an executor: per chunk of a key range, the chunk's scores into a staging table
    (``COPY``), then one ``UPDATE … FROM`` bounded by the chunk's own lowest and highest key, in one
    transaction. A retried task writes the same values again: the UPDATE skips rows that already hold them
    (so a retry neither rewrites a row nor fires its triggers twice), and nothing is ever inserted into the
    users table.
    """

    url: str  # a libpq URI (postgresql://…), secrets included: never logged
    names: Names
    statement_timeout_s: float = 60.0
    lock_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self.url,
            connect_timeout=max(1, round(self.connect_timeout_s)),
            application_name="lead-scorer spark",
            options=f"-c statement_timeout={round(self.statement_timeout_s * 1000)} "
            f"-c lock_timeout={round(self.lock_timeout_s * 1000)}",
        )

    def _statements(self, *, reasons: bool) -> tuple[Any, Any]:
        from psycopg import sql

        n = self.names
        users = sql.Identifier(n.schema, n.users)
        uid, score, model, at = (sql.Identifier(c) for c in (n.user_id, n.lead_score, n.model_version, n.scored_at))
        # The staging table takes the key's and the score's own types from the users table; a temporary table
        # is the session's own, so concurrent tasks never see each other's rows.
        create = sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS lead_scorer_stage ON COMMIT DELETE ROWS AS "
            "SELECT {uid} AS user_id, {score} AS score, NULL::text AS reasons FROM {users} WITH NO DATA"
        ).format(uid=uid, score=score, users=users)
        sets = sql.SQL("{score} = s.score, {model} = %(model)s, {at} = %(at)s").format(score=score, model=model, at=at)
        if reasons:
            sets += sql.SQL(", {r} = s.reasons::jsonb").format(r=sql.Identifier(n.reasons))
        # Bounded by the chunk's own key range (ORDER BY … LIMIT 1: no min(uuid) before PostgreSQL 16): without
        # it PostgreSQL may join the chunk against a scan of the whole table.
        update = sql.SQL(
            "WITH lo AS (SELECT user_id FROM lead_scorer_stage ORDER BY user_id LIMIT 1), "
            "hi AS (SELECT user_id FROM lead_scorer_stage ORDER BY user_id DESC LIMIT 1), "
            "upd AS (UPDATE {users} AS u SET {sets} FROM lead_scorer_stage AS s "
            "WHERE u.{uid} = s.user_id AND u.{uid} >= (SELECT user_id FROM lo) AND u.{uid} <= (SELECT user_id FROM hi) "
            "AND (u.{score}, u.{model}, u.{at}) IS DISTINCT FROM (s.score, %(model)s::text, %(at)s::timestamptz) "
            "RETURNING 1) "
            "SELECT (SELECT count(*) FROM upd), "
            "(SELECT count(*) FROM lead_scorer_stage AS s JOIN {users} AS u ON u.{uid} = s.user_id)"
        ).format(users=users, sets=sets, uid=uid, score=score, model=model, at=at)
        return create, update

    def write(
        self,
        *,
        user_ids: Sequence[Any],
        scores: np.ndarray,
        reasons: Sequence[str | None] | None,
        model: str,
        scored_at: datetime,
        chunk_rows: int,
        fail_once_after_staging: bool,
    ) -> tuple[int, dict[str, str]]:
        """Write the scores chunk by chunk: how many users were gone (deleted since they were read), and the
        users whose own row the database refused (id → why), each found by splitting its chunk in halves
        while everyone else in it is written, as the batch loop narrows a batch down."""
        statements = self._statements(reasons=reasons is not None)
        rows = _Rows(user_ids=user_ids, scores=scores, reasons=reasons, model=model, scored_at=scored_at)
        vanished = 0
        refused: dict[str, str] = {}
        with self._connect() as conn:
            for c, start in enumerate(range(0, len(user_ids), chunk_rows)):
                stop = min(start + chunk_rows, len(user_ids))
                die = fail_once_after_staging and (c == 1 or stop == len(user_ids))
                gone, why = self._chunk(conn, statements, rows, start, stop, die=die)
                vanished += gone
                refused |= why
        return vanished, refused

    def _chunk(
        self, conn: Any, statements: tuple[Any, Any], rows: _Rows, start: int, stop: int, *, die: bool
    ) -> tuple[int, dict[str, str]]:
        """One chunk in one transaction; a refusal that is about the rows (a trigger, a constraint, a value)
        splits it. Connection trouble and a cancelled statement fail the task (Spark retries it)."""
        import psycopg

        create, update = statements
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(create)
                with cur.copy("COPY lead_scorer_stage (user_id, score, reasons) FROM STDIN") as copy:
                    for i in range(start, stop):
                        r = rows.reasons[i] if rows.reasons is not None else None
                        # None reasons are JSON null, as the SQL store writes them.
                        copy.write_row((rows.user_ids[i], repr(float(rows.scores[i])), r if r is not None else "null"))
                if die:
                    _die_on_first_attempt()
                cur.execute(update, {"model": rows.model, "at": rows.scored_at})
                _, matched = cur.fetchone()
            return (stop - start) - int(matched), {}
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.DatabaseError as exc:
            if exc.sqlstate == "57014":  # query_canceled: its timeout or a stop, not a row
                raise
            if stop - start == 1:
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                return 0, {
                    str(rows.user_ids[start]): redact_text(f"StoreError: the database refused it: {first}")[:300]
                }
            middle = (start + stop) // 2
            gone_a, why_a = self._chunk(conn, statements, rows, start, middle, die=False)
            gone_b, why_b = self._chunk(conn, statements, rows, middle, stop, die=False)
            return gone_a + gone_b, why_a | why_b


@dataclass(frozen=True, kw_only=True)
class _Rows:
    """What a key range writes: the changed users' ids, scores and reasons, under one model and time."""

    user_ids: Sequence[Any]
    scores: np.ndarray
    reasons: Sequence[str | None] | None
    model: str
    scored_at: datetime


def _die_on_first_attempt() -> None:
    """The test switch's crash: the Python worker exits as a killed process would, mid-transaction."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.attemptNumber() == 0:
        os._exit(137)
