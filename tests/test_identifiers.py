"""Mixed-case (Prisma-style) table and column names: migrated and scored from exactly the tables they name.

PostgreSQL folds an unquoted name to lower case, so ``"Users"`` written unquoted is ``users``: another table
(read without a word) or none. Every test here keeps a lowercase decoy with other data beside the mixed-case
tables where the database can hold both (PostgreSQL; SQLite's names are case-insensitive, so there the
mixed-case names alone are tested).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from scorer.cli import app
from scorer.contract import Names, qualified, quote_ident
from scorer.demo import create_tables, load_data
from scorer.job import JobOptions, score_users
from scorer.schema import statements
from scorer.stores.sql import engine_for
from tests.support import NOW, execute, make_product

PRISMA = Names(
    users="Users",
    events="Events",
    user_id="userId",
    visitor_id="visitorId",
    event_visitor_id="visitorId",
    event_type="eventType",
    created_at="createdAt",
    converted_at="convertedAt",
)
#: Only the tables mixed-case: the lowercase decoy has the very same columns, so an unquoted name reads it without
#: an error (the run "succeeded", every lead scored as having no activity).
TABLES_ONLY = Names(users="Users", events="Events")
#: In a mixed-case schema of its own (LEAD_SCORER_DB_SCHEMA; PostgreSQL, and the SQL store only: the REST
#: stand-in exposes one schema).
OWN_SCHEMA = Names(schema="Crm", users="Users", events="Events")
#: The same names as settings, as an operator would give them.
PRISMA_ENV = {
    "LEAD_SCORER_USERS_TABLE": "Users",
    "LEAD_SCORER_EVENTS_TABLE": "Events",
    "LEAD_SCORER_USER_ID_COLUMN": "userId",
    "LEAD_SCORER_VISITOR_ID_COLUMN": "visitorId",
    "LEAD_SCORER_EVENT_TYPE_COLUMN": "eventType",
    "LEAD_SCORER_CREATED_AT_COLUMN": "createdAt",
    "LEAD_SCORER_CONVERTED_AT_COLUMN": "convertedAt",
}
OPTIONS = JobOptions(select="unscored", batch_size=100, leads_only=False)


def _product(url: str, *, seed: int, decoy: bool, migrate: bool, names: Names = PRISMA) -> None:
    """Prisma-style tables filled from ``seed``; with ``decoy``, lowercase users/events filled from another seed."""
    from models import generate

    engine = engine_for(url)
    try:
        create_tables(engine, names=names, with_scores=migrate)
        load_data(engine, generate(users=240, seed=seed, now=NOW, events_per_user=12.0), names=names)
        if decoy:
            create_tables(engine, with_scores=False)
            load_data(engine, generate(users=240, seed=seed + 1000, now=NOW, events_per_user=12.0))
    finally:
        engine.dispose()


def _table(url: str, table: str, schema: str | None = None) -> pd.DataFrame:
    engine = engine_for(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM {qualified(schema, table)}"), conn)
    engine.dispose()
    return frame.sort_values(frame.columns[0]).reset_index(drop=True)


def test_quote_ident_quotes_exactly_the_name():
    assert quote_ident("Users") == '"Users"'
    assert qualified("public", "Events") == '"public"."Events"'
    assert qualified(None, "events") == '"events"'


@pytest.mark.parametrize("names", [PRISMA, TABLES_ONLY, OWN_SCHEMA], ids=["prisma", "tables-only", "own-schema"])
def test_a_mixed_case_schema_is_scored_from_its_own_tables(names, target, trained, tmp_path):
    """The scores equal those of the same product under lowercase names (a reference SQLite database), and a
    lowercase decoy ``users``/``events`` with other data is neither read nor written."""
    _, model = trained
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    make_product(reference, users=240, seed=41)
    want = score_users(store=_store(reference, Names()), model=model, options=OPTIONS, now=NOW)
    expected = _table(reference, "users").set_index("user_id")["lead_score"]

    if names.schema != "public":
        if target.kind != "postgresql":
            pytest.skip("a schema of its own: PostgreSQL through the SQL store")
        execute(target.url, f"CREATE SCHEMA {quote_ident(names.schema)}")
    decoy = target.kind != "sqlite"
    _product(target.url, seed=41, decoy=decoy, migrate=True, names=names)
    decoys = {t: _table(target.url, t) for t in ("users", "events")} if decoy else {}
    schema = names.schema if target.kind != "sqlite" else None
    before = _table(target.url, "Users", schema)

    got = score_users(store=target.store(names=names), model=model, options=OPTIONS, now=NOW)

    assert got.exit_code == 0 and got.users_failed == 0
    assert got.users_scored == want.users_scored == 240 and got.events_read == want.events_read > 0
    after = _table(target.url, "Users", schema)
    assert len(after) == len(before) == 240
    scores = after.set_index(names.user_id)["lead_score"]
    np.testing.assert_allclose(scores.sort_index(), expected.sort_index(), rtol=0, atol=1e-9)
    assert scores.nunique() > 20  # not one "no activity" score for everyone
    untouched = [c for c in before.columns if not c.startswith("lead_score")]
    assert after[untouched].equals(before[untouched])
    for name, frame in decoys.items():
        assert _table(target.url, name).equals(frame), f"the decoy {name} table changed"


def _store(url: str, names: Names):
    from scorer.stores.sql import SqlStore

    store = SqlStore(url, names=names)
    store.open().check()
    return store


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_db_migrate_applies_to_mixed_case_tables(kind, request):
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url")
    decoy = kind == "postgresql"
    _product(url, seed=43, decoy=decoy, migrate=False)
    env = {"DATABASE_URL": url, "LEAD_SCORER_LOG_LEVEL": "WARNING"} | PRISMA_ENV
    for _ in range(2):  # applying it again is harmless
        result = CliRunner().invoke(app, ["db", "migrate"], env=env)
        assert result.exit_code == 0, result.output
    engine = engine_for(url)
    insp = sa.inspect(engine)
    schema = "public" if decoy else None
    columns = {c["name"] for c in insp.get_columns("Users", schema=schema)}
    assert {"lead_score", "lead_score_model_version", "lead_scored_at", "lead_score_reasons"} <= columns
    indexed = {i["name"] for i in insp.get_indexes("Events", schema=schema)}
    assert "Events_visitorId_createdAt_eventType_idx" in indexed
    if decoy:
        # The lowercase tables are the product's too: nothing was added to them.
        assert not any(c["name"].startswith("lead_score") for c in insp.get_columns("users", schema=schema))
        assert insp.get_indexes("events", schema=schema) == []
    engine.dispose()


def test_every_generated_statement_quotes_the_names():
    """No hand-written SQL names a mixed-case table or column unquoted (it would mean its lowercase twin)."""
    for dialect in ("postgresql", "sqlite"):
        text = "\n".join(statements(dialect=dialect, names=PRISMA))
        outside_identifiers = re.sub(r'"[^"]*"', "", text)
        for name in ("Users", "Events", "userId", "visitorId", "eventType", "createdAt"):
            # Only a catalog lookup's value ('userId', compared with pg_attribute.attname) may spell it bare.
            assert name not in outside_identifiers.replace(f"'{name}'", ""), f"{dialect}: {name} unquoted"
