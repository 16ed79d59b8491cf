"""Where settings come from: the environment, and a dotenv file that `LEAD_SCORER_ENV_FILE` names (``.env`` by
default; empty: none). The test suite sets it empty (tests/conftest.py), so a developer's ``.env`` — a
SUPABASE_URL beside the tests' DATABASE_URL, a renamed table — never changes what a test sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lead_errors import SettingsError
from scorer.app import open_store
from scorer.cli import app
from scorer.edge import store_options
from scorer.settings import ENV_FILE_VARIABLE, load_settings

# What a developer's .env may hold: the production store, and a product whose users live in another table.
DEVELOPERS_ENV = (
    "SUPABASE_URL=https://dev-project.supabase.co\n"
    "SUPABASE_SERVICE_ROLE_KEY=dev-service-role-key\n"
    "LEAD_SCORER_USERS_TABLE=members\n"
    "LEAD_SCORER_BATCH_SIZE=7\n"
)


@pytest.fixture
def developers_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory holds a developer's .env, as a checkout with one does."""
    (tmp_path / ".env").write_text(DEVELOPERS_ENV)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _db_sql(env: dict[str, str | None]) -> object:
    return CliRunner().invoke(app, ["db", "sql", "--dialect", "sqlite"], env={"LEAD_SCORER_LOG_LEVEL": "WARNING"} | env)


def test_a_developers_env_file_never_reaches_a_test(developers_checkout: Path) -> None:
    # No switch set by this test: the suite's own (tests/conftest.py) is what keeps the file out.
    settings = load_settings(database_url="sqlite:///leads.db", mlflow_tracking_uri="http://127.0.0.1:5000")
    assert settings.supabase_url is None and settings.batch_size == 2000
    assert settings.names().users == "users"
    open_store(store_options(settings))  # one store: the tests' DATABASE_URL (constructed, not connected)

    result = _db_sql({})
    assert result.exit_code == 0, result.output
    assert 'ALTER TABLE "users" ADD COLUMN' in result.output and "members" not in result.output


def test_without_the_switch_the_env_file_is_read(developers_checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a user gets (and what the test above would see without the suite's switch): the file counts.
    monkeypatch.delenv(ENV_FILE_VARIABLE, raising=False)
    settings = load_settings(mlflow_tracking_uri="http://127.0.0.1:5000")
    assert settings.supabase_url == "https://dev-project.supabase.co" and settings.batch_size == 7
    # The tests' own DATABASE_URL beside the .env's SUPABASE_URL is two stores: every run would be refused.
    both = load_settings(database_url="sqlite:///leads.db", mlflow_tracking_uri="http://127.0.0.1:5000")
    with pytest.raises(SettingsError, match="both DATABASE_URL and SUPABASE_URL") as refused:
        open_store(store_options(both))
    assert "dev-service-role-key" not in str(refused.value)

    result = _db_sql({ENV_FILE_VARIABLE: None})
    assert result.exit_code == 0, result.output
    assert 'ALTER TABLE "members" ADD COLUMN' in result.output


def test_the_switch_names_another_file(developers_checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (developers_checkout / "staging.env").write_text("LEAD_SCORER_BATCH_SIZE=300\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, "staging.env")
    assert load_settings().batch_size == 300
    # The environment still wins over the file.
    monkeypatch.setenv("LEAD_SCORER_BATCH_SIZE", "40")
    assert load_settings().batch_size == 40
