"""The project's SQL: the three ``lead_score*`` columns and the indexes the job needs.

Printed by ``lead-scorer db sql`` (to paste into Supabase's SQL editor or a
``supabase/migrations`` file) and applied by ``lead-scorer db migrate``. Applying it twice
is harmless.
"""

from __future__ import annotations

import sqlalchemy as sa

from scorer.stores.base import Names

__all__ = ["migrate", "schema_sql", "statements"]


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
    return out


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
