"""Synthetic benchmark data generated inside the database: seconds for 100k users, minutes for 1M.

PostgreSQL uses ``generate_series``; SQLite a recursive CTE. Each user has a latent intent (a hash
of the user id, so the users table and the events table agree without a join) that raises both the
share of buying signals among their events and their chance to convert, so a model trained on the
data is a real model. About 20 events per user over 182 days (a little beyond the job's 181-day reach),
with the mess real tables have (`build`):

- dirty rows, 1 % of events: NULL types (0.4 %), blank types ('', spaces, a tab, a no-break space: 0.2 %),
  NULL times (0.2 %), future times (0.2 %);
- messy spellings of real types, 5 % of events: upper case, capitalized, padded with tabs, newlines,
  trailing spaces, no-break and ideographic spaces and the other characters Python's ``str.strip()`` takes
  (`MESSY`); plus a legacy spelling (``'  LEGACY_Click '``) and ``'Pricing View '`` beside ``pricing_view``
  (one slug, two types);
- users without a visitor id (4 %), users who share the previous user's visitor id (~0.5 %: two users, one
  visitor), and a few very heavy visitors (1 in 10,000 users, 1,000 to 5,000 events each).

The events table's physical order is the ``layout``: ``time`` (the default) appends events in time order
across visitors, as a product writes them (``INSERT … ORDER BY`` the time each event arrived), so one
visitor's events are scattered over the whole table; ``visitor`` writes each visitor's events together
(the order of the benchmark's data before issue 13: the same events, laid out the friendly way).
On PostgreSQL the random choices are seeded (``setseed``), so a size's data are the same on every run and
in both layouts; SQLite's ``random()`` cannot be seeded.

Day 2 (`pass_a_day`, `add_events`, `snapshot_day`, `restore_day`): every stored time one day earlier, which
is what the job sees when the clock moves a day forward; new events for a hash-chosen 5 % of the users.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from scorer.contract import Names
from scorer.demo import create_tables
from scorer.schema import migrate
from scorer.stores.sql import SqlStore, Waits, engine_for

__all__ = [
    "LAYOUTS",
    "WHITESPACE",
    "add_events",
    "build",
    "count_users",
    "long_engine",
    "pass_a_day",
    "read_scores",
    "reset_scores",
    "restore_day",
    "snapshot_day",
]

LAYOUTS = ("time", "visitor")
EVENTS_PER_USER = 20  # mean; uniform on 0..40
SPAN_DAYS = 182  # events reach this far back: a little beyond the job's reach (180 days + the partial day)
GENERAL = ["page_view", "docs_view", "email_open", "feature_used", "webinar_join", "support_ticket", "unsubscribe"]
BUYING = ["pricing_view", "demo_request", "signup_started", "invite_sent", "Pricing View "]
#: Every character Python's ``str.strip()`` removes (``str.isspace``): what the job's normalization trims.
WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
#: Messy spellings of a type ``{t}`` (a SQL expression), each normalizing to the type itself.
MESSY = (
    "upper({t})",
    "{cap}",
    "{t} || '  '",
    "chr(9) || {t}",
    "{t} || chr(10)",
    "chr(160) || {t}",
    "chr(12288) || upper({t}) || chr(8239)",
    "{t} || chr(133)",
    "chr(31) || {t} || chr(13)",
    "' ' || {cap} || chr(8199) || chr(11)",
)
MESSY_SHARE = 0.05
BLANKS = ("''", "' '", "chr(9)", "' ' || chr(160) || chr(10)")
HEAVY_SHARE, HEAVY_MIN, HEAVY_MAX = 0.0001, 1_000, 5_000  # very heavy visitors: share of users, events each
SHARED_SHARE = 0.005  # users who try to share the previous user's visitor id
NO_VISITOR_SHARE = 0.04


def _hash(i: str, salt: int, *, pg: bool, mult: int = 2654435761) -> str:
    """A deterministic uniform [0, 1) from an integer column, the same in PostgreSQL and SQLite. Different
    multipliers give unrelated values; different salts alone only shift them."""
    if pg:  # psycopg reads a bare % as a placeholder
        return f"(mod(({i})::bigint * {mult} + {salt}, 1000003) / 1000003.0)"
    return f"(((({i}) * {mult} + {salt}) % 1000003) / 1000003.0)"


# Who signs up when and converts is a hash of the user id, not random(): the number of conversions in a
# training horizon is then the same on every run and every server (a small dataset near the threshold of
# five positives would otherwise fail training now and then).
_SIGNUP, _CONVERTS, _CONVERTED = (29, 69069), (53, 1103515245), (71, 22695477)
# Who shares a visitor id, who is a heavy visitor and how heavy: hashes too (the users and events agree).
_SHARES, _HEAVY, _HEAVY_EVENTS = (83, 40692), (37, 48271), (97, 16807)


def _sql_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _who(i: str, *, pg: bool) -> dict[str, str]:
    """SQL conditions on user ``i``: has no visitor id; shares user i-1's visitor id; owns a visitor (and
    so generates its events). A user shares only with a previous user who owns its visitor and does not try
    to share itself, so a shared visitor id always has its events."""
    h = lambda x, salt, mult=2654435761: _hash(x, salt, pg=pg, mult=mult)  # noqa: E731
    none = f"{h(i, 91)} < {NO_VISITOR_SHARE}"
    prev = f"({i} - 1)"
    shares = (
        f"({i} > 1 AND {h(i, *_SHARES)} < {SHARED_SHARE} AND {h(prev, *_SHARES)} >= {SHARED_SHARE} "
        f"AND {h(prev, 91)} >= {NO_VISITOR_SHARE})"
    )
    owns = f"(NOT ({none}) AND NOT {shares})"
    count = (
        f"CASE WHEN {h(i, *_HEAVY)} < {HEAVY_SHARE} "
        f"THEN {HEAVY_MIN} + CAST(floor({h(i, *_HEAVY_EVENTS)} * {HEAVY_MAX - HEAVY_MIN}) AS INTEGER) "
        + (
            f"ELSE mod({i}::bigint * 7919, {2 * EVENTS_PER_USER + 1})::int END"
            if pg
            else f"ELSE ({i} * 7919) % {2 * EVENTS_PER_USER + 1} END"
        )
    )
    return {"none": none, "shares": shares, "owns": owns, "count": count}


def _pick(values: list[str], r: str) -> str:
    """One of the SQL expressions ``values`` by a uniform [0, 1) expression ``r`` (no arrays: SQLite)."""
    whens = " ".join(f"WHEN {r} < {(k + 1) / len(values)!r} THEN {v}" for k, v in enumerate(values[:-1]))
    return f"CASE {whens} ELSE {values[-1]} END"


def _quoted(values: list[str]) -> list[str]:
    return ["'" + v.replace("'", "''") + "'" for v in values]


def _event_type(g: str, *, pg: bool) -> str:
    """The stored event type of generated row ``g`` (columns noise, mess, t): dirty, messy or clean."""
    cap = "initcap({t})" if pg else "upper(substr({t}, 1, 1)) || substr({t}, 2)"
    t = f"{g}.t"
    messy = [m.format(t=t, cap=cap.format(t=t)) for m in MESSY]
    blanks = list(BLANKS)
    if not pg:
        messy = [m.replace("chr(", "char(") for m in messy]
        blanks = [b.replace("chr(", "char(") for b in blanks]
    return f"""CASE WHEN {g}.noise < 0.004 THEN NULL
            WHEN {g}.noise < 0.006 THEN {_pick(blanks, f"{g}.mess")}
            WHEN {g}.noise < 0.008 THEN '  LEGACY_Click '
            WHEN {g}.mess < {MESSY_SHARE} THEN {_pick(messy, f"({g}.mess / {MESSY_SHARE})")}
            ELSE {t} END"""


def _pg_statements(users: int, layout: str) -> list[str]:
    intent = _hash("i", 17, pg=True)
    signup, converts, converted = (_hash("i", salt, pg=True, mult=m) for salt, m in (_SIGNUP, _CONVERTS, _CONVERTED))
    who = _who("i", pg=True)
    vis, prev_vis, u_vis = (f"'v' || lpad(to_hex({x}), 8, '0')" for x in ("i", "i - 1", "u.i"))
    general, buying = _sql_array(GENERAL), _sql_array(BUYING)
    order = "ORDER BY g.arrived, g.i, g.k" if layout == "time" else "ORDER BY g.i, g.k"
    return [
        "SELECT setseed(0.13)",  # the random() below: the same data on every run (one process, one plan)
        f"""INSERT INTO users (user_id, visitor_id, email, signed_up_at, converted_at)
SELECT i,
       CASE WHEN {who["none"]} THEN NULL WHEN {who["shares"]} THEN {prev_vis} ELSE {vis} END,
       'user' || i || '@example.com',
       now() - (1 + 149 * {signup}) * interval '1 day',
       CASE WHEN {converts} < 0.02 + 0.3 * {intent} * {intent} THEN now() - 90 * {converted} * interval '1 day' END
  FROM generate_series(1, {users}) AS i""",
        # Each row's arrival: its time, or for a row without one (or a future one) the time it would have had.
        f"""INSERT INTO events (visitor_id, event_type, created_at)
SELECT g.visitor_id,
       {_event_type("g", pg=True)},
       CASE WHEN g.noise >= 0.008 AND g.noise < 0.010 THEN NULL
            WHEN g.noise >= 0.010 AND g.noise < 0.012 THEN now() + (2 + 28 * g.skew) * interval '1 day'
            ELSE g.arrived END
  FROM (SELECT u.i, k, {u_vis} AS visitor_id, r.noise, r.mess, r.skew,
               CASE WHEN r.pick < 0.05 + 0.45 * u.intent THEN ({buying})[1 + floor(r.which * {len(BUYING)})::int]
                    ELSE ({general})[1 + floor(r.which * {len(GENERAL)})::int] END AS t,
               now() - {SPAN_DAYS} * power(r.age, 1 + u.intent) * interval '1 day' AS arrived
          FROM (SELECT i, {intent} AS intent, {who["count"]} AS cnt
                  FROM generate_series(1, {users}) AS i WHERE {who["owns"]}) AS u
         CROSS JOIN LATERAL generate_series(1, u.cnt) AS k
         CROSS JOIN LATERAL (SELECT random() AS noise, random() AS pick, random() AS which, random() AS age,
                                    random() AS mess, random() AS skew OFFSET 0 * k) AS r) AS g
 {order}""",
    ]


def _sqlite_statements(users: int, layout: str) -> list[str]:
    intent = _hash("i", 17, pg=False)
    signup, converts, converted = (_hash("i", salt, pg=False, mult=m) for salt, m in (_SIGNUP, _CONVERTS, _CONVERTED))
    who = _who("i", pg=False)
    vis = "'v' || printf('%08x', i)"
    prev_vis = "'v' || printf('%08x', i - 1)"
    rnd = "(random() / 18446744073709551616.0 + 0.5)"
    ts = "strftime('%Y-%m-%d %H:%M:%f', 'now', '{sign}' || (({days}) * 86400.0) || ' seconds')"
    order = "ORDER BY ago DESC, i, j" if layout == "time" else "ORDER BY i, j"
    return [
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users})
INSERT INTO users (user_id, visitor_id, email, signed_up_at, converted_at)
SELECT i,
       CASE WHEN {who["none"]} THEN NULL WHEN {who["shares"]} THEN {prev_vis} ELSE {vis} END,
       'user' || i || '@example.com',
       {ts.format(sign="-", days=f"1 + 149 * {signup}")},
       CASE WHEN {converts} < 0.02 + 0.3 * {intent} * {intent} THEN {ts.format(sign="-", days=f"90 * {converted}")} END
  FROM n""",
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}),
k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < {2 * EVENTS_PER_USER}),
kh(j) AS (SELECT {2 * EVENTS_PER_USER + 1} UNION ALL SELECT j + 1 FROM kh WHERE j < {HEAVY_MAX}),
u AS MATERIALIZED (SELECT i, {intent} AS intent, {who["count"]} AS cnt FROM n WHERE {who["owns"]}),
-- Each user's up to 40 events, then the heavy visitors' thousands (CROSS JOIN: SQLite keeps that order, so
-- only the few heavy users meet the 5,000 rows of kh).
uk AS (SELECT i, intent, j FROM u CROSS JOIN k ON k.j <= u.cnt
       UNION ALL
       SELECT i, intent, j FROM (SELECT * FROM u WHERE cnt > {2 * EVENTS_PER_USER}) AS h
       CROSS JOIN kh ON kh.j <= h.cnt),
r AS MATERIALIZED (SELECT i, j, intent, {rnd} AS noise, {rnd} AS pick, {rnd} AS which, {rnd} AS age,
                          {rnd} AS mess, {rnd} AS skew FROM uk),
g AS MATERIALIZED (SELECT i, j, {vis} AS visitor_id, noise, mess, skew,
                          CASE WHEN pick < 0.05 + 0.45 * intent THEN {_pick(_quoted(BUYING), "which")}
                               ELSE {_pick(_quoted(GENERAL), "which")} END AS t,
                          {SPAN_DAYS} * power(age, 1 + intent) AS ago FROM r)
INSERT INTO events (visitor_id, event_type, created_at)
SELECT visitor_id,
       {_event_type("g", pg=False)},
       CASE WHEN noise >= 0.008 AND noise < 0.010 THEN NULL
            WHEN noise >= 0.010 AND noise < 0.012 THEN {ts.format(sign="+", days="2 + 28 * skew")}
            ELSE {ts.format(sign="-", days="ago")} END
  FROM g {order}""",
    ]


def long_engine(url: str) -> sa.Engine:
    """An engine for the benchmark's own bulk statements (building, moving a day, the floors' reads): the
    SQL store's engine without its 60-second statement timeout, which a statement over 20M rows exceeds."""
    return engine_for(url, waits=Waits(statement_s=0, lock_s=600))


def count_users(url: str) -> int | None:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM users").scalar_one())
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def _build_engine(url: str) -> sa.Engine:
    """The build's engine: no statement timeout, and (PostgreSQL) memory for the time-order sort of ~20M rows
    and the index builds: the benchmark's setup, not what the measured programs get."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return engine_for(url)
    parsed = parsed.set(drivername="postgresql+psycopg")
    options = "-c statement_timeout=0 -c work_mem=1GB -c maintenance_work_mem=1GB"
    return sa.create_engine(parsed, connect_args={"options": options})


def build(url: str, users: int, *, layout: str = "time") -> dict[str, Any]:
    """Create ``users``/``events`` (the data contract, via `scorer.demo.create_tables`) and fill them, the
    events in ``layout`` order (``time``: as a product appends them; ``visitor``: each visitor's together)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    engine = _build_engine(url)
    pg = engine.dialect.name == "postgresql"
    t0 = time.perf_counter()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS events")
            conn.exec_driver_sql("DROP TABLE IF EXISTS users")
        # Indexes after the load: building them once is far faster than maintaining them row by row.
        create_tables(engine, with_scores=False)
        with engine.begin() as conn:
            if not pg:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            for stmt in _pg_statements(users, layout) if pg else _sqlite_statements(users, layout):
                conn.exec_driver_sql(stmt)
        migrate(engine)  # the lead_score* columns, the job's indexes (and PostgreSQL functions for REST)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE" if pg else "ANALYZE")
            events = int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
    finally:
        engine.dispose()
    return {"users": users, "events": events, "layout": layout, "seconds": time.perf_counter() - t0}


def reset_scores(url: str) -> None:
    """Every user unscored again, with no reasons, history or checkpoint (else a stale run after a previous
    one would select nobody); on PostgreSQL vacuum the dead rows so every run starts equal."""
    engine = long_engine(url)
    n = Names()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE users SET {n.lead_score} = NULL, {n.model_version} = NULL, {n.scored_at} = NULL, "
                f"{n.reasons} = NULL"
            )
            conn.exec_driver_sql(f"DELETE FROM {n.checkpoints}")
            conn.exec_driver_sql(f"DELETE FROM {n.history}")
            conn.exec_driver_sql(f"DELETE FROM {n.shadow}")
        _settle(engine, "users", n.checkpoints, n.shadow)
    finally:
        engine.dispose()


def _settle(engine: sa.Engine, *tables: str, full: bool = False) -> None:
    """After a bulk change: PostgreSQL vacuums (``full``: rewrites the tables and their indexes compactly)
    and analyzes ``tables``; SQLite folds its write-ahead log back (``full``: VACUUM and ANALYZE)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            for t in tables:
                conn.exec_driver_sql(f"VACUUM {'FULL ' if full else ''}ANALYZE {t}")
        else:
            if full:
                conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def read_scores(url: str) -> tuple[np.ndarray, int]:
    """(lead_score ordered by user_id with NaN for NULL, number of NULL scores)."""
    engine = long_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT lead_score FROM users ORDER BY user_id").all()
    finally:
        engine.dispose()
    scores = np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)
    return scores, int(np.isnan(scores).sum())


# -- day 2: the clock moves a day, some users come back -------------------------------------------------

#: Every timestamp the job compares (and the rest of the data's, so the tables stay consistent): shifted back
#: together, they are what the job sees when the clock moves forward by the same amount.
_TIMES = {
    "events": ("created_at",),
    "users": ("signed_up_at", "converted_at", Names().scored_at),
    Names().checkpoints: ("complete_as_of", "partial_as_of", "updated_at"),
    Names().history: ("scored_at",),
}
# The chosen users and how many events each gets: hashes of the user id, unrelated to the generator's.
_RETURNS, _RETURN_EVENTS = (43, 134775813), (59, 214013)
_SQLITE_RND = "(random() / 18446744073709551616.0 + 0.5)"


def _sqlite_shift(col: str) -> str:
    """``col`` one day earlier, in the form it is stored in: SQLite keeps times as ISO text (the generator's
    ``YYYY-MM-DD HH:MM:SS.SSS``, the job's ``isoformat(sep=" ")`` with microseconds and ``+00:00``). The
    first 19 characters move a day; the fraction and offset after them are kept as they were."""
    moved = f"strftime('%Y-%m-%d %H:%M:%S', {col}, '-1 day') || substr({col}, 20)"
    return f"CASE WHEN {col} IS NULL THEN NULL ELSE {moved} END"


def _samples(conn: sa.Connection) -> dict[str, list[Any]]:
    """A sample of stored times per column, parsed by the SQL store's own reader of stored timestamps."""
    from scorer.stores.sql import _as_utc

    keys = {"events": "id", "users": "user_id", Names().checkpoints: "key", Names().history: "user_id"}
    every = {"events": 1009, "users": 101}
    out: dict[str, list[Any]] = {}
    for table, cols in _TIMES.items():
        where = f"WHERE mod({keys[table]}, {every[table]}) = 1" if table in every else ""
        rows = conn.exec_driver_sql(f"SELECT {', '.join(cols)} FROM {table} {where} ORDER BY {keys[table]}").all()
        for i, col in enumerate(cols):
            out[f"{table}.{col}"] = [_as_utc(r[i]) for r in rows]
    return out


def pass_a_day(url: str) -> dict[str, Any]:
    """Make a day pass without a fake clock: every stored time one day earlier, in SQL.

    PostgreSQL: ``- interval '24 hours'`` (not ``'1 day'``: on a ``timestamptz`` that is a calendar day in
    the session's time zone, 23 or 25 hours across a DST change). SQLite: `_sqlite_shift`, checked on every
    row before it is applied (``julianday`` exactly one day less, the same length of text). Afterwards the
    checkpoints, as the job reads them (`SqlStore.read_checkpoint`), and a sample of every column, as the
    store parses stored times, must be exactly one day earlier. Then the tables are rewritten compactly
    (PostgreSQL ``VACUUM FULL``, SQLite ``VACUUM``), so the runs after this see tables as dense as before
    every row was updated."""
    engine = long_engine(url)
    pg = engine.dialect.name == "postgresql"
    t0 = time.perf_counter()
    store = SqlStore(url, engine=engine)
    day = timedelta(days=1)
    shifted: dict[str, int] = {}
    try:
        store.open().check()
        with engine.connect() as conn:
            keys = [r[0] for r in conn.exec_driver_sql(f"SELECT key FROM {Names().checkpoints}")]
            before = _samples(conn)
        checkpoints = {k: store.read_checkpoint(k) for k in keys}
        with engine.begin() as conn:
            for table, cols in _TIMES.items():
                if not pg:
                    for col in cols:
                        bad = conn.exec_driver_sql(
                            f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND ({_sqlite_shift(col)} IS NULL "
                            f"OR abs(julianday({_sqlite_shift(col)}) - julianday({col}) + 1) > 1e-8 "
                            f"OR length({_sqlite_shift(col)}) <> length({col}))"
                        ).scalar_one()
                        if bad:
                            raise RuntimeError(f"{bad} value(s) of {table}.{col} would not move by exactly one day")
                shift = (lambda c: f"{c} - interval '24 hours'") if pg else _sqlite_shift
                sets = ", ".join(f"{c} = {shift(c)}" for c in cols)
                shifted[table] = int(conn.exec_driver_sql(f"UPDATE {table} SET {sets}").rowcount)
        with engine.connect() as conn:
            after = _samples(conn)
        for k, cp in checkpoints.items():
            now = store.read_checkpoint(k)
            for name in ("complete_as_of", "partial_as_of"):
                was, got = getattr(cp, name), getattr(now, name)
                if (was is None) != (got is None) or (was is not None and got != was - day):
                    raise RuntimeError(f"checkpoint {k} {name}: {was} became {got}, not one day earlier")
        for col, values in before.items():
            wrong = [
                (b, a)
                for b, a in zip(values, after[col], strict=True)
                if (b is None) != (a is None) or (b is not None and a != b - day)
            ]
            if wrong:
                raise RuntimeError(f"{col}: {wrong[0][0]} became {wrong[0][1]}, not one day earlier")
        _settle(engine, "events", "users", Names().checkpoints, full=True)
    finally:
        store.close()
    return {
        "rows": shifted,
        "checked": sum(len(v) for v in before.values()) + 2 * len(checkpoints),
        "seconds": time.perf_counter() - t0,
    }


def add_events(url: str, *, share: float = 0.05, most: int = 5, hours: float = 6.0) -> dict[str, Any]:
    """New events for a deterministic ``share`` of the users with a visitor id (a hash of the user id):
    1 to ``most`` each (another hash), in the last ``hours`` before now, buying signals and general events
    mixed by each user's latent intent as the generator mixes them. Returns how many users and events."""
    engine = long_engine(url)
    pg = engine.dialect.name == "postgresql"
    intent = _hash("user_id", 17, pg=pg)
    chosen = _hash("user_id", _RETURNS[0], pg=pg, mult=_RETURNS[1])
    count = _hash("user_id", _RETURN_EVENTS[0], pg=pg, mult=_RETURN_EVENTS[1])
    early = 0.1  # hours: the newest is a few minutes old, before the run that reads it
    t0 = time.perf_counter()
    if pg:
        stmt = f"""INSERT INTO events (visitor_id, event_type, created_at)
SELECT u.visitor_id,
       CASE WHEN r.pick < 0.05 + 0.45 * u.intent THEN ({_sql_array(BUYING)})[1 + floor(r.which * {len(BUYING)})::int]
            ELSE ({_sql_array(GENERAL)})[1 + floor(r.which * {len(GENERAL)})::int] END,
       now() - ({early} + {hours - early} * r.age) * interval '1 hour'
  FROM (SELECT visitor_id, {intent} AS intent, 1 + floor({count} * {most})::int AS cnt
          FROM users WHERE visitor_id IS NOT NULL AND {chosen} < {share}) AS u
 CROSS JOIN LATERAL generate_series(1, u.cnt) AS k
 CROSS JOIN LATERAL (SELECT random() AS pick, random() AS which, random() AS age OFFSET 0 * k) AS r"""
    else:
        rnd = _SQLITE_RND
        ts = f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (({early} + {hours - early} * age) * 3600.0) || ' seconds')"
        stmt = f"""WITH RECURSIVE k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < {most}),
u AS (SELECT visitor_id, {intent} AS intent, 1 + CAST({count} * {most} AS INTEGER) AS cnt
        FROM users WHERE visitor_id IS NOT NULL AND {chosen} < {share}),
r AS MATERIALIZED (SELECT visitor_id, intent, {rnd} AS pick, {rnd} AS which, {rnd} AS age
        FROM u JOIN k ON k.j <= u.cnt)
INSERT INTO events (visitor_id, event_type, created_at)
SELECT visitor_id,
       CASE WHEN pick < 0.05 + 0.45 * intent THEN {_pick(_quoted(BUYING), "which")}
            ELSE {_pick(_quoted(GENERAL), "which")} END,
       {ts}
  FROM r"""
    try:
        with engine.begin() as conn:
            # Counted, not the statement's rowcount: SQLite reports none for an INSERT behind a WITH.
            was = int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
            conn.exec_driver_sql(stmt)
            events = int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()) - was
            users = int(
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM users WHERE visitor_id IS NOT NULL AND {chosen} < {share}"
                ).scalar_one()
            )
        _settle(engine, "events")
    finally:
        engine.dispose()
    return {"users": users, "events": events, "seconds": time.perf_counter() - t0}


_SNAP_USERS, _SNAP_CHECKPOINTS = "bench_day_users", "bench_day_checkpoints"
_SCORE_COLS = (Names().lead_score, Names().model_version, Names().scored_at, Names().reasons)


def snapshot_day(url: str) -> None:
    """Keep what a run changes (the users' score columns, the checkpoints) in side tables, to restore it
    before each timed run (`restore_day`): events are only read."""
    engine = long_engine(url)
    try:
        with engine.begin() as conn:
            for t in (_SNAP_USERS, _SNAP_CHECKPOINTS):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
            conn.exec_driver_sql(f"CREATE TABLE {_SNAP_USERS} AS SELECT user_id, {', '.join(_SCORE_COLS)} FROM users")
            conn.exec_driver_sql(f"CREATE UNIQUE INDEX {_SNAP_USERS}_key ON {_SNAP_USERS} (user_id)")
            conn.exec_driver_sql(f"CREATE TABLE {_SNAP_CHECKPOINTS} AS SELECT * FROM {Names().checkpoints}")
    finally:
        engine.dispose()


def restore_day(url: str) -> int:
    """The state `snapshot_day` kept: rows whose score, model or time differ are set back, the checkpoints
    replaced; then vacuumed as `reset_scores` does. Returns how many users were set back."""
    engine = long_engine(url)
    pg = engine.dialect.name == "postgresql"
    differs = " OR ".join(f"u.{c} IS {'DISTINCT FROM' if pg else 'NOT'} s.{c}" for c in _SCORE_COLS[:3])
    sets = ", ".join(f"{c} = s.{c}" for c in _SCORE_COLS)
    try:
        with engine.begin() as conn:
            restored = int(
                conn.exec_driver_sql(
                    f"UPDATE users AS u SET {sets} FROM {_SNAP_USERS} AS s WHERE u.user_id = s.user_id AND ({differs})"
                ).rowcount
            )
            conn.exec_driver_sql(f"DELETE FROM {Names().checkpoints}")
            conn.exec_driver_sql(f"INSERT INTO {Names().checkpoints} SELECT * FROM {_SNAP_CHECKPOINTS}")
        _settle(engine, "users", Names().checkpoints)
    finally:
        engine.dispose()
    return restored
