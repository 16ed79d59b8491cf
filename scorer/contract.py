"""The data contract: the table and column names lead-scorer reads and writes (docs/data-contract.md), all
overridable in settings, and the check that keeps them plain identifiers. A bottom-floor module: settings,
the schema and the stores all build on it, and it imports nothing of theirs."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from lead_errors import SettingsError

__all__ = ["Names", "qualified", "quote_ident", "validate_identifier"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(value: str, *, what: str) -> str:
    """Table and column names come from settings: allow plain identifiers only (no injection)."""
    if not _IDENT.match(value):
        raise SettingsError(
            f"{what} {value!r} is not a plain SQL identifier",
            hint="use letters, digits and underscores, starting with a letter or underscore",
        )
    return value


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier, so it means exactly that name in PostgreSQL and SQLite.

    An unquoted name is folded to lower case by PostgreSQL: Prisma's ``"Users"`` would be read as ``users``
    (another table, or none), and a reserved word such as ``user`` would not parse. Every SQL text the project
    writes by hand names a table or column through this (SQLAlchemy quotes the ones it builds itself).

    >>> quote_ident("Users"), quote_ident("lead_score")
    ('"Users"', '"lead_score"')
    """
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str | None, name: str) -> str:
    """A quoted ``schema.name`` (or just the quoted name when there is no schema, as in SQLite).

    >>> qualified("public", "Events"), qualified(None, "events")
    ('"public"."Events"', '"events"')
    """
    return quote_ident(name) if schema is None else f"{quote_ident(schema)}.{quote_ident(name)}"


@dataclass(frozen=True, kw_only=True)
class Names:
    """Table and column names of the data contract (docs/data-contract.md), all overridable in settings."""

    schema: str = "public"
    users: str = "users"
    events: str = "events"
    user_id: str = "user_id"
    visitor_id: str = "visitor_id"
    lead_score: str = "lead_score"
    model_version: str = "lead_score_model_version"
    scored_at: str = "lead_scored_at"
    converted_at: str = "converted_at"
    reasons: str = "lead_score_reasons"  # optional: written when the column exists
    history: str = "lead_score_history"  # optional table, appended to when history is on
    checkpoints: str = "lead_scorer_checkpoints"
    #: The challenger's shadow scores (docs/champion-challenger.md): the job's own table, one row per user and model.
    shadow: str = "lead_score_shadow"
    event_visitor_id: str = "visitor_id"
    event_type: str = "event_type"
    created_at: str = "created_at"

    def __post_init__(self) -> None:
        for f in fields(self):
            validate_identifier(getattr(self, f.name), what=f"name setting {f.name}")
