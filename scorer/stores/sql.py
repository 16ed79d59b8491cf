"""The SQL store: PostgreSQL (a Supabase direct or pooled connection string works) and SQLite.

Three statements per batch: a key page of users, one aggregate read of their events at
the daily grain, one set-based update-only write.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np
import pandas as pd
import sqlalchemy as sa
import stamina
import structlog
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import ReflectedColumn

from lead_errors import AuthError, RunLocked, SchemaError, SettingsError, StoreError, TransientError
from models import normalize_event_type
from scorer.contract import Names
from scorer.logs import redact_text, retrying
from scorer.logs import redact_url as redact_any_url
from scorer.stores.base import (
    Checkpoint,
    CohortFeatures,
    EventRead,
    FeatureRequest,
    Freshness,
    ScoreWrite,
    Selector,
    ShadowPairs,
    ShadowWrite,
    Source,
    UserPage,
    VisitorFeatures,
    split_dropped,
)
from scorer.stores.pg_copy import copy_float8_pairs
from scorer.stores.pg_features import DROPPED, feature_sql, fits_packed, unpack
from scorer.stores.sqlite_files import access_errno, not_writable

__all__ = ["SqlStore", "Waits", "engine_for", "redact_url"]

log = structlog.get_logger("lead_scorer.sql")

_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)
_APPLY_HINT = "apply the project's SQL: `lead-scorer db migrate` (or paste `lead-scorer db sql` into the SQL editor)"


def redact_url(url: str) -> str:
    """A database URL safe for logs and errors."""
    if url.count("@") > 1:
        # SQLAlchemy splits the user-info at the first "@": an unencoded "@" in the password showed its tail.
        return redact_any_url(url)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


@dataclass(frozen=True, kw_only=True)
class Waits:
    """How long the SQL store waits on the database before a wait counts as a (transient) failure.

    A frozen network path, a host that accepts and never answers, or another session's row lock would
    otherwise stall the job for as long as they last.
    """

    connect_s: float = 5.0
    statement_s: float = 60.0
    lock_s: float = 10.0
    busy_s: float = 30.0  # SQLite: how long a write waits for another writer


def engine_for(url: str, *, waits: Waits | None = None, application_name: str = "lead-scorer") -> sa.Engine:
    """An engine for a PostgreSQL (psycopg 3) or SQLite URL, with bounded waits.

    Supavisor's transaction mode (port 6543) cannot use prepared statements, so they are off there; it also
    passes no startup options, so there the statement and lock timeouts and work_mem are the database's own.
    """
    waits = waits or Waits()
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise SettingsError(
            "DATABASE_URL is not a valid database URL",
            hint="use e.g. sqlite:///leads.db or postgresql://user:password@host:5432/postgres",
        ) from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("postgresql"):
        connect_args: dict[str, Any] = {
            "connect_timeout": max(1, round(waits.connect_s)),
            # A dead peer is noticed in about a minute, not after the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # Names this store's sessions in pg_stat_activity, so a stop request can cancel their statements.
            "application_name": application_name,
        }
        if parsed.port == 6543:
            connect_args["prepare_threshold"] = None
        else:
            # work_mem: a batch's feature aggregate holds ~1 MB per 1,000 visitors; with the server's default
            # 4 MB PostgreSQL planned it to spill to disk (a fifth of the read). A cap, not an allocation.
            connect_args["options"] = (
                f"-c statement_timeout={round(waits.statement_s * 1000)} -c lock_timeout={round(waits.lock_s * 1000)} "
                f"-c work_mem={WORK_MEM}"
            )
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    if parsed.drivername.startswith("sqlite"):
        engine = sa.create_engine(parsed, connect_args={"timeout": waits.busy_s})
        # What `SqlStore.labelled_users` samples by; PostgreSQL has hashtext().
        sa.event.listen(engine, "connect", _sqlite_functions)
        return engine
    raise SettingsError(
        f"DATABASE_URL is a {parsed.get_backend_name()} URL; lead-scorer reads and writes PostgreSQL (Supabase) "
        "and SQLite",
        hint="use postgresql://user:password@host:5432/postgres or sqlite:///leads.db, or SUPABASE_URL for the "
        "REST API",
    )


#: The job's sessions' work_mem (not on the transaction pooler, which takes no startup options).
WORK_MEM = "16MB"


def _sqlite_functions(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.create_function("lead_scorer_hash", 1, _crc32, deterministic=True)


def _crc32(value: Any) -> int | None:
    return None if value is None else zlib.crc32(str(value).encode())


def _array_literal(values: Sequence[Any]) -> str:
    """PostgreSQL's array input syntax for ``values``: every element double-quoted, backslash and quote escaped."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _pg_array(name: str, values: Sequence[Any], item_type: Any) -> sa.ColumnElement[Any]:
    """A list bound as one PostgreSQL array literal (text), cast to ``item_type[]`` in the statement.

    psycopg adapts a list element by element in Python (regular expressions per element), which was
    a sixth of the job's Python time; joining the literal here costs a fraction of that. Every element
    is double-quoted with backslash and quote escaped, the array input syntax's own quoting.
    """
    return _bound_array(name, _array_literal(values), item_type)


def _pg_floats(name: str, values: Sequence[float] | np.ndarray) -> sa.ColumnElement[Any]:
    """Scores bound as one ``float8[]`` literal, as `_pg_array` binds a list: each the shortest text that reads
    back to the same double (Python's repr, which PostgreSQL parses exactly), unquoted, since a number needs no
    quoting: 1.3 instead of 1.8 ms per 2,000 scores (each ``repr(float(x))`` quoted), on the benchmark machine."""
    literal = "{" + ",".join(map(repr, np.asarray(values, dtype=np.float64).tolist())) + "}"
    return _bound_array(name, literal, sa.Float(53))


def _bound_array(name: str, literal: str, item_type: Any) -> sa.ColumnElement[Any]:
    # Inside a scalar subquery the cast runs once per statement (an InitPlan). A bare cast is not folded
    # into a constant: with a generic plan, or beside an OR, PostgreSQL kept `= ANY(cast)` as a per-row
    # filter and parsed the whole literal again for every row it fetched (4.5 s instead of 0.09 s per
    # 1,000 visitors at 1M users).
    # (The outer cast only keeps `= ANY(…)` an array comparison; without it PostgreSQL reads a subquery there.)
    array = pg.ARRAY(item_type)
    return sa.cast(sa.select(sa.cast(sa.bindparam(name, literal, type_=sa.Text), array)).scalar_subquery(), array)


def _key_range(ids: sa.ColumnElement[Any]) -> tuple[Any, Any]:
    """The smallest and largest of a batch's ids, in the database's order: bounding a join on them keeps
    PostgreSQL on the primary key instead of a scan of the whole table (it cannot tell that 2,000 ids are one
    key page), twice the time at 100,000 users and growing with the table. ORDER BY … LIMIT 1 rather than
    min(): there is no min(uuid) before PostgreSQL 16."""
    key = sa.func.unnest(ids).column_valued("k")
    lowest = sa.select(key).order_by(key).limit(1).scalar_subquery()
    highest = sa.select(key).order_by(key.desc()).limit(1).scalar_subquery()
    return lowest, highest


@dataclass(frozen=True)
class _HeldLock:
    """The PostgreSQL run lock this store took: its key, the backend that holds it, the server's start."""

    key: str
    pid: int
    server_started: datetime


def _retry_on(exc: Exception) -> bool:
    """Connection trouble is worth another try; a statement cancelled (its timeout, or a stop request) is not:
    it has waited its full bound already, and running it again would wait as long."""
    if not isinstance(exc, _TRANSIENT):
        return False
    return getattr(getattr(exc, "orig", None), "sqlstate", None) != "57014"  # query_canceled


def _first(exc: sa.exc.DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return redact_text(text.splitlines()[0] if text else type(exc).__name__)


#: How long statements keep being retried while the database cannot be reached (docs/reliability.md): a
#: PostgreSQL restart (the issue's trial: 3 s, plus its shutdown) fits with room, so it costs no batch. It is
#: the outage's budget, not each statement's (`SqlStore._budget_left`). Waits start at RETRY_WAIT_S and double
#: up to RETRY_WAIT_MAX_S (with jitter); the longest wait also bounds how late a retry loop sees a stop request
#: (`SqlStore.cancel`).
RETRY_BUDGET_S = 30.0
RETRY_WAIT_S = 0.25
RETRY_WAIT_MAX_S = 2.0


def _retrying(fn: Any) -> Any:
    """Transient connection errors are retried with backoff and jitter for up to `RETRY_BUDGET_S`; what is
    still failing after that is a `TransientError` (the database, not one row, is the problem). Once the store
    is cancelled (a stop request), nothing is retried and no new statement starts."""

    @functools.wraps(fn)
    def call(store: SqlStore, *args: Any, **kwargs: Any) -> Any:
        left = store._budget_left()
        attempts = stamina.retry_context(
            on=store._should_retry,
            attempts=None if left > 0 else 1,
            timeout=max(left, RETRY_WAIT_S),
            wait_initial=RETRY_WAIT_S,
            wait_max=RETRY_WAIT_MAX_S,
        )
        try:
            with retrying(fn.__qualname__):  # its retry lines name the store's method
                for attempt in attempts:
                    with attempt:
                        store._refuse_if_cancelled()
                        result = fn(store, *args, **kwargs)
                        store._failing_since = None
                        return result
        except _TRANSIENT as exc:
            store._failing()
            raise TransientError(f"the database kept failing: {_first(exc)}") from exc
        except sa.exc.DBAPIError as exc:
            # The database refused this statement (a trigger, a constraint, a value it cannot handle): a fact
            # about the rows, which the batch loop narrows down to the users concerned.
            raise StoreError(f"the database refused it: {_first(exc)}") from exc
        raise AssertionError("unreachable: retry_context ends in a return or a raise")

    return call


#: Pairs of scores per chunk of the population's shadow comparison (1.6 MB of floats).
_PAIRS_CHUNK = 100_000


class SqlStore(Source):
    """Users and events in a database reached through SQLAlchemy Core: a `ScoringSource` and a `TrainingSource`.

    Constructing one creates the engine and connects to nothing; `open` (or ``with``) connects and learns the
    schema, `check` compares it with what a command needs, `close` (or leaving the ``with``) lets go.
    """

    kind = "sql"

    def __init__(
        self, url: str, *, names: Names | None = None, engine: sa.Engine | None = None, waits: Waits | None = None
    ) -> None:
        self.names = names or Names()
        self._url = url
        self._session_name = f"lead-scorer {uuid.uuid4().hex[:12]}"
        self.engine = engine or engine_for(url, waits=waits, application_name=self._session_name)
        self.dialect = self.engine.dialect.name
        self._pg = self.dialect == "postgresql"
        n = self.names
        schema = n.schema if self._pg else None
        self.users = sa.table(
            n.users,
            sa.column(n.user_id),
            sa.column(n.visitor_id),
            sa.column(n.lead_score),
            sa.column(n.model_version),
            sa.column(n.scored_at),
            sa.column(n.converted_at),
            sa.column(n.reasons),
            schema=schema,
        )
        self.events = sa.table(
            n.events, sa.column(n.event_visitor_id), sa.column(n.event_type), sa.column(n.created_at), schema=schema
        )
        self.history = sa.table(
            n.history,
            sa.column(n.user_id),
            sa.column("scored_at"),
            sa.column("score"),
            sa.column("model_version"),
            schema=schema,
        )
        self.shadow = sa.table(
            n.shadow,
            sa.column(n.user_id),
            sa.column("model_version"),
            sa.column("score"),
            sa.column("scored_at"),
            schema=schema,
        )
        self.checkpoints = sa.table(
            n.checkpoints,
            sa.column("key"),
            sa.column("complete_as_of"),
            sa.column("partial_as_of"),
            sa.column("partial_through"),
            sa.column("updated_at"),
            schema=schema,
        )
        self._opened = False
        # What `open` learned: the two tables' columns (None: no such table), whether the checkpoints table exists.
        self._users_columns: dict[str, ReflectedColumn] | None = None
        self._events_columns: dict[str, ReflectedColumn] | None = None
        self._has_checkpoints = False
        self._id_type: sa.types.TypeEngine[Any] = sa.Text()  # the key column's, from `open` (`check` needs one)
        self._vid_cast: sa.types.TypeEngine[Any] | None = None
        self._lock: Any = None  # the run lock's connection (PostgreSQL) or file (SQLite)
        self._held: _HeldLock | None = None  # whose session holds the PostgreSQL run lock, and since when
        self._cancelled = threading.Event()
        self._failing_since: float | None = None  # when the database stopped answering (`_budget_left`)
        self._created_has_tz = True
        self._feature_sql: dict[tuple[Any, ...], str] = {}
        self.has_reasons = False
        self.has_converted = False
        self.has_history = False
        self.has_shadow = False

    @property
    def _computes_features(self) -> bool:
        """Whether the database computes features itself (`feature_sql`): PostgreSQL, for timestamptz times
        and text visitor ids; else the daily grain is read and the catalog computes them."""
        return self._pg and self._created_has_tz and self._vid_cast is None

    @property
    def max_in_flight(self) -> int:
        """PostgreSQL serves as many statements at once as the pool has connections (the next batch's reads
        and this batch's write); SQLite has one writer, and a second statement would only make the first wait."""
        if not self._pg:
            return 1
        size = getattr(self.engine.pool, "size", None)
        return int(size()) if callable(size) else 1

    # -- housekeeping ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.dialect} {redact_url(self._url)}"

    def close(self) -> None:
        self._opened = False
        self.unlock_run()
        self.engine.dispose()

    def lock_run(self, key: str) -> None:
        """Take the run lock for ``key`` (a model) on this database, or raise `RunLocked` at once.

        PostgreSQL: a session advisory lock on a connection of its own, held until `close` (or until the
        process dies: the server drops a dead session's locks). Every write checks, in its own transaction,
        that this session still holds it (`_check_lock`): a run whose lock session was terminated stops before
        its next write instead of writing beside the run that took the lock next. SQLite: an exclusive
        ``flock`` on a file beside the database, which the kernel releases when the holder exits, however it
        exits.
        """
        if self._pg:
            conn, pid = self._take_advisory(key)
            if conn is None:
                raise RunLocked(
                    f"another lead-scorer run of {key} holds this database's run lock",
                    hint="wait for it to finish (it may be the cron job, a laptop or `mlflow run`)",
                )
            self._lock = conn
            self._held = _HeldLock(key=key, pid=pid, server_started=self._server_started(conn))
            return
        path = make_url(self._url).database
        if not path or path == ":memory:":
            return
        import fcntl

        try:
            handle = open(f"{path}.lead-scorer-{key}.lock", "a+")  # noqa: SIM115 - held until unlock_run
        except OSError as exc:
            if access_errno(exc):
                raise not_writable(path, cause=exc.strerror or type(exc).__name__) from exc
            raise StoreError(f"cannot create the run lock file beside {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise RunLocked(
                f"another lead-scorer run of {key} holds the run lock on {path}",
                hint="wait for it to finish (it may be the cron job, a laptop or `mlflow run`)",
            ) from exc
        self._lock = handle
        if not os.access(path, os.W_OK):
            # Else every batch's write fails alone ("attempt to write a readonly database") and the run exits 1.
            self.unlock_run()
            raise not_writable(path, cause="the database file is read-only")

    def _take_advisory(self, key: str) -> tuple[Any, int]:
        """(a detached connection holding the advisory lock of ``key``, its backend pid), or (None, 0)."""
        conn = self.engine.connect()
        got, pid = conn.execute(
            sa.select(
                sa.func.pg_try_advisory_lock(sa.func.hashtextextended(f"lead-scorer:{key}", 0)),
                sa.func.pg_backend_pid(),
            )
        ).one()
        conn.commit()  # a session lock outlives the transaction; an idle open transaction would not be polite
        conn.detach()  # closing it closes the session (and its lock) instead of returning it to the pool
        if not got:
            conn.close()
            return None, 0
        return conn, int(pid)

    @staticmethod
    def _server_started(conn: Any) -> datetime:
        return conn.execute(sa.select(sa.func.pg_postmaster_start_time())).scalar_one()

    def _check_lock(self, conn: Any) -> None:
        """Before a write, in its transaction: the run lock's session still holds the lock, or this raises
        `RunLocked` (exit 6) and nothing is written.

        After a server restart (every session, the lock's too, ended) the lock is taken again if nobody else
        took it in between: the run goes on (a restart within the retry budget costs no batch). A lock lost
        any other way (its session terminated, by an operator or a pooler) is not taken again: another run
        may have come and gone meanwhile and written the users this run read ahead.
        """
        held = self._held
        if held is None:
            return
        holds = conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
            ),
            {"pid": held.pid},
        ).scalar_one()
        if holds:
            return
        restarted = self._server_started(conn) > held.server_started
        if restarted:
            stale, self._lock = self._lock, None
            if stale is not None:
                with contextlib.suppress(Exception):  # its session is gone with the old server
                    stale.close()
            lock, pid = self._take_advisory(held.key)
            if lock is not None:
                self._lock = lock
                self._held = _HeldLock(key=held.key, pid=pid, server_started=self._server_started(conn))
                log.warning("run_lock_retaken", reason="the database restarted; nobody took the lock meanwhile")
                return
        self._held = None
        raise RunLocked(
            f"this run lost the run lock of {held.key}: "
            + ("the database restarted and another run took it" if restarted else "its session was terminated")
            + "; it stops before writing again, so no user is written by two runs",
            hint="the next run rescores what this one did not reach; if a session is terminated on purpose "
            "(an idle-session reaper, a pooler), exempt application_name 'lead-scorer *'",
        )

    def _should_retry(self, exc: Exception) -> bool:
        """`_retry_on`, unless a stop request cancelled the store: then nothing is retried."""
        if _retry_on(exc):
            self._failing()
            return not self._cancelled.is_set()
        return False

    def _failing(self) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def _budget_left(self) -> float:
        """The retry budget is the outage's, not each statement's: counted from the first failure since the
        last success, so once an outage has outlasted it the statements after fail at their first try
        instead of each waiting the whole budget again."""
        since = self._failing_since
        return RETRY_BUDGET_S if since is None else RETRY_BUDGET_S - (time.monotonic() - since)

    def _refuse_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise TransientError(
                "the run is stopping: a stop request cancelled the store's statements",
                hint="nothing to fix; the next run rescores what this one did not write",
            )

    def cancel(self) -> None:
        """Cancel the statements this store has running (a stop request that must not wait for a hung
        statement or a held lock). They fail at once with query_canceled, which is not retried. Sticky: from
        the first call on, nothing is retried and no new statement starts (`_refuse_if_cancelled`), so a
        retry or the next half of a split batch cannot wait again; calling it again cancels a statement that
        slipped in between."""
        first = not self._cancelled.is_set()
        self._cancelled.set()
        if not self._pg:
            return
        with self.engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid() AND state = 'active'"
                ),
                {"name": self._session_name},
            )
        if first:
            log.warning("statements_cancelled", reason="stop requested")

    @property
    def session_name(self) -> str | None:
        return self._session_name if self._pg else None

    @_retrying
    def live_sessions(self) -> set[str] | None:
        if not self._pg:
            return None  # SQLite: the run lock (a file lock) cannot be lost while its process lives
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT DISTINCT application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'lead-scorer %'"
                )
            ).all()
        return {name for (name,) in rows}

    def unlock_run(self) -> None:
        lock, self._lock = self._lock, None
        self._held = None
        if lock is not None:
            with contextlib.suppress(sa.exc.DBAPIError):  # a session already gone has let go of the lock
                lock.close()

    def open(self) -> Self:
        """Connect and learn the schema: the two tables' columns and types, and which optional parts exist.
        Raises `AuthError` for refused credentials, `StoreError` for a database it cannot reach."""
        if self._opened:
            return self
        n = self.names
        schema = n.schema if self._pg else None
        try:
            insp = sa.inspect(self.engine)
            self._users_columns = self._columns(insp, n.users)
            self._events_columns = self._columns(insp, n.events)
            self._has_checkpoints = insp.has_table(n.checkpoints, schema=schema)
            self.has_history = insp.has_table(n.history, schema=schema)
            self.has_shadow = insp.has_table(n.shadow, schema=schema)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            text = str(exc.orig) if exc.orig else str(exc)
            if "password authentication failed" in text or "authentication" in text.lower():
                raise AuthError(
                    f"the database refused the credentials in DATABASE_URL ({redact_url(self._url)})",
                    hint="check the user and password of DATABASE_URL",
                ) from exc
            raise StoreError(
                f"cannot connect to {redact_url(self._url)}: {text.splitlines()[0] if text else exc}",
                hint="check DATABASE_URL and that the database is reachable",
            ) from exc
        users, events = self._users_columns or {}, self._events_columns or {}
        if n.user_id in users:
            self._id_type = users[n.user_id]["type"]
        if n.event_visitor_id in events and n.visitor_id in users:
            # The freshness probe compares the two visitor ids; a uuid events column gets the users' text cast.
            event_vid = events[n.event_visitor_id]["type"]
            self._vid_cast = event_vid if type(event_vid) is not type(users[n.visitor_id]["type"]) else None
        self.has_reasons = n.reasons in users
        self.has_converted = n.converted_at in users
        if n.created_at in events:
            self._created_has_tz = bool(getattr(events[n.created_at]["type"], "timezone", True))
        self._opened = True
        return self

    def _columns(self, insp: sa.Inspector, table: str) -> dict[str, ReflectedColumn] | None:
        schema = self.names.schema if self._pg else None
        if not insp.has_table(table, schema=schema):
            return None
        return {c["name"]: c for c in insp.get_columns(table, schema=schema)}

    def _need_open(self) -> None:
        if not self._opened:
            raise RuntimeError("the store is not open: use `with store:` or `store.open()` first")

    def check(self, *, scoring: bool = True, training: bool = False) -> None:
        """Raise `SchemaError` if a table or column a command needs is missing: reading a user always,
        ``scoring`` the score columns and the checkpoints table, ``training`` the label (``converted_at``).
        Compares what `open` learned; sends nothing."""
        self._need_open()
        n = self.names
        for table, columns in ((n.users, self._users_columns), (n.events, self._events_columns)):
            if columns is None:
                where = f"{n.schema}.{table}" if self._pg else table
                raise SchemaError(f"table {where} does not exist", hint="check LEAD_SCORER_USERS_TABLE / _EVENTS_TABLE")
        users, events = self._users_columns or {}, self._events_columns or {}
        need_users = [n.user_id, n.visitor_id]
        if scoring:
            need_users += [n.lead_score, n.model_version, n.scored_at]
        if training:
            need_users.append(n.converted_at)
        missing = [f"{n.users}.{c}" for c in need_users if c not in users]
        missing += [f"{n.events}.{c}" for c in (n.event_visitor_id, n.event_type, n.created_at) if c not in events]
        if scoring and not self._has_checkpoints:
            missing.append(f"table {n.checkpoints}")
        if missing:
            ours = {f"{n.users}.{c}" for c in (n.lead_score, n.model_version, n.scored_at)} | {f"table {n.checkpoints}"}
            hint = _APPLY_HINT if set(missing) <= ours else "check the LEAD_SCORER_*_COLUMN settings"
            raise SchemaError(f"missing: {', '.join(missing)}", hint=hint)

    # -- reads ---------------------------------------------------------------------------------
    def _where(self, selector: Selector) -> list[sa.ColumnElement[bool]]:
        u = self.users.c
        n = self.names
        out: list[sa.ColumnElement[bool]] = []
        if selector.leads_only and self.has_converted:
            out.append(u[n.converted_at].is_(None))
        if selector.select == "unscored":
            out.append(u[n.lead_score].is_(None))
        elif selector.select == "stale":
            if selector.freshness is None:
                raise ValueError("select='stale' needs a Freshness")
            out.append(self._stale(selector.freshness))
        return out

    def _stale(self, f: Freshness) -> sa.ColumnElement[bool]:
        """`Freshness`'s rule as a WHERE clause: per user an index probe into events (visitor, time)."""
        u = self.users.c
        n = self.names
        e = self.events.alias("e")
        cp = f.checkpoint
        through = sa.cast(sa.bindparam("cp_through", cp.partial_through, type_=sa.Text), self._id_type)
        if self._pg:
            checked = sa.func.greatest(
                u[n.scored_at],
                sa.bindparam("cp_complete", cp.complete_as_of, type_=sa.DateTime(timezone=True)),
                sa.case(
                    (u[n.user_id] <= through, sa.bindparam("cp_partial", cp.partial_as_of, type_=sa.DateTime(True))),
                    else_=sa.null(),
                ),
            )
            day_start: sa.ColumnElement[Any] = sa.bindparam("day_start", f.day_start, type_=sa.DateTime(timezone=True))
            # Cast in the text: under a prepared statement an untyped parameter here reads as a timestamp.
            reach: Any = sa.cast(sa.bindparam("reach", f.reach, type_=sa.Interval()), sa.Interval())
            created: sa.ColumnElement[Any] = e.c[n.created_at]
            as_of: Any = sa.bindparam("fresh_as_of", f.as_of, type_=sa.DateTime(timezone=True))
        else:
            # SQLite keeps times as text: compare julian day numbers. max() of several arguments is NULL
            # if any is, so the missing ones count as the distant past.
            never = sa.literal(-1e9)
            checked = sa.func.max(
                sa.func.coalesce(sa.func.julianday(u[n.scored_at]), never),
                sa.func.coalesce(sa.func.julianday(self._time_or_none(cp.complete_as_of, "cp_complete")), never),
                sa.case(
                    (
                        u[n.user_id] <= through,
                        sa.func.coalesce(sa.func.julianday(self._time_or_none(cp.partial_as_of, "cp_partial")), never),
                    ),
                    else_=never,
                ),
            )
            day_start = sa.func.julianday(self._time(f.day_start))
            reach = sa.literal(f.reach.total_seconds() / 86_400)
            created = sa.func.julianday(e.c[n.created_at])
            as_of = sa.func.julianday(self._time(f.as_of))
        since = sa.case((checked <= day_start, checked - reach), else_=checked)
        visitor: Any = u[n.visitor_id] if self._vid_cast is None else sa.cast(u[n.visitor_id], self._vid_cast)
        changed = (
            sa.exists()
            .where(e.c[n.event_visitor_id] == visitor, created < as_of, created >= since)
            .correlate(self.users)
        )
        return sa.or_(
            u[n.lead_score].is_(None),
            u[n.model_version].is_distinct_from(sa.bindparam("fresh_model", f.model, type_=sa.Text)),
            u[n.scored_at].is_(None),
            changed,
        )

    def _time_or_none(self, value: datetime | None, name: str) -> Any:
        return sa.bindparam(name, self._time(value) if value is not None else None, type_=sa.Text)

    @_retrying
    def count_users(self, selector: Selector) -> int:
        self._need_open()
        q = sa.select(sa.func.count()).select_from(self.users).where(*self._where(selector))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def _page(self, rows: Sequence[Any], *, with_label: bool = False) -> UserPage:
        converted = None
        if with_label:
            converted = pd.to_datetime(pd.Series([r[4] for r in rows], dtype=object), utc=True, format="ISO8601")
        return UserPage(
            user_ids=[r[0] for r in rows],
            visitor_ids=[r[1] for r in rows],
            scores=np.array([np.nan if r[2] is None else float(r[2]) for r in rows], dtype=np.float64),
            models=[r[3] for r in rows],
            converted_at=converted,
        )

    def _page_columns(self, with_label: bool) -> list[Any]:
        u = self.users.c
        n = self.names
        cols = [u[n.user_id], u[n.visitor_id], u[n.lead_score], u[n.model_version]]
        return cols + ([u[n.converted_at]] if with_label else [])

    @_retrying
    def select_users(self, selector: Selector, *, after: Any | None, limit: int) -> UserPage:
        self._need_open()
        return self._key_page(self._where(selector), after=after, limit=limit, with_label=False)

    @_retrying
    def labelled_users(self, *, after: Any | None, limit: int, sample: int = 1) -> UserPage:
        """Training's key pages: every user, customers too, with ``converted_at`` (`check(training=True)`);
        with ``sample`` k > 1, the users whose key hashes to 0 modulo k (PostgreSQL's ``hashtext`` of the key
        as text; in SQLite, its CRC-32), so a sample is spread over the whole table, not a few runs of keys."""
        where: list[sa.ColumnElement[bool]] = []
        if sample > 1:
            key = sa.cast(self.users.c[self.names.user_id], sa.Text)
            hashed = sa.func.hashtext(key) if self._pg else sa.func.lead_scorer_hash(key)
            where.append(hashed % sample == 0)
        return self._key_page(where, after=after, limit=limit, with_label=True)

    def _key_page(
        self, where: list[sa.ColumnElement[bool]], *, after: Any | None, limit: int, with_label: bool
    ) -> UserPage:
        self._need_open()
        u = self.users.c
        n = self.names
        q = sa.select(*self._page_columns(with_label)).where(*where).order_by(u[n.user_id]).limit(limit)
        if after is not None:
            q = q.where(u[n.user_id] > after)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return self._page(rows, with_label=with_label)

    @_retrying
    def find_users(self, user_ids: Sequence[str]) -> UserPage:
        self._need_open()
        u = self.users.c
        n = self.names
        ids = [sa.cast(sa.literal(str(v), sa.Text), self._id_type) for v in user_ids]
        q = sa.select(*self._page_columns(False)).where(u[n.user_id].in_(ids)).order_by(u[n.user_id])
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return self._page(rows)

    @_retrying
    def read_checkpoint(self, key: str) -> Checkpoint:
        c = self.checkpoints.c
        q = sa.select(c.complete_as_of, c.partial_as_of, c.partial_through).where(c.key == key)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return Checkpoint()
        return Checkpoint(complete_as_of=_as_utc(row[0]), partial_as_of=_as_utc(row[1]), partial_through=row[2])

    @_retrying
    def served_scores(self, *, at: datetime, model: str, user_ids: Sequence[Any] | None = None) -> dict[Any, float]:
        """The score ``model`` (a score's recorded identity) last wrote for each user (of ``user_ids``, or every
        one) at or before ``at``, from the history table (empty without one): what the product showed at ``at``.
        A sample's ids keep the read to its users: the history holds a row per user and day scored."""
        self._need_open()
        if not self.has_history:
            return {}
        h = self.history.c
        uid = h[self.names.user_id]
        when = h.scored_at if self._pg else sa.func.julianday(h.scored_at)
        where = [h.model_version == model, when <= self._bound_time(at)]
        params: dict[str, Any] = {}
        if user_ids is not None:
            if self._pg:
                where.append(uid == sa.func.any(_pg_array("uids", [str(u) for u in user_ids], self._id_type)))
            else:
                where.append(uid.in_(sa.bindparam("uids", expanding=True)))
                params["uids"] = list(user_ids)
        # Each user's last row only (the index on (user, scored_at) serves it), not every day's.
        latest = sa.select(uid.label("uid"), sa.func.max(when).label("at")).where(*where).group_by(uid).subquery()
        q = (
            sa.select(uid, h.score)
            .select_from(self.history.join(latest, sa.and_(uid == latest.c.uid, when == latest.c.at)))
            .where(h.model_version == model)
        )
        with self.engine.connect() as conn:
            return {user: float(score) for user, score in conn.execute(q, params)}

    @_retrying
    def score_histogram(self, *, leads_only: bool, bins: int) -> np.ndarray | None:
        self._need_open()
        u = self.users.c
        n = self.names
        score = u[n.lead_score]
        b = (
            sa.func.min(sa.cast(score * bins, sa.Integer), bins - 1)
            if not self._pg
            else sa.func.least(sa.cast(sa.func.floor(score * bins), sa.Integer), bins - 1)
        )
        where = [score.is_not(None)]
        if leads_only and self.has_converted:
            where.append(u[n.converted_at].is_(None))
        q = sa.select(b.label("b"), sa.func.count()).where(*where).group_by(sa.literal_column("b"))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out = np.zeros(bins, dtype=np.int64)
        for i, count in rows:
            out[max(0, min(int(i), bins - 1))] += int(count)
        return out

    def _time(self, value: datetime) -> Any:
        return value if self._pg else value.astimezone(UTC).isoformat(sep=" ")

    def _created(self) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[int]]:
        """(comparable timestamp, UTC day number) expressions for events.created_at in this dialect."""
        col = self.events.c[self.names.created_at]
        if self._pg:
            day = sa.cast(sa.func.timezone("UTC", col) if self._created_has_tz else col, sa.Date)
            # date - date is an integer in PostgreSQL: days since 1970-01-01, as models.day_number counts.
            # An infinite time has no day ("cannot subtract infinite dates" failed its whole batch): NULL, so
            # it is dropped and counted (as a future time, or a missing one).
            number = sa.type_coerce(day - sa.literal_column("DATE '1970-01-01'"), sa.Integer)
            return col, sa.case((sa.func.isfinite(col), number), else_=sa.null())
        # SQLite keeps timestamps as text in varied ISO forms; julianday() compares them correctly and
        # date() turns an offset into the UTC day. A day's julian number ends in .5 (noon-based).
        return sa.func.julianday(col), sa.cast(sa.func.julianday(sa.func.date(col)) - 2440587.5, sa.Integer)

    def _bound_time(self, value: datetime) -> Any:
        return value if self._pg else sa.func.julianday(self._time(value))

    @_retrying
    def read_events(
        self,
        visitor_ids: Sequence[str | None],
        *,
        since: datetime,
        as_of: datetime,
        features: FeatureRequest | None = None,
    ) -> EventRead:
        self._need_open()
        vids = sorted({v for v in visitor_ids if v is not None})
        if not vids:
            return EventRead()
        # PostgreSQL computes the features itself (pg_features: one row per visitor instead of ~20 daily rows,
        # which were most of the job's own time), for timestamptz times and text ids; else the daily grain.
        if features is not None and self._computes_features:
            return self._read_features(vids, request=features, since=since, as_of=as_of)
        return self._read_grain(vids, since=since, as_of=as_of)

    def _read_grain(self, vids: list[str], *, since: datetime, as_of: datetime) -> EventRead:
        """The events of ``vids`` (distinct, sorted) at the daily grain."""
        n = self.names
        e = self.events.c
        created, day = self._created()
        etype = sa.func.lower(sa.func.trim(e[n.event_type])).label("event_type")
        future = (created >= self._bound_time(as_of)).label("future")
        if self._pg:
            in_batch = e[n.event_visitor_id] == sa.func.any(_pg_array("vids", vids, sa.Text()))
        else:
            # The ids go with the execution, not into the statement: a statement holding them is cyclic
            # garbage (SQLAlchemy's expression objects refer to each other), so every batch's ids and rows
            # stayed in memory until the cyclic collector's next full pass, which grew with the table.
            in_batch = e[n.event_visitor_id].in_(sa.bindparam("vids", expanding=True))
        q = (
            sa.select(e[n.event_visitor_id].label("visitor_id"), etype, day.label("day"), future, sa.func.count())
            .where(in_batch, sa.or_(created >= self._bound_time(since), e[n.created_at].is_(None)))
            .group_by(e[n.event_visitor_id], etype, day, future)
        )
        with self.engine.connect() as conn:
            # The driver's plain tuples, turned into columns at once: a SQLAlchemy Row or a DataFrame
            # per batch of ~40,000 daily rows was most of a batch's time.
            result = conn.execute(q, {} if self._pg else {"vids": vids}).cursor.fetchall()
        # One column at a time (zip(*rows) over 40,000 rows costs four times as much).
        visitor, types, days, is_future, counts = (np.array([r[i] for r in result], dtype=object) for i in range(5))
        return split_dropped(visitor_id=visitor, event_type=types, day=days, future=is_future, n=counts)

    def _read_features(
        self, vids: list[str], *, request: FeatureRequest, since: datetime, as_of: datetime
    ) -> EventRead:
        visitors, values = self._feature_rows(vids, request=request, since=since, as_of=as_of)
        k = len(request.names)
        return EventRead(
            events_read=int(values[:, -1].sum()),
            dropped={name: int(values[:, k + 1 + i].sum()) for i, name in enumerate(DROPPED)},
            features=VisitorFeatures(visitors=visitors, values=values[:, :k]),
        )

    def _feature_rows(
        self,
        vids: list[str],
        *,
        request: FeatureRequest,
        since: datetime,
        as_of: datetime,
        until: datetime | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """`feature_sql`'s rows for ``vids``: visitor ids, and per visitor the features, `GUARD`, `DROPPED`, read."""
        key = (request.catalog, tuple(request.names), since, as_of, until)
        sql = self._feature_sql.get(key)
        if sql is None:
            # Generated once per run (the times are constants in its text): a prepared statement serves every
            # batch, and its generic plan still reaches the events through the index (tests/test_plans.py).
            sql = feature_sql(
                request.catalog,
                request.names,
                as_of=as_of,
                since=since,
                until=until,
                table_names=self.names,
                batch=True,
            )
            self._feature_sql = {key: sql}
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, {"ids": _array_literal(vids)}).cursor.fetchall()
        k = len(request.names)
        visitors, values = unpack(rows, k + 2 + len(DROPPED))
        if not fits_packed(values[:, k]):  # one max per batch; which visitors, only when one is past it
            heavy = [i for i, count in enumerate(values[:, k]) if not fits_packed([count])]
            # A visitor with more events than a packed counter holds (a bot, a load test): its counters may
            # have carried into each other, so its features come from its daily grain, computed by the
            # catalog. Only its row is replaced: the batch keeps one kind of read (features), whatever half
            # of it the visitor falls in, and the exact counts (GUARD, DROPPED, READ) stay the statement's.
            ids = [visitors[i] for i in heavy]
            grain = self._read_grain(sorted(ids), since=since, as_of=as_of).grain
            exact = request.catalog.features(grain, visitor_ids=ids, as_of=as_of, names=request.names)
            values[heavy, :k] = exact[list(request.names)].to_numpy(dtype=np.float64)
        return visitors, values

    @_retrying
    def cohort_features(
        self, visitor_ids: Sequence[str | None], *, as_of: datetime, until: datetime, request: FeatureRequest
    ) -> CohortFeatures | None:
        """PostgreSQL computes a cohort page's features as a scoring batch's (`feature_sql`, reading no event at
        or after ``until``), with each visitor's typed events in ``[as_of, until)``; None elsewhere."""
        self._need_open()
        if not self._computes_features:
            return None
        vids = sorted({v for v in visitor_ids if v is not None})
        k = len(request.names)
        if not vids:
            return CohortFeatures(features=VisitorFeatures(visitors=[], values=np.empty((0, k))), later=frozenset())
        since = request.catalog.since(as_of)
        visitors, values = self._feature_rows(vids, request=request, since=since, as_of=as_of, until=until)
        before, after = values[:, k], values[:, k + 1 + DROPPED.index("future")]
        later = frozenset(v for v, b, a in zip(visitors, before, after, strict=True) if b == 0 and a > 0)
        return CohortFeatures(features=VisitorFeatures(visitors=visitors, values=values[:, :k]), later=later)

    @_retrying
    def top_event_types(self, *, since: datetime, as_of: datetime, limit: int) -> list[str]:
        self._need_open()
        n = self.names
        e = self.events.c
        created, _ = self._created()
        etype = sa.func.lower(sa.func.trim(e[n.event_type]))
        q = (
            sa.select(etype.label("t"), sa.func.count().label("c"))
            .where(created >= self._bound_time(since), created < self._bound_time(as_of), etype != "")
            .group_by(etype)
            .order_by(sa.desc("c"), etype)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        # The database's trim()/lower() only pre-aggregate: the catalog's normalization decides (see split_dropped).
        counts: dict[str, int] = {}
        for raw, c in rows:
            t = normalize_event_type(raw)
            if t:
                counts[t] = counts.get(t, 0) + int(c)
        return sorted(counts, key=lambda t: (-counts[t], t))[:limit]

    # -- writes --------------------------------------------------------------------------------
    @_retrying
    def write_scores(self, write: ScoreWrite) -> int:
        """The batch's changed scores (with reasons when the column exists), their history rows when asked,
        and the run's checkpoint, in one transaction: a crash leaves all of them or none."""
        self._need_open()
        if write.history and not self.has_history:
            raise SchemaError(
                f"LEAD_SCORER_HISTORY is on but the table {self.names.history} does not exist", hint=_APPLY_HINT
            )
        with self.engine.begin() as conn:
            if self._pg:
                self._check_lock(conn)
            updated = self._update(conn, write) if len(write.user_ids) else 0
            if write.shadow is not None and len(write.shadow.user_ids):
                self._shadow(conn, write.shadow, at=write.scored_at)
            if write.checkpoint_key is not None:
                self._advance(conn, write)
        return updated

    def _update(self, conn: sa.Connection, write: ScoreWrite) -> int:
        n = self.names
        u = self.users.c
        reasons = write.reasons if self.has_reasons else None
        if self._pg:
            ids = _pg_array("ids", write.user_ids, self._id_type)
            arrays = [ids, _pg_array("scores", [repr(float(s)) for s in write.scores], sa.Float(53))]
            names = ["uid", "score"]
            if reasons is not None:
                # As text, each cast to jsonb where it is set: a jsonb[] literal was parsed twice over (the
                # array's quoting, then each element), 30 instead of 17 ms per 2,000 reasons.
                arrays.append(_pg_array("reasons", [r if r is not None else "null" for r in reasons], sa.Text()))
                names.append("reasons")
            v = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="v")
            lowest, highest = _key_range(ids)
            values: dict[str, Any] = {
                n.lead_score: v.c.score,
                n.model_version: write.model,
                n.scored_at: write.scored_at,
            }
            if reasons is not None:
                values[n.reasons] = sa.cast(v.c.reasons, pg.JSONB())
            stmt = (
                sa.update(self.users)
                .where(u[n.user_id] == v.c.uid, u[n.user_id] >= lowest, u[n.user_id] <= highest)
                .values(values)
            )
            if not write.history:
                return int(conn.execute(stmt).rowcount)
            # The history rows come from the update itself (RETURNING), so they equal what was written.
            done = stmt.returning(u[n.user_id].label("uid"), v.c.score.label("score")).cte("w")
            h = self.history.c
            insert = sa.insert(self.history).from_select(
                [h[n.user_id], h.scored_at, h.score, h.model_version],
                sa.select(
                    done.c.uid,
                    sa.literal(write.scored_at, sa.DateTime(timezone=True)),
                    done.c.score,
                    sa.literal(write.model, sa.Text),
                ),
            )
            # Counted from RETURNING: the driver reports no row count for an INSERT fed by a DML CTE.
            return len(conn.execute(insert.returning(h[n.user_id])).all())
        values = {
            n.lead_score: sa.bindparam("b_score"),
            n.model_version: write.model,
            n.scored_at: self._time(write.scored_at),
        }
        if reasons is not None:
            values[n.reasons] = sa.bindparam("b_reasons")
        stmt = sa.update(self.users).where(u[n.user_id] == sa.bindparam("b_uid")).values(values)
        params = [
            {"b_uid": uid, "b_score": float(s)} | ({"b_reasons": reasons[i]} if reasons is not None else {})
            for i, (uid, s) in enumerate(zip(write.user_ids, write.scores, strict=True))
        ]
        updated = int(conn.execute(stmt, params).rowcount)
        if write.history:
            # Only rows that exist (a user deleted since it was read has no update and no history).
            h = self.history.c
            present = {
                r[0]
                for r in conn.execute(
                    sa.select(u[n.user_id]).where(
                        u[n.user_id].in_(sa.bindparam("ids", list(write.user_ids), expanding=True))
                    )
                )
            }
            rows = [
                {"h_uid": uid, "h_score": float(s)}
                for uid, s in zip(write.user_ids, write.scores, strict=True)
                if uid in present
            ]
            if rows:
                conn.execute(
                    sa.insert(self.history).values(
                        {
                            h[n.user_id]: sa.bindparam("h_uid"),
                            h.scored_at: self._time(write.scored_at),
                            h.score: sa.bindparam("h_score"),
                            h.model_version: write.model,
                        }
                    ),
                    rows,
                )
        return updated

    def _shadow(self, conn: sa.Connection, shadow: ShadowWrite, *, at: datetime) -> None:
        """The challenger's scores, one row per user and model (replaced on the next run), only for users that
        exist: a user deleted since it was read gets none, as it gets no production score."""
        n = self.names
        u, s = self.users.c, self.shadow.c
        columns = [s[n.user_id], s.model_version, s.score, s.scored_at]
        insert = pg.insert if self._pg else sqlite_dialect.insert
        if self._pg:
            ids = _pg_array("ids", shadow.user_ids, self._id_type)
            v = (
                sa.func.unnest(ids, _pg_floats("scores", shadow.scores))
                .table_valued("uid", "score")
                .render_derived(name="v")
            )
            lowest, highest = _key_range(ids)
            rows = sa.select(
                u[n.user_id],
                sa.literal(shadow.model, sa.Text),
                v.c.score,
                sa.literal(at, sa.DateTime(timezone=True)),
            ).where(u[n.user_id] == v.c.uid, u[n.user_id] >= lowest, u[n.user_id] <= highest)
            params: list[dict[str, Any]] | None = None
        else:
            rows = sa.select(
                u[n.user_id],
                sa.literal(shadow.model, sa.Text),
                sa.bindparam("s_score", type_=sa.Float),
                sa.literal(self._time(at), sa.Text),
            ).where(u[n.user_id] == sa.bindparam("s_uid"))
            params = [
                {"s_uid": uid, "s_score": float(x)} for uid, x in zip(shadow.user_ids, shadow.scores, strict=True)
            ]
        stmt = insert(self.shadow).from_select(columns, rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[s[n.user_id], s.model_version],
            set_={"score": stmt.excluded.score, "scored_at": stmt.excluded.scored_at},
        )
        conn.execute(stmt, params) if params is not None else conn.execute(stmt)

    @_retrying
    def shadow_pairs(self, *, production: str, challenger: str, leads_only: bool) -> ShadowPairs | None:
        self._need_open()
        if not self.has_shadow:
            return None
        n = self.names
        u, s = self.users.c, self.shadow.c
        where = [u[n.model_version] == production, u[n.lead_score].is_not(None)]
        if leads_only and self.has_converted:
            where.append(u[n.converted_at].is_(None))
        q = (
            sa.select(sa.cast(u[n.lead_score], sa.Float(53)), sa.cast(s.score, sa.Float(53)))
            .select_from(
                self.users.join(self.shadow, sa.and_(s[n.user_id] == u[n.user_id], s.model_version == challenger))
            )
            .where(*where)
        )
        if self._pg:
            # One binary COPY into numpy (26 bytes a pair, no Python object per row): at 1M leads the pairs as
            # Python tuples took ~5 s of the run's end, nearly all of it in the client.
            with self.engine.connect() as conn:
                pairs = copy_float8_pairs(conn, q)
            return ShadowPairs(production=pairs[:, 0].copy(), challenger=pairs[:, 1].copy())
        # Streamed in chunks into two float arrays: at 1M leads the rows as Python tuples (with their ids)
        # were ~350 MiB of the run's peak and 12 s of its end; the arrays are 16 MB, read in ~5 s.
        chunks: list[np.ndarray] = []
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=_PAIRS_CHUNK).execute(q)
            for part in result.partitions():
                # Rows as plain tuples first: numpy reads a list of SQLAlchemy Rows ~25x slower (16 s at 1M).
                chunks.append(np.array(list(map(tuple, part)), dtype=np.float64).reshape(-1, 2))
        pairs = np.concatenate(chunks) if chunks else np.empty((0, 2))
        return ShadowPairs(production=np.ascontiguousarray(pairs[:, 0]), challenger=np.ascontiguousarray(pairs[:, 1]))

    def _advance(self, conn: sa.Connection, write: ScoreWrite) -> None:
        """Move the run's checkpoint: all selected users up to ``through`` were checked at ``scored_at``."""
        c = self.checkpoints.c
        at = self._time(write.scored_at)
        row = {
            "key": write.checkpoint_key,
            "complete_as_of": at if write.complete else None,
            "partial_as_of": None if write.complete else at,
            "partial_through": None if write.complete or write.through is None else str(write.through),
            "updated_at": self._time(datetime.now(UTC)),
        }
        insert = (pg.insert if self._pg else sqlite_dialect.insert)(self.checkpoints).values(row)
        update = {
            "partial_as_of": insert.excluded.partial_as_of,
            "partial_through": insert.excluded.partial_through,
            "updated_at": insert.excluded.updated_at,
        }
        if write.complete:
            update["complete_as_of"] = insert.excluded.complete_as_of
        conn.execute(insert.on_conflict_do_update(index_elements=[c.key], set_=update))


def _as_utc(value: Any) -> datetime | None:
    """A timestamp as PostgreSQL (datetime) or SQLite (ISO text) hands it back, in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
