"""The project's SQL: the three ``lead_score*`` columns, the indexes the job needs, and (PostgreSQL)
the two database functions the Supabase REST store calls.

Printed by ``lead-scorer db sql`` (to paste into Supabase's SQL editor or a
``supabase/migrations`` file) and applied by ``lead-scorer db migrate``. Applying it twice
is harmless.
"""

from __future__ import annotations

import sqlalchemy as sa

from scorer.stores.base import Names

__all__ = ["EVENTS_FUNCTION", "WRITE_FUNCTION", "migrate", "schema_sql", "statements"]


def _index_name(*parts: str) -> str:
    return "_".join(parts)[:63]


def statements(*, dialect: str, names: Names, existing: set[str] | None = None) -> list[str]:
    """The statements for ``dialect`` ("postgresql" or "sqlite").

    SQLite has no ``ADD COLUMN IF NOT EXISTS``; pass the users table's ``existing`` columns to
    skip those already there.
    """
    n = names
    pg = dialect == "postgresql"
    users = f"{n.schema}.{n.users}" if pg else n.users
    events = f"{n.schema}.{n.events}" if pg else n.events
    types = {
        n.lead_score: "double precision" if pg else "REAL",
        n.model_version: "text" if pg else "TEXT",
        n.scored_at: "timestamptz" if pg else "TEXT",
    }
    out = []
    for col, typ in types.items():
        if existing is not None and col in existing:
            continue
        if_not = "IF NOT EXISTS " if pg else ""
        out.append(f"ALTER TABLE {users} ADD COLUMN {if_not}{col} {typ};")
    out.append(
        f"CREATE INDEX IF NOT EXISTS {_index_name(n.users, 'unscored_idx')} "
        f"ON {users} ({n.user_id}) WHERE {n.lead_score} IS NULL;"
    )
    out.append(
        f"CREATE INDEX IF NOT EXISTS {_index_name(n.events, n.event_visitor_id, n.created_at, 'idx')} "
        f"ON {events} ({n.event_visitor_id}, {n.created_at});"
    )
    if pg:
        out += _functions(n)
    return out


#: Database functions the Supabase REST store calls (POST /rest/v1/rpc/<name>).
WRITE_FUNCTION = "lead_scorer_write_scores"
EVENTS_FUNCTION = "lead_scorer_daily_events"


def _functions(n: Names) -> list[str]:
    """The REST path's functions. Ids travel as text and are cast to the key's real type inside, so one
    function serves bigint, uuid and text keys and the primary key index is still used."""
    users = f"{n.schema}.{n.users}"
    events = f"{n.schema}.{n.events}"
    write = f"{n.schema}.{WRITE_FUNCTION}"
    daily = f"{n.schema}.{EVENTS_FUNCTION}"
    write_sig = f"{write}(text[], double precision[], text, timestamptz)"
    daily_sig = f"{daily}(text[], timestamptz, timestamptz)"
    return [
        f"""CREATE OR REPLACE FUNCTION {write}(
    p_ids text[], p_scores double precision[], p_version text, p_scored_at timestamptz
) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $fn$
DECLARE
    id_type text;
    updated integer;
BEGIN
    SELECT format_type(a.atttypid, a.atttypmod) INTO id_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = '{users}'::regclass AND a.attname = '{n.user_id}';
    -- Update-only: rows deleted since they were read simply do not match; nothing is inserted.
    -- (Concatenation, not format(): drivers rewrite a literal %s when the script is applied.)
    EXECUTE 'UPDATE {users} AS u SET {n.lead_score} = v.score, {n.model_version} = $3, {n.scored_at} = $4 '
         || 'FROM unnest($1::' || id_type || '[], $2) AS v(id, score) WHERE u.{n.user_id} = v.id '
         -- The ids' own key range, so a batch is found through the primary key, not a scan of the table.
         || 'AND u.{n.user_id} >= (SELECT k FROM unnest($1::' || id_type || '[]) AS k ORDER BY k LIMIT 1) '
         || 'AND u.{n.user_id} <= (SELECT k FROM unnest($1::' || id_type || '[]) AS k ORDER BY k DESC LIMIT 1)'
    USING p_ids, p_scores, p_version, p_scored_at;
    GET DIAGNOSTICS updated = ROW_COUNT;
    RETURN updated;
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
      FROM (SELECT e.{n.event_visitor_id} AS visitor_id,
                   lower(trim(e.{n.event_type})) AS event_type,
                   (e.{n.created_at} AT TIME ZONE 'UTC')::date AS day,
                   coalesce(e.{n.created_at} >= p_as_of, false) AS future,
                   count(*) AS n
              FROM {events} AS e
             WHERE e.{n.event_visitor_id} = ANY (p_visitor_ids)
               AND (e.{n.created_at} >= p_since OR e.{n.created_at} IS NULL)
             GROUP BY 1, 2, 3, 4) AS g
$fn$;""",
        # Functions in an exposed schema are callable by anon by default: only the service role may.
        f"REVOKE EXECUTE ON FUNCTION {write_sig}, {daily_sig} FROM PUBLIC;",
        f"""DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE EXECUTE ON FUNCTION {write_sig}, {daily_sig} FROM anon, authenticated;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT EXECUTE ON FUNCTION {write_sig}, {daily_sig} TO service_role;
    END IF;
END
$do$;""",
    ]


def schema_sql(*, dialect: str = "postgresql", names: Names | None = None) -> str:
    """The whole script as text, with a header saying where it goes."""
    body = "\n".join(statements(dialect=dialect, names=names or Names()))
    return (
        "-- lead-scorer schema: safe to apply more than once.\n"
        "-- Supabase: paste into the SQL editor, or save as supabase/migrations/<timestamp>_lead_scorer.sql\n"
        f"{body}\n"
    )


def migrate(engine: sa.Engine, *, names: Names | None = None) -> list[str]:
    """Apply the schema through ``engine``; returns the statements it ran."""
    n = names or Names()
    dialect = engine.dialect.name
    existing = None
    if dialect != "postgresql":
        existing = {c["name"] for c in sa.inspect(engine).get_columns(n.users)}
    todo = statements(dialect=dialect, names=n, existing=existing)
    with engine.begin() as conn:
        for stmt in todo:
            conn.exec_driver_sql(stmt)
    return todo
