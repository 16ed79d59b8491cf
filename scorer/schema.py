"""The project's SQL: the ``lead_score*`` columns, the indexes the job needs, the job's own checkpoint and
(optional) history tables, and (PostgreSQL) the database functions the Supabase REST store calls.

Printed by ``lead-scorer db sql`` (to paste into Supabase's SQL editor or a
``supabase/migrations`` file) and applied by ``lead-scorer db migrate``. Applying it twice
is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
import structlog

from lead_errors import StoreError
from scorer.contract import Names, qualified, quote_ident

__all__ = [
    "EVENTS_FUNCTION",
    "HISTOGRAM_FUNCTION",
    "LOCKS_TABLE",
    "LOCK_FUNCTION",
    "SELECT_FUNCTION",
    "SHADOW_PAIRS_FUNCTION",
    "UNLOCK_FUNCTION",
    "WRITE_FUNCTION",
    "Index",
    "migrate",
    "schema_sql",
    "statements",
]

log = structlog.get_logger("lead_scorer.schema")


def _index_name(*parts: str) -> str:
    return "_".join(parts)[:63]


@dataclass(frozen=True, kw_only=True)
class Index:
    """An index on a table the product writes to (its users and events), which `migrate` builds on
    PostgreSQL with ``CREATE INDEX CONCURRENTLY``: a plain build holds back every write to the table for as
    long as it takes (minutes for a large events table)."""

    name: str  # as the catalog spells it (unquoted)
    schema: str | None  # None: SQLite
    definition: str  # ``ON <table> (<columns>) …``
    needs_new_columns: bool = False  # refers to a column this migration adds

    def create(self, *, concurrently: bool = False) -> str:
        how = "CONCURRENTLY " if concurrently else ""
        return f"CREATE INDEX {how}IF NOT EXISTS {quote_ident(self.name)} {self.definition};"

    def drop(self, *, concurrently: bool = False) -> str:
        how = "CONCURRENTLY " if concurrently else ""
        return f"DROP INDEX {how}IF EXISTS {qualified(self.schema, self.name)};"


@dataclass(frozen=True, kw_only=True)
class Retired:
    """An index earlier versions made that a newer one contains: dropped after its successor is built."""

    index: Index


def _plan(*, dialect: str, names: Names, existing: set[str] | None = None) -> list[str | Index | Retired]:
    """The migration in order: plain statements, indexes on the product's tables, and retired indexes.

    The events index comes first: pasted as one transaction (Supabase's SQL editor), the users table's new
    columns take an exclusive lock on users that lasts until the end, and the events build is the long part.
    Every identifier is quoted (`quote_ident`): a Prisma-style ``"Users"`` is that table, not ``users``.
    """
    n = names
    pg = dialect == "postgresql"
    schema = n.schema if pg else None
    users = qualified(schema, n.users)
    history = qualified(schema, n.history)
    checkpoints = qualified(schema, n.checkpoints)
    shadow = qualified(schema, n.shadow)
    q = quote_ident
    types = {
        n.lead_score: "double precision" if pg else "REAL",
        n.model_version: "text" if pg else "TEXT",
        n.scored_at: "timestamptz" if pg else "TEXT",
        n.reasons: "jsonb" if pg else "TEXT",
    }
    out: list[str | Index | Retired] = []
    # A batch's events by visitor, read from the index alone (an index-only scan): a product appends events in
    # time order, so one visitor's events lie on as many table pages as it has events, and fetching those pages
    # was most of the read (3x at 1M users). The time orders the probe of the stale rule; the type rides along.
    covering = f" INCLUDE ({q(n.event_type)})" if pg else ""
    columns = f"{q(n.event_visitor_id)}, {q(n.created_at)}" + ("" if pg else f", {q(n.event_type)}")
    out.append(
        Index(
            name=_index_name(n.events, n.event_visitor_id, n.created_at, n.event_type, "idx"),
            schema=schema,
            definition=f"ON {qualified(schema, n.events)} ({columns}){covering}",
        )
    )
    for col, typ in types.items():
        if existing is not None and col in existing:
            continue
        if_not = "IF NOT EXISTS " if pg else ""
        out.append(f"ALTER TABLE {users} ADD COLUMN {if_not}{q(col)} {typ};")
    out.append(
        Index(
            name=_index_name(n.users, "unscored_idx"),
            schema=schema,
            definition=f"ON {users} ({q(n.user_id)}) WHERE {q(n.lead_score)} IS NULL",
            needs_new_columns=True,
        )
    )
    # How far each model's runs got (`stores.base.Checkpoint`): one row per model and population.
    ts = "timestamptz" if pg else "TEXT"
    out.append(
        f"CREATE TABLE IF NOT EXISTS {checkpoints} (key text PRIMARY KEY, complete_as_of {ts}, "
        f"partial_as_of {ts}, partial_through text, updated_at {ts} NOT NULL);"
    )
    if pg:
        out.append(
            _keyed_table(
                history,
                users=users,
                user_id=n.user_id,
                rest="scored_at timestamptz NOT NULL, score double precision NOT NULL, model_version text NOT NULL",
            )
        )
        locks = qualified(schema, LOCKS_TABLE)
        # The REST store's run lock: a lease (a Data API request has no session to hold a lock with).
        out.append(
            f"CREATE TABLE IF NOT EXISTS {locks} (key text PRIMARY KEY, holder text NOT NULL, "
            "expires_at timestamptz NOT NULL);"
        )
        out.append(f"ALTER TABLE {locks} ENABLE ROW LEVEL SECURITY;")
        # Only the service role (which bypasses row level security) reads or writes the job's own tables.
        out.append(f"ALTER TABLE {checkpoints} ENABLE ROW LEVEL SECURITY;")
        out.append(f"ALTER TABLE {history} ENABLE ROW LEVEL SECURITY;")
        # The challenger's shadow scores: one row per user and model, never in the users table. UNLOGGED: its
        # write-ahead log was most of a challenger's cost at 1M leads (~0.9 GB a run, and the checkpoints it
        # forced made production's own updates slower). The price: a crash of the database empties it, and
        # standbys and physical backups do not hold its rows (docs/champion-challenger.md#cost).
        out.append(
            _keyed_table(
                shadow,
                users=users,
                user_id=n.user_id,
                rest="model_version text NOT NULL, score double precision NOT NULL, "
                f"scored_at timestamptz NOT NULL, PRIMARY KEY ({q(n.user_id)}, model_version)",
                unlogged=True,
            )
        )
        # A table an earlier release made logged is rewritten once; checked first, since even a no-op ALTER
        # TABLE waits for an exclusive lock on it.
        out.append(
            "DO $do$\nBEGIN\n"
            f"    IF (SELECT relpersistence FROM pg_catalog.pg_class WHERE oid = to_regclass('{shadow}')) = 'p' THEN\n"
            f"        ALTER TABLE {shadow} SET UNLOGGED;\n"
            "    END IF;\nEND\n$do$;"
        )
        out.append(f"ALTER TABLE {shadow} ENABLE ROW LEVEL SECURITY;")
    else:
        out.append(
            f"CREATE TABLE IF NOT EXISTS {history} ({q(n.user_id)} NOT NULL, scored_at TEXT NOT NULL, "
            "score REAL NOT NULL, model_version TEXT NOT NULL);"
        )
        out.append(
            f"CREATE TABLE IF NOT EXISTS {shadow} ({q(n.user_id)} NOT NULL, model_version TEXT NOT NULL, "
            f"score REAL NOT NULL, scored_at TEXT NOT NULL, PRIMARY KEY ({q(n.user_id)}, model_version));"
        )
    # The job's own table: no product writes to wait for, built in the transaction.
    out.append(
        f"CREATE INDEX IF NOT EXISTS {q(_index_name(n.history, n.user_id, 'scored_at', 'idx'))} "
        f"ON {history} ({q(n.user_id)}, scored_at);"
    )
    if pg:
        out += _functions(n)
    # The index earlier versions made, which the events index above contains: dropped last, after its successor
    # exists (dropping takes an exclusive lock on events, for a moment).
    old = _index_name(n.events, n.event_visitor_id, n.created_at, "idx")
    out.append(Retired(index=Index(name=old, schema=schema, definition="")))
    return out


def statements(*, dialect: str, names: Names, existing: set[str] | None = None) -> list[str]:
    """The statements for ``dialect`` ("postgresql" or "sqlite"), as one transaction runs them (plain index
    builds; `migrate` builds the product tables' indexes concurrently instead).

    Pass the users table's ``existing`` columns to skip adding those already there (SQLite has no
    ``ADD COLUMN IF NOT EXISTS``; on PostgreSQL even a no-op ``ALTER TABLE`` waits for an exclusive lock).
    """
    out = []
    for item in _plan(dialect=dialect, names=names, existing=existing):
        if isinstance(item, Index):
            out.append(item.create())
        elif isinstance(item, Retired):
            out.append(item.index.drop())
        else:
            out.append(item)
    return out


#: Database functions the Supabase REST store calls (POST /rest/v1/rpc/<name>).
WRITE_FUNCTION = "lead_scorer_write_scores"
EVENTS_FUNCTION = "lead_scorer_daily_events"
SELECT_FUNCTION = "lead_scorer_stale_users"
LOCK_FUNCTION = "lead_scorer_lock"
UNLOCK_FUNCTION = "lead_scorer_unlock"
LOCKS_TABLE = "lead_scorer_locks"
HISTOGRAM_FUNCTION = "lead_scorer_score_histogram"
SHADOW_PAIRS_FUNCTION = "lead_scorer_shadow_pairs"

_ID_TYPE = """    SELECT format_type(a.atttypid, a.atttypmod) INTO id_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = '{users}'::regclass AND a.attname = '{col}';"""


def _keyed_table(table: str, *, users: str, user_id: str, rest: str, unlogged: bool = False) -> str:
    """A job's table whose ``user_id`` has the users key's own type (bigint, uuid or text), read from the
    catalog when the statement runs; ``rest``: the other columns and constraints (quoted names)."""
    kind = "UNLOGGED TABLE" if unlogged else "TABLE"
    return f"""DO $do$
DECLARE
    id_type text;
BEGIN
{_ID_TYPE.format(users=users, col=user_id)}
    EXECUTE 'CREATE {kind} IF NOT EXISTS {table} ({quote_ident(user_id)} ' || id_type || ' NOT NULL, {rest})';
END
$do$;"""


class _Quoted:
    """A `Names`' names as quoted identifiers, for SQL text: ``_Quoted(n).users == '"users"'``."""

    def __init__(self, names: Names) -> None:
        self._names = names

    def __getattr__(self, field: str) -> str:
        return quote_ident(getattr(self._names, field))


def _functions(n: Names) -> list[str]:
    """The REST path's functions. Ids travel as text and are cast to the key's real type inside, so one
    function serves bigint, uuid and text keys and the primary key index is still used.

    Names are quoted when the text is generated (`quote_ident`), in the dynamic SQL too: they are validated
    identifiers known here, so ``format('%I', …)`` at every call would only repeat the work (and a literal
    ``%`` is what drivers rewrite when the script is applied)."""
    c = _Quoted(n)
    users = qualified(n.schema, n.users)
    events = qualified(n.schema, n.events)
    history = qualified(n.schema, n.history)
    checkpoints = qualified(n.schema, n.checkpoints)
    shadow = qualified(n.schema, n.shadow)
    pairs = qualified(n.schema, SHADOW_PAIRS_FUNCTION)
    pairs_sig = f"{pairs}(text, text, boolean, text, integer)"
    write = qualified(n.schema, WRITE_FUNCTION)
    daily = qualified(n.schema, EVENTS_FUNCTION)
    stale = qualified(n.schema, SELECT_FUNCTION)
    hist = qualified(n.schema, HISTOGRAM_FUNCTION)
    write_sig = (
        f"{write}(text[], double precision[], text, timestamptz, text[], boolean, text, text, boolean, "
        "text, text[], double precision[])"
    )
    daily_sig = f"{daily}(text[], timestamptz, timestamptz)"
    stale_sig = (
        f"{stale}(text, integer, text, timestamptz, timestamptz, integer, timestamptz, timestamptz, text, boolean)"
    )
    hist_sig = f"{hist}(integer, boolean)"
    lock = qualified(n.schema, LOCK_FUNCTION)
    unlock = qualified(n.schema, UNLOCK_FUNCTION)
    locks = qualified(n.schema, LOCKS_TABLE)
    lock_sig = f"{lock}(text, text, integer)"
    unlock_sig = f"{unlock}(text, text)"
    sigs = f"{write_sig}, {daily_sig}, {stale_sig}, {hist_sig}, {lock_sig}, {unlock_sig}, {pairs_sig}"
    id_type = _ID_TYPE.format(users=users, col=n.user_id)
    no_reasons = "array_fill(NULL::text, ARRAY[cardinality(p_ids)])"
    return [
        # The write function before reasons, history and checkpoints: replaced, not overloaded.
        f"DROP FUNCTION IF EXISTS {write}(text[], double precision[], text, timestamptz);",
        # ... and before the challenger's shadow scores.
        f"DROP FUNCTION IF EXISTS {write}(text[], double precision[], text, timestamptz, text[], boolean, text, "
        "text, boolean);",
        f"""CREATE OR REPLACE FUNCTION {write}(
    p_ids text[], p_scores double precision[], p_version text, p_scored_at timestamptz,
    p_reasons text[] DEFAULT NULL, p_history boolean DEFAULT false,
    p_checkpoint text DEFAULT NULL, p_through text DEFAULT NULL, p_complete boolean DEFAULT false,
    p_shadow_model text DEFAULT NULL, p_shadow_ids text[] DEFAULT NULL, p_shadow_scores double precision[] DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $fn$
DECLARE
    id_type text;
    reasons_type text;
    set_reasons text := '';
    keys text;
    updated integer := 0;
BEGIN
{id_type}
    SELECT format_type(a.atttypid, a.atttypmod) INTO reasons_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = '{users}'::regclass AND a.attname = '{n.reasons}' AND NOT a.attisdropped;
    IF reasons_type IS NOT NULL AND p_reasons IS NOT NULL THEN
        set_reasons := ', {c.reasons} = v.reasons::' || reasons_type;
    END IF;
    -- The ids' own key range, so a batch is found through the primary key, not a scan of the table.
    keys := 'u.{c.user_id} = v.id '
         || 'AND u.{c.user_id} >= (SELECT k FROM unnest($1::' || id_type || '[]) AS k ORDER BY k LIMIT 1) '
         || 'AND u.{c.user_id} <= (SELECT k FROM unnest($1::' || id_type || '[]) AS k ORDER BY k DESC LIMIT 1)';
    IF coalesce(cardinality(p_ids), 0) > 0 THEN
        -- Update-only: rows deleted since they were read simply do not match; nothing is inserted.
        -- (Concatenation, not format(): drivers rewrite a literal %s when the script is applied.)
        IF p_history THEN
            -- The history rows and the update are one statement: they cannot disagree.
            EXECUTE 'WITH w AS (UPDATE {users} AS u SET {c.lead_score} = v.score, {c.model_version} = $3, '
                 || '{c.scored_at} = $4' || set_reasons || ' '
                 || 'FROM unnest($1::' || id_type || '[], $2, $5) AS v(id, score, reasons) WHERE ' || keys
                 || ' RETURNING u.{c.user_id} AS id, v.score) '
                 || 'INSERT INTO {history} ({c.user_id}, scored_at, score, model_version) '
                 || 'SELECT id, $4, score, $3 FROM w'
            USING p_ids, p_scores, p_version, p_scored_at, coalesce(p_reasons, {no_reasons});
        ELSE
            EXECUTE 'UPDATE {users} AS u SET {c.lead_score} = v.score, {c.model_version} = $3, '
                 || '{c.scored_at} = $4' || set_reasons || ' '
                 || 'FROM unnest($1::' || id_type || '[], $2, $5) AS v(id, score, reasons) WHERE ' || keys
            USING p_ids, p_scores, p_version, p_scored_at, coalesce(p_reasons, {no_reasons});
        END IF;
        GET DIAGNOSTICS updated = ROW_COUNT;
    END IF;
    IF p_shadow_model IS NOT NULL AND coalesce(cardinality(p_shadow_ids), 0) > 0 THEN
        -- The challenger's scores, beside production's in the same transaction; only for users that exist.
        EXECUTE 'INSERT INTO {shadow} AS s ({c.user_id}, model_version, score, scored_at) '
             || 'SELECT u.{c.user_id}, $3, v.score, $4 FROM {users} AS u '
             || 'JOIN unnest($1::' || id_type || '[], $2) AS v(id, score) ON u.{c.user_id} = v.id '
             || 'ON CONFLICT ({c.user_id}, model_version) DO UPDATE SET score = excluded.score, '
             || 'scored_at = excluded.scored_at'
        USING p_shadow_ids, p_shadow_scores, p_shadow_model, p_scored_at;
    END IF;
    IF p_checkpoint IS NOT NULL THEN
        -- The run's progress moves in the same transaction as its scores.
        INSERT INTO {checkpoints} AS c (key, complete_as_of, partial_as_of, partial_through, updated_at)
        VALUES (p_checkpoint, CASE WHEN p_complete THEN p_scored_at END,
                CASE WHEN NOT p_complete THEN p_scored_at END, CASE WHEN NOT p_complete THEN p_through END, now())
        ON CONFLICT (key) DO UPDATE SET
            complete_as_of = CASE WHEN p_complete THEN excluded.complete_as_of ELSE c.complete_as_of END,
            partial_as_of = excluded.partial_as_of,
            partial_through = excluded.partial_through,
            updated_at = excluded.updated_at;
    END IF;
    RETURN updated;
END
$fn$;""",
        f"""CREATE OR REPLACE FUNCTION {stale}(
    p_after text, p_limit integer, p_model text, p_as_of timestamptz, p_day_start timestamptz,
    p_reach_days integer, p_complete timestamptz, p_partial timestamptz, p_through text, p_leads_only boolean
) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = '' AS $fn$
DECLARE
    id_type text;
    vis_type text;
    result jsonb;
BEGIN
{id_type}
    -- users.visitor_id is cast to events.visitor_id's type (text, or uuid), so the events index serves the probe.
    SELECT format_type(a.atttypid, a.atttypmod) INTO vis_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = '{events}'::regclass AND a.attname = '{n.event_visitor_id}';
    -- The `stale` rule of scorer.stores.base.Freshness, as the SQL store renders it: one key page.
    EXECUTE 'SELECT jsonb_build_object('
         || '''user_id'', coalesce(jsonb_agg(p.{c.user_id} ORDER BY p.{c.user_id}), ''[]''), '
         || '''visitor_id'', coalesce(jsonb_agg(p.{c.visitor_id} ORDER BY p.{c.user_id}), ''[]''), '
         || '''lead_score'', coalesce(jsonb_agg(p.{c.lead_score} ORDER BY p.{c.user_id}), ''[]''), '
         || '''model'', coalesce(jsonb_agg(p.{c.model_version} ORDER BY p.{c.user_id}), ''[]'')) '
         || 'FROM (SELECT u.{c.user_id}, u.{c.visitor_id}, u.{c.lead_score}, u.{c.model_version} '
         || 'FROM {users} AS u '
         || 'CROSS JOIN LATERAL (SELECT GREATEST(u.{c.scored_at}, $5, '
         || 'CASE WHEN u.{c.user_id} <= $7::' || id_type || ' THEN $6 END) AS at) AS checked '
         || 'WHERE ($1 IS NULL OR u.{c.user_id} > $1::' || id_type || ') '
         || CASE WHEN p_leads_only THEN 'AND u.{c.converted_at} IS NULL ' ELSE '' END
         || 'AND (u.{c.lead_score} IS NULL OR u.{c.model_version} IS DISTINCT FROM $2 '
         || 'OR u.{c.scored_at} IS NULL '
         || 'OR EXISTS (SELECT 1 FROM {events} AS e '
         || 'WHERE e.{c.event_visitor_id} = u.{c.visitor_id}::' || vis_type || ' '
         || 'AND e.{c.created_at} < $3 AND e.{c.created_at} >= CASE WHEN checked.at <= $4 '
         || 'THEN checked.at - make_interval(days => $8) ELSE checked.at END)) '
         || 'ORDER BY u.{c.user_id} LIMIT $9) AS p'
    INTO result
    USING p_after, p_model, p_as_of, p_day_start, p_complete, p_partial, p_through, p_reach_days, p_limit;
    RETURN result;
END
$fn$;""",
        f"""CREATE OR REPLACE FUNCTION {lock}(p_key text, p_holder text, p_lease_s integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $fn$
DECLARE
    got boolean;
BEGIN
    -- Taken if free, expired (its holder died or hung), or already ours (a renewal).
    INSERT INTO {locks} AS l (key, holder, expires_at)
    VALUES (p_key, p_holder, now() + make_interval(secs => p_lease_s))
    ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
     WHERE l.expires_at < now() OR l.holder = excluded.holder
    RETURNING true INTO got;
    RETURN coalesce(got, false);
END
$fn$;""",
        f"""CREATE OR REPLACE FUNCTION {unlock}(p_key text, p_holder text) RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = '' AS $fn$
    WITH gone AS (DELETE FROM {locks} WHERE key = p_key AND holder = p_holder RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone)
$fn$;""",
        f"""CREATE OR REPLACE FUNCTION {pairs}(
    p_model text, p_challenger text, p_leads_only boolean, p_after text, p_limit integer
) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = '' AS $fn$
DECLARE
    id_type text;
    result jsonb;
BEGIN
{id_type}
    -- One key page of the users holding both a production score and the challenger's shadow score, as one
    -- JSON value (the response cap counts rows, not values).
    EXECUTE 'SELECT jsonb_build_object('
         || '''user_id'', coalesce(jsonb_agg(p.id ORDER BY p.id), ''[]''), '
         || '''production'', coalesce(jsonb_agg(p.a ORDER BY p.id), ''[]''), '
         || '''challenger'', coalesce(jsonb_agg(p.b ORDER BY p.id), ''[]'')) '
         || 'FROM (SELECT u.{c.user_id} AS id, u.{c.lead_score} AS a, s.score AS b FROM {users} AS u '
         || 'JOIN {shadow} AS s ON s.{c.user_id} = u.{c.user_id} AND s.model_version = $2 '
         || 'WHERE u.{c.model_version} = $1 AND u.{c.lead_score} IS NOT NULL '
         || 'AND ($3 IS NULL OR u.{c.user_id} > $3::' || id_type || ') '
         || CASE WHEN p_leads_only THEN 'AND u.{c.converted_at} IS NULL ' ELSE '' END
         || 'ORDER BY u.{c.user_id} LIMIT $4) AS p'
    INTO result USING p_model, p_challenger, p_after, p_limit;
    RETURN result;
END
$fn$;""",
        f"""CREATE OR REPLACE FUNCTION {hist}(p_bins integer, p_leads_only boolean) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = '' AS $fn$
DECLARE
    result jsonb;
BEGIN
    -- The whole population's current scores as counts per bin: one small value, whatever the table's size.
    EXECUTE 'SELECT coalesce(jsonb_agg(jsonb_build_array(h.b, h.n)), ''[]'') FROM ('
         || 'SELECT least(floor({c.lead_score} * $1)::integer, $1 - 1) AS b, count(*) AS n FROM {users} '
         || 'WHERE {c.lead_score} IS NOT NULL '
         || CASE WHEN p_leads_only THEN 'AND {c.converted_at} IS NULL ' ELSE '' END
         || 'GROUP BY 1) AS h'
    INTO result USING p_bins;
    RETURN result;
END
$fn$;""",
        f"""CREATE OR REPLACE FUNCTION {daily}(
    p_visitor_ids text[], p_since timestamptz, p_as_of timestamptz
) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = '' AS $fn$
    -- One JSON value per call, not a set of rows: the 1,000-row response cap never truncates it,
    -- and a very active visitor costs one row per type and day.
    SELECT jsonb_build_object(
        'visitor_id', coalesce(jsonb_agg(g.visitor_id), '[]'::jsonb),
        'event_type', coalesce(jsonb_agg(g.event_type), '[]'::jsonb),
        'day', coalesce(jsonb_agg(g.day), '[]'::jsonb),
        'future', coalesce(jsonb_agg(g.future), '[]'::jsonb),
        'n', coalesce(jsonb_agg(g.n), '[]'::jsonb))
      FROM (SELECT e.{c.event_visitor_id} AS visitor_id,
                   lower(trim(e.{c.event_type})) AS event_type,
                   CASE WHEN isfinite(e.{c.created_at}) THEN (e.{c.created_at} AT TIME ZONE 'UTC')::date END AS day,
                   coalesce(e.{c.created_at} >= p_as_of, false) AS future,
                   count(*) AS n
              FROM {events} AS e
             WHERE e.{c.event_visitor_id} = ANY (p_visitor_ids)
               AND (e.{c.created_at} >= p_since OR e.{c.created_at} IS NULL)
             GROUP BY 1, 2, 3, 4) AS g
$fn$;""",
        # Functions in an exposed schema are callable by anon by default: only the service role may.
        f"REVOKE EXECUTE ON FUNCTION {sigs} FROM PUBLIC;",
        f"""DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE EXECUTE ON FUNCTION {sigs} FROM anon, authenticated;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT EXECUTE ON FUNCTION {sigs} TO service_role;
    END IF;
END
$do$;""",
    ]


_PASTE_NOTE = """\
-- The indexes on your users and events tables are built with a plain CREATE INDEX: the SQL editor and a
-- migration file run this script as one transaction, where CREATE INDEX CONCURRENTLY cannot run. A plain build
-- holds back writes to that table until the script commits (2.4 s at 2.9M events in a trial, growing with the
-- table). On a large live table run `lead-scorer db migrate` instead, which builds them without blocking
-- writes; or run the CONCURRENTLY form in the comment above an index on its own, outside a transaction (psql,
-- or a migration file of its own), when that comment says: this script then finds the index and skips it.
"""


def schema_sql(*, dialect: str = "postgresql", names: Names | None = None) -> str:
    """The whole script as text, with a header saying where it goes: pasteable as one transaction, and on
    PostgreSQL each product-table index also shown in its non-blocking form, to run first on its own."""
    pg = dialect == "postgresql"
    lines = []
    for item in _plan(dialect=dialect, names=names or Names()):
        if isinstance(item, Index):
            if pg:
                when = "before this script"
                if item.needs_new_columns:
                    when = "once the ALTER TABLE lines above are applied"
                lines.append(f"-- Without blocking writes, {when}: {item.create(concurrently=True)}")
            lines.append(item.create())
        elif isinstance(item, Retired):
            lines.append(item.index.drop())
        else:
            lines.append(item)
    body = "\n".join(lines)
    return (
        "-- lead-scorer schema: safe to apply more than once.\n"
        "-- Supabase: paste into the SQL editor, or save as supabase/migrations/<timestamp>_lead_scorer.sql\n"
        f"{_PASTE_NOTE if pg else ''}{body}\n"
    )


def migrate(engine: sa.Engine, *, names: Names | None = None) -> list[str]:
    """Apply the schema through ``engine``; returns the statements it ran.

    PostgreSQL: first one transaction with everything but the indexes on the product's tables (columns the
    users table already has are not added again: even a no-op ``ALTER TABLE`` waits for an exclusive lock on
    it), committed; then each of those indexes with ``CREATE INDEX CONCURRENTLY``, which lets the product
    write to the table while it builds. An invalid index that an interrupted build left is dropped and built
    again. SQLite: everything in one transaction.
    """
    n = names or Names()
    pg = engine.dialect.name == "postgresql"
    schema = n.schema if pg else None
    insp = sa.inspect(engine)
    existing = None
    if insp.has_table(n.users, schema=schema):
        existing = {c["name"] for c in insp.get_columns(n.users, schema=schema)}
    plan = _plan(dialect=engine.dialect.name, names=n, existing=existing)
    if not pg:
        todo = statements(dialect=engine.dialect.name, names=n, existing=existing)
        with engine.begin() as conn:
            for stmt in todo:
                conn.exec_driver_sql(stmt)
        return todo
    now = [item for item in plan if isinstance(item, str)]
    with engine.begin() as conn:
        # The job's statement timeout is for its own reads and writes, not for creating functions behind a
        # busy table. The lock timeout stays: a migration waiting behind the product's traffic should fail,
        # not queue it.
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        for stmt in now:
            conn.exec_driver_sql(stmt)
    ran = list(now)
    with engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")  # CONCURRENTLY cannot run in a transaction
        # Building an index over a large events table takes minutes.
        auto.exec_driver_sql("SET statement_timeout = 0")
        try:
            for item in plan:
                if isinstance(item, Index):
                    ran += _build_concurrently(auto, item)
                elif isinstance(item, Retired):
                    ran.append(item.index.drop(concurrently=True))
                    auto.exec_driver_sql(ran[-1])
        finally:
            auto.exec_driver_sql("RESET statement_timeout")
    return ran


def _build_concurrently(conn: sa.Connection, index: Index) -> list[str]:
    """Build ``index`` without blocking writes to its table; returns the statements run.

    A concurrent build that is interrupted (a lock timeout, a cancel, a lost connection) leaves an INVALID
    index, which ``IF NOT EXISTS`` would then take for done: such a one is dropped and built again. A build
    that fails here drops what it left if it can, and raises a `StoreError` that says which it was."""
    valid = conn.execute(
        sa.text(
            "SELECT i.indisvalid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = :s AND c.relname = :n"
        ),
        {"s": index.schema, "n": index.name},
    ).scalar()
    if valid:
        return []  # built (IF NOT EXISTS would skip it too, after waiting for its lock)
    ran = []
    if valid is False:
        log.warning("invalid_index_rebuilt", index=index.name, why="an earlier concurrent build was interrupted")
        ran.append(index.drop(concurrently=True))
        conn.exec_driver_sql(ran[-1])
    ran.append(index.create(concurrently=True))
    try:
        conn.exec_driver_sql(ran[-1])
    except sa.exc.DBAPIError as exc:
        cause = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        try:
            # Whatever exists under this name now is what this build left (it was absent or dropped above).
            conn.exec_driver_sql(index.drop(concurrently=True))
            left = "nothing of it was kept"
        except sa.exc.DBAPIError:
            # Dropping waits for the same transactions the build waited for.
            left = (
                "it was left INVALID (queries do not use it; writes still maintain it) and the next "
                "`lead-scorer db migrate` drops it and builds it again"
            )
        raise StoreError(
            f"building the index {index.name} did not finish ({cause}); {left}",
            hint="apply it again at a quieter time: the build does not block the product's writes, but waits "
            "for the transactions open on the table when it starts; everything else was applied",
        ) from exc
    return ran
