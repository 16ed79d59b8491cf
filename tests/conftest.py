"""Shared fixtures: a real PostgreSQL (pgserver unless TEST_DATABASE_URL is set), fresh databases per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
import stamina
from sqlalchemy.engine import make_url

from scorer.settings import ENV_FILE_VARIABLE


@pytest.fixture(autouse=True, scope="session")
def _no_dotenv() -> Iterator[None]:
    # A developer's .env (a SUPABASE_URL, a DATABASE_URL) must never reach a test: settings' documented switch,
    # set here for the in-process CLI and every child that inherits the environment (jobproc.job_env sets it too).
    patch = pytest.MonkeyPatch()
    patch.setenv(ENV_FILE_VARIABLE, "")
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def _no_retry_waits() -> Iterator[None]:
    # stamina's switch: retries still happen (attempt counts hold) but without sleeping.
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL: TEST_DATABASE_URL, or a pgserver started for this session."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    import pgserver

    server = pgserver.get_server(str(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def _admin_engine(server_url: str) -> sa.Engine:
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(pg_server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(pg_server_url).set(drivername="postgresql+psycopg", database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'leads.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each behaviour test runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def mlflow_local(tmp_path_factory: pytest.TempPathFactory):
    """A local MLflow store (SQLite + artifact folder) shared by the session; tests use their own model names."""
    from tests.support import mlflow_store

    return mlflow_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` over HTTP (SQLite backend, proxied artifacts), one per session (per xdist worker).

    Tests on it use their own model names and experiments (``tests.support.Mlflow.settings``), so none sees
    another's registry state; a test that kills its server or needs basic auth starts its own.
    """
    from tests.mlflow_server import start_mlflow_server

    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_local):
    """A model trained on a synthetic product and promoted: (settings of its model, LoadedModel)."""
    from registry import Registry
    from scorer.edge import train_options
    from scorer.trainer import train_model
    from tests.support import make_product

    db = f"sqlite:///{tmp_path_factory.mktemp('train') / 'train.db'}"
    make_product(db, users=1500, seed=7)
    settings = mlflow_local.settings(db)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    reg = Registry(tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name)
    return settings, reg.load(reg.resolve())


REST_KEY = "sb_secret_test-service-role-key-0123456789"


@dataclass
class Target:
    """Where a behaviour test's data lives, and the store the job uses to reach it.

    ``url`` is always a direct SQL URL (to arrange and inspect data); ``store()`` is what the job gets:
    the SQL store on that URL, or the REST store through the PostgREST stand-in over the same database.
    """

    kind: str
    url: str
    rest: Any = None

    def store(self, **kwargs: Any) -> Any:
        from scorer.stores.rest import RestStore
        from scorer.stores.sql import SqlStore

        if self.rest is not None:
            store = RestStore(self.rest.url, key=REST_KEY, max_rows=self.rest.max_rows, **kwargs)
        else:
            store = SqlStore(self.url, **kwargs)
        store.open().check()
        return store


def _target(request: pytest.FixtureRequest, kind: str) -> Iterator[Target]:
    if kind == "sqlite":
        yield Target(kind, request.getfixturevalue("sqlite_url"))
        return
    url = request.getfixturevalue("pg_url")
    if kind == "postgresql":
        yield Target(kind, url)
        return
    from tests.postgrest_standin import PostgrestStandin

    with PostgrestStandin(url, api_key=REST_KEY, max_rows=1000) as rest:
        yield Target(kind, url, rest)
        assert rest.errors == []


@pytest.fixture(params=["sqlite", "postgresql", "rest"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Each behaviour test of the job runs on SQLite, PostgreSQL, and Supabase REST (over PostgreSQL)."""
    yield from _target(request, request.param)


@pytest.fixture(params=["postgresql", "rest"])
def pg_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    yield from _target(request, request.param)
