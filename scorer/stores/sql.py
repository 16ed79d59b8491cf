"""The SQL store: PostgreSQL (a Supabase direct or pooled connection string works) and SQLite.

Three statements per batch: a key page of users, one aggregate read of their events at
the daily grain, one set-based update-only write.

>>> store = SqlStore("sqlite:///leads.db")
>>> page = store.select_users(select="stale", model_version="3", after=None, limit=1000)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import stamina
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import make_url

from scorer.errors import AuthError, SchemaError, SettingsError, StoreError
from scorer.stores.base import EventRead, Names, Selection, UserPage, split_dropped

__all__ = ["SqlStore", "engine_for", "redact_url"]

_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)
_APPLY_HINT = "apply the project's SQL: `lead-scorer db migrate` (or paste `lead-scorer db sql` into the SQL editor)"


def redact_url(url: str) -> str:
    """A database URL safe for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def engine_for(url: str) -> sa.Engine:
    """An engine for any SQLAlchemy URL; ``postgresql://`` uses psycopg 3.

    Supavisor's transaction mode (port 6543) cannot use prepared statements, so they are off there.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise SettingsError(
            "DATABASE_URL is not a valid database URL",
            hint="use e.g. sqlite:///leads.db or postgresql://user:password@host:5432/postgres",
        ) from exc
    connect_args: dict[str, Any] = {}
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("postgresql"):
        if parsed.port == 6543:
            connect_args["prepare_threshold"] = None
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    if parsed.drivername.startswith("sqlite"):
        return sa.create_engine(parsed, connect_args={"timeout": 30})
    return sa.create_engine(parsed, pool_pre_ping=True)


def _pg_array(name: str, values: Sequence[Any], item_type: Any) -> sa.ColumnElement[Any]:
    """A list bound as one PostgreSQL array literal (text), cast to ``item_type[]`` in the statement.

    psycopg adapts a list element by element in Python (regular expressions per element), which was
    a sixth of the job's Python time; joining the literal here costs a fraction of that. Every element
    is double-quoted with backslash and quote escaped, the array input syntax's own quoting.
    """
    literal = "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
    return sa.cast(sa.bindparam(name, literal, type_=sa.Text), pg.ARRAY(item_type))


def _retrying(fn: Any) -> Any:
    """Transient connection errors are retried with backoff and jitter, bounded in attempts and time."""
    return stamina.retry(on=_TRANSIENT, attempts=4, timeout=60.0, wait_initial=0.5, wait_max=8.0)(fn)


class SqlStore:
    """Users and events in a database reached through SQLAlchemy Core."""

    kind = "sql"

    def __init__(self, url: str, *, names: Names | None = None, engine: sa.Engine | None = None) -> None:
        self.names = names or Names()
        self._url = url
        self.engine = engine or engine_for(url)
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
            schema=schema,
        )
        self.events = sa.table(
            n.events, sa.column(n.event_visitor_id), sa.column(n.event_type), sa.column(n.created_at), schema=schema
        )
        self._id_type: sa.types.TypeEngine[Any] | None = None
        self._created_has_tz = True
        self.statements = 0
        # PostgreSQL serves the next batch's read and this batch's write on two connections at once;
        # SQLite has one writer and would only make the reader wait.
        self.concurrent = self._pg

    # -- housekeeping ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.dialect} {redact_url(self._url)}"

    def close(self) -> None:
        self.engine.dispose()

    def _columns(self, insp: sa.Inspector, table: str) -> dict[str, dict[str, Any]]:
        schema = self.names.schema if self._pg else None
        if not insp.has_table(table, schema=schema):
            where = f"{schema}.{table}" if schema else table
            raise SchemaError(f"table {where} does not exist", hint="check LEAD_SCORER_USERS_TABLE / _EVENTS_TABLE")
        return {c["name"]: c for c in insp.get_columns(table, schema=schema)}

    def check(self, *, scoring: bool = True, training: bool = False) -> None:
        n = self.names
        try:
            insp = sa.inspect(self.engine)
            users = self._columns(insp, n.users)
            events = self._columns(insp, n.events)
        except sa.exc.OperationalError as exc:
            text = str(exc.orig) if exc.orig else str(exc)
            if "password authentication failed" in text or "authentication" in text.lower():
                raise AuthError(
                    f"the database refused the credentials in DATABASE_URL ({redact_url(self._url)})",
                    hint="check the user and password of DATABASE_URL",
                ) from None
            raise StoreError(
                f"cannot connect to {redact_url(self._url)}: {text.splitlines()[0] if text else exc}",
                hint="check DATABASE_URL and that the database is reachable",
            ) from None
        need_users = [n.user_id, n.visitor_id]
        if scoring:
            need_users += [n.lead_score, n.model_version, n.scored_at]
        if training:
            need_users.append(n.converted_at)
        missing = [f"{n.users}.{c}" for c in need_users if c not in users]
        missing += [f"{n.events}.{c}" for c in (n.event_visitor_id, n.event_type, n.created_at) if c not in events]
        if missing:
            score_cols = {f"{n.users}.{c}" for c in (n.lead_score, n.model_version, n.scored_at)}
            hint = _APPLY_HINT if set(missing) <= score_cols else "check the LEAD_SCORER_*_COLUMN settings"
            raise SchemaError(f"missing column(s): {', '.join(missing)}", hint=hint)
        self._id_type = users[n.user_id]["type"]
        created_type = events[n.created_at]["type"]
        self._created_has_tz = bool(getattr(created_type, "timezone", True))

    # -- reads ---------------------------------------------------------------------------------
    def _where(self, select: Selection, model_version: str | None) -> list[sa.ColumnElement[bool]]:
        u = self.users.c
        n = self.names
        if select == "unscored":
            return [u[n.lead_score].is_(None)]
        if select == "stale":
            return [
                sa.or_(
                    u[n.lead_score].is_(None),
                    u[n.model_version].is_distinct_from(sa.literal(model_version, sa.Text)),
                )
            ]
        return []

    @_retrying
    def count_users(self, *, select: Selection, model_version: str | None) -> int:
        q = sa.select(sa.func.count()).select_from(self.users).where(*self._where(select, model_version))
        with self.engine.connect() as conn:
            self.statements += 1
            return int(conn.execute(q).scalar_one())

    @_retrying
    def select_users(
        self,
        *,
        select: Selection,
        model_version: str | None,
        after: Any | None,
        limit: int,
        with_label: bool = False,
    ) -> UserPage:
        u = self.users.c
        n = self.names
        cols = [u[n.user_id], u[n.visitor_id]] + ([u[n.converted_at]] if with_label else [])
        q = sa.select(*cols).where(*self._where(select, model_version)).order_by(u[n.user_id]).limit(limit)
        if after is not None:
            q = q.where(u[n.user_id] > after)
        with self.engine.connect() as conn:
            self.statements += 1
            rows = conn.execute(q).all()
        converted = None
        if with_label:
            converted = pd.to_datetime(pd.Series([r[2] for r in rows], dtype=object), utc=True, format="ISO8601")
        return UserPage(
            user_ids=[r[0] for r in rows],
            visitor_ids=[r[1] if r[1] is not None else None for r in rows],
            converted_at=converted,
        )

    def _time(self, value: datetime) -> Any:
        return value if self._pg else value.astimezone(UTC).isoformat(sep=" ")

    def _created(self) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[int]]:
        """(comparable timestamp, UTC day number) expressions for events.created_at in this dialect."""
        col = self.events.c[self.names.created_at]
        if self._pg:
            day = sa.cast(sa.func.timezone("UTC", col) if self._created_has_tz else col, sa.Date)
            # date - date is an integer in PostgreSQL: days since 1970-01-01, as models.day_number counts.
            return col, sa.type_coerce(day - sa.literal_column("DATE '1970-01-01'"), sa.Integer)
        # SQLite keeps timestamps as text in varied ISO forms; julianday() compares them correctly and
        # date() turns an offset into the UTC day. A day's julian number ends in .5 (noon-based).
        return sa.func.julianday(col), sa.cast(sa.func.julianday(sa.func.date(col)) - 2440587.5, sa.Integer)

    def _bound_time(self, value: datetime) -> Any:
        return value if self._pg else sa.func.julianday(self._time(value))

    @_retrying
    def read_events(self, visitor_ids: Sequence[str], *, since: datetime, as_of: datetime) -> EventRead:
        n = self.names
        e = self.events.c
        vids = sorted({v for v in visitor_ids if v is not None})
        if not vids:
            return EventRead()
        created, day = self._created()
        etype = sa.func.lower(sa.func.trim(e[n.event_type])).label("event_type")
        future = (created >= self._bound_time(as_of)).label("future")
        if self._pg:
            in_batch = e[n.event_visitor_id] == sa.func.any(_pg_array("vids", vids, sa.Text()))
        else:
            in_batch = e[n.event_visitor_id].in_(sa.bindparam("vids", vids, expanding=True))
        q = (
            sa.select(e[n.event_visitor_id].label("visitor_id"), etype, day.label("day"), future, sa.func.count())
            .where(in_batch, sa.or_(created >= self._bound_time(since), e[n.created_at].is_(None)))
            .group_by(e[n.event_visitor_id], etype, day, future)
        )
        with self.engine.connect() as conn:
            self.statements += 1
            # The driver's plain tuples, turned into columns at once: a SQLAlchemy Row or a DataFrame
            # per batch of ~40,000 daily rows was most of a batch's time.
            result = conn.execute(q).cursor.fetchall()
        # One column at a time (zip(*rows) over 40,000 rows costs four times as much).
        visitor, types, days, is_future, counts = (np.array([r[i] for r in result], dtype=object) for i in range(5))
        return split_dropped(visitor_id=visitor, event_type=types, day=days, future=is_future, n=counts)

    @_retrying
    def top_event_types(self, *, since: datetime, as_of: datetime, limit: int) -> list[str]:
        n = self.names
        e = self.events.c
        created, _ = self._created()
        etype = sa.func.lower(sa.func.trim(e[n.event_type]))
        q = (
            sa.select(etype.label("t"), sa.func.count().label("c"))
            .where(created >= self._bound_time(since), created < self._bound_time(as_of), etype != "")
            .group_by(etype)
            .order_by(sa.desc("c"), etype)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            self.statements += 1
            return [r[0] for r in conn.execute(q) if r[0]]

    # -- writes --------------------------------------------------------------------------------
    @_retrying
    def write_scores(
        self, user_ids: Sequence[Any], scores: Sequence[float], *, model_version: str, scored_at: datetime
    ) -> int:
        if not user_ids:
            return 0
        if self._id_type is None:
            self.check(scoring=True)
        n = self.names
        u = self.users.c
        with self.engine.begin() as conn:
            self.statements += 1
            if self._pg:
                ids = _pg_array("ids", user_ids, self._id_type)
                v = (
                    sa.func.unnest(ids, _pg_array("scores", [repr(float(s)) for s in scores], sa.Float(53)))
                    .table_valued("uid", "score")
                    .render_derived(name="v")
                )
                # The ids' own smallest and largest key, in the database's order: without this range
                # PostgreSQL joins a batch against a scan of the whole table (it cannot tell that 2,000
                # ids are one key page), twice the time at 100,000 users and growing with the table.
                # ORDER BY … LIMIT 1 rather than min(): there is no min(uuid) before PostgreSQL 16.
                key = sa.func.unnest(ids).column_valued("k")
                lowest = sa.select(key).order_by(key).limit(1).scalar_subquery()
                highest = sa.select(key).order_by(key.desc()).limit(1).scalar_subquery()
                stmt = (
                    sa.update(self.users)
                    .where(u[n.user_id] == v.c.uid, u[n.user_id] >= lowest, u[n.user_id] <= highest)
                    .values({n.lead_score: v.c.score, n.model_version: model_version, n.scored_at: scored_at})
                )
                return int(conn.execute(stmt).rowcount)
            stmt = (
                sa.update(self.users)
                .where(u[n.user_id] == sa.bindparam("b_uid"))
                .values(
                    {
                        n.lead_score: sa.bindparam("b_score"),
                        n.model_version: model_version,
                        n.scored_at: self._time(scored_at),
                    }
                )
            )
            params = [{"b_uid": uid, "b_score": float(s)} for uid, s in zip(user_ids, scores, strict=True)]
            return int(conn.execute(stmt, params).rowcount)
