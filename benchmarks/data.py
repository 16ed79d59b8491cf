"""Synthetic benchmark data generated inside the database: seconds for 100k users, minutes for 1M.

PostgreSQL uses ``generate_series``; SQLite a recursive CTE. Each user has a latent intent (a hash
of the user id, so the users table and the events table agree without a join) that raises both the
share of buying signals among their events and their chance to convert, so a model trained on the
data is a real model. About 20 events per user over 150 days, with the mess real tables have: NULL
and padded/mixed-case event types, NULL and future timestamps, users without a visitor id.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import sqlalchemy as sa

from scorer.demo import create_tables
from scorer.schema import migrate
from scorer.stores.sql import engine_for

__all__ = ["build", "count_users", "read_scores", "reset_scores"]

EVENTS_PER_USER = 20  # mean; uniform on 0..40
GENERAL = ["page_view", "docs_view", "email_open", "feature_used", "webinar_join", "support_ticket", "unsubscribe"]
BUYING = ["pricing_view", "demo_request", "signup_started", "invite_sent", "Pricing View "]


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


def _sql_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pg_statements(users: int) -> list[str]:
    intent = _hash("i", 17, pg=True)
    no_vis = _hash("i", 91, pg=True)
    signup, converts, converted = (_hash("i", salt, pg=True, mult=m) for salt, m in (_SIGNUP, _CONVERTS, _CONVERTED))
    vis = "'v' || lpad(to_hex(i), 8, '0')"
    general, buying = _sql_array(GENERAL), _sql_array(BUYING)
    return [
        f"""INSERT INTO users (user_id, visitor_id, email, signed_up_at, converted_at)
SELECT i,
       CASE WHEN {no_vis} < 0.04 THEN NULL ELSE {vis} END,
       'user' || i || '@example.com',
       now() - (1 + 149 * {signup}) * interval '1 day',
       CASE WHEN {converts} < 0.02 + 0.3 * {intent} * {intent} THEN now() - 90 * {converted} * interval '1 day' END
  FROM generate_series(1, {users}) AS i""",
        f"""INSERT INTO events (visitor_id, event_type, created_at)
SELECT {vis},
       CASE WHEN r.noise < 0.004 THEN NULL
            WHEN r.noise < 0.006 THEN '  LEGACY_Click '
            WHEN r.pick < 0.05 + 0.45 * u.intent
                 THEN ({buying})[1 + floor(r.which * {len(BUYING)})::int]
            ELSE ({general})[1 + floor(r.which * {len(GENERAL)})::int] END,
       CASE WHEN r.noise >= 0.006 AND r.noise < 0.008 THEN NULL
            WHEN r.noise >= 0.008 AND r.noise < 0.010 THEN now() + (1 + 29 * r.age) * interval '1 day'
            ELSE now() - 150 * power(r.age, 1 + u.intent) * interval '1 day' END
  FROM (SELECT i, {intent} AS intent FROM generate_series(1, {users}) AS i WHERE {no_vis} >= 0.04) AS u
 CROSS JOIN LATERAL generate_series(1, mod(u.i::bigint * 7919, {2 * EVENTS_PER_USER + 1})::int) AS k
 CROSS JOIN LATERAL (SELECT random() AS noise, random() AS pick, random() AS which,
                            random() AS age OFFSET 0 * k) AS r""",
    ]


def _sqlite_statements(users: int) -> list[str]:
    intent = _hash("i", 17, pg=False)
    no_vis = _hash("i", 91, pg=False)
    signup, converts, converted = (_hash("i", salt, pg=False, mult=m) for salt, m in (_SIGNUP, _CONVERTS, _CONVERTED))
    vis = "'v' || printf('%08x', i)"
    rnd = "(random() / 18446744073709551616.0 + 0.5)"

    def pick(values: list[str], r: str) -> str:
        whens = " ".join(f"WHEN {r} < {(k + 1) / len(values)!r} THEN '{v}'" for k, v in enumerate(values[:-1]))
        return f"CASE {whens} ELSE '{values[-1]}' END"

    ts = "strftime('%Y-%m-%d %H:%M:%f', 'now', '{sign}' || (({days}) * 86400.0) || ' seconds')"
    return [
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users})
INSERT INTO users (user_id, visitor_id, email, signed_up_at, converted_at)
SELECT i,
       CASE WHEN {no_vis} < 0.04 THEN NULL ELSE {vis} END,
       'user' || i || '@example.com',
       {ts.format(sign="-", days=f"1 + 149 * {signup}")},
       CASE WHEN {converts} < 0.02 + 0.3 * {intent} * {intent} THEN {ts.format(sign="-", days=f"90 * {converted}")} END
  FROM n""",
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}),
k(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM k WHERE j < {2 * EVENTS_PER_USER}),
u AS (SELECT i, {intent} AS intent, i * 7919 % {2 * EVENTS_PER_USER + 1} AS cnt FROM n WHERE {no_vis} >= 0.04),
r AS MATERIALIZED (SELECT i, intent, {rnd} AS noise, {rnd} AS pick, {rnd} AS which, {rnd} AS age
        FROM u JOIN k ON k.j <= u.cnt)
INSERT INTO events (visitor_id, event_type, created_at)
SELECT {vis},
       CASE WHEN noise < 0.004 THEN NULL
            WHEN noise < 0.006 THEN '  LEGACY_Click '
            WHEN pick < 0.05 + 0.45 * intent THEN {pick(BUYING, "which")}
            ELSE {pick(GENERAL, "which")} END,
       CASE WHEN noise >= 0.006 AND noise < 0.008 THEN NULL
            WHEN noise >= 0.008 AND noise < 0.010 THEN {ts.format(sign="+", days="1 + 29 * age")}
            ELSE {ts.format(sign="-", days="150 * power(age, 1 + intent)")} END
  FROM r""",
    ]


def count_users(url: str) -> int | None:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM users").scalar_one())
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def build(url: str, users: int) -> dict[str, Any]:
    """Create ``users``/``events`` (the data contract, via `scorer.demo.create_tables`) and fill them."""
    engine = engine_for(url)
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
            for stmt in _pg_statements(users) if pg else _sqlite_statements(users):
                conn.exec_driver_sql(stmt)
        migrate(engine)  # the lead_score* columns, the job's indexes (and PostgreSQL functions for REST)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE" if pg else "ANALYZE")
            events = int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
    finally:
        engine.dispose()
    return {"users": users, "events": events, "seconds": time.perf_counter() - t0}


def reset_scores(url: str) -> None:
    """Every user unscored again; on PostgreSQL vacuum the dead rows so every run starts equal."""
    engine = engine_for(url)
    pg = engine.dialect.name == "postgresql"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE users SET lead_score = NULL, lead_score_model_version = NULL, lead_scored_at = NULL"
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if pg:
                conn.exec_driver_sql("VACUUM ANALYZE users")
            else:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


def read_scores(url: str) -> tuple[np.ndarray, int]:
    """(lead_score ordered by user_id with NaN for NULL, number of NULL scores)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT lead_score FROM users ORDER BY user_id").all()
    finally:
        engine.dispose()
    scores = np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)
    return scores, int(np.isnan(scores).sum())
