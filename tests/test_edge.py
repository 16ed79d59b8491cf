"""The CLI's edge: one error handler for every command, settings refused with the variable named, bounded waits
on a server that accepts and never answers, and no secret in any output line, traceback or artifact."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import scorer.cli
import scorer.demo
from scorer.cli import app
from scorer.logs import add_secrets, forget_secrets, redact_text, redact_url, secrets_in
from tests.conftest import REST_KEY
from tests.jobproc import LEAD_SCORER, Job, job_env
from tests.support import make_product

#: A password with an unencoded "@" and a tail that must never show (issue 25, items 2 and 5).
PASSWORD = "Pa55@cretXq9-edge"


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def _cli(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, args, env={"LEAD_SCORER_LOG_LEVEL": "WARNING"} | env, catch_exceptions=False)


# --- redaction, by value and by shape, on cases small enough to check by eye ---------------------------------


def test_redaction_by_value_covers_every_spelling() -> None:
    add_secrets(["s3cr3t@pw", "ab"])  # "ab" is too short to redact by value: it would blank every word
    assert redact_text("pw s3cr3t@pw and s3cr3t%40pw") == "pw *** and ***"
    assert redact_text("about tab") == "about tab"
    # A parser that ends the password at its first "@" quotes the rest as a host name: that tail goes too.
    add_secrets(["head@tail9"])
    assert redact_text("could not translate host name 'tail9@db'") == "could not translate host name '***@db'"
    assert redact_text("{'password': 'other-9'} password=x1y2") == "{'password': '***'} password=***"
    assert redact_text("apikey: sb_secret_abcDEF123 Authorization: Bearer abcdefgh12345") == (
        "apikey: *** Authorization: Bearer ***"
    )


def test_a_password_with_an_at_sign_leaves_no_tail() -> None:
    url = f"postgresql://job:{PASSWORD}@db.example:5432/postgres"
    assert redact_text(url) == "postgresql://***@db.example:5432/postgres"
    assert redact_url(url) == "postgresql://job:***@db.example:5432/postgres"
    from scorer.stores.sql import redact_url as sql_redact_url

    assert "cretXq9" not in sql_redact_url(url) and "db.example" in sql_redact_url(url)
    assert sql_redact_url("postgresql://job:pw@h/d") == "postgresql://job:***@h/d"


def test_the_secrets_the_settings_and_the_environment_know() -> None:
    found = secrets_in(
        settings={"database_url": f"postgresql://job:{PASSWORD}@h/d", "supabase_key": "sb_secret_k1", "batch_size": 5},
        environ={"MLFLOW_TRACKING_PASSWORD": "mlpw1", "MLFLOW_TRACKING_TOKEN": "tok-1", "HOME": "/root"},
    )
    assert found == [PASSWORD, "sb_secret_k1", "mlpw1", "tok-1"]


# --- one error edge ---------------------------------------------------------------------------------------------


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):  # a group: registry, db, spark
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = list(_commands(typer.main.get_command(app)))  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_a_bug_in_any_command_exits_70_with_a_redacted_traceback(
    path: tuple[str, ...], command: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"postgresql://job:{PASSWORD}@127.0.0.1:9/product"

    def bug(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"injected bug near {database_url} and {REST_KEY}")

    # Every command but `demo` starts by reading the settings; `demo` hands over to run_demo.
    monkeypatch.setattr(scorer.cli, "load_settings", bug)
    monkeypatch.setattr(scorer.demo, "run_demo", bug)
    arguments = ["x" for p in command.params if p.param_type_name == "argument"]
    result = _cli(
        [*path, *arguments],
        {"DATABASE_URL": database_url, "SUPABASE_SERVICE_ROLE_KEY": REST_KEY, "MLFLOW_TRACKING_URI": ""},
    )
    assert result.exit_code == 70, result.output
    assert "internal error" in result.output and "RuntimeError: injected bug" in result.output
    assert "cretXq9" not in result.output and REST_KEY not in result.output


def test_a_bug_in_the_edges_own_set_up_is_a_bug_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(**_kwargs: Any) -> list[str]:
        raise RuntimeError("injected bug while collecting the secrets")

    monkeypatch.setattr(scorer.cli, "secrets_in", bug)
    result = _cli(["db", "sql"], {})
    assert result.exit_code == 70 and "RuntimeError: injected bug" in result.output, result.output


def test_a_bug_while_printing_is_a_bug_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import scorer.schema

    monkeypatch.setattr(scorer.schema, "schema_sql", lambda **_: None)  # typer.echo(None, nl=False) prints ""
    assert _cli(["db", "sql"], {}).exit_code == 0

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("cannot print")

    monkeypatch.setattr(scorer.schema, "schema_sql", lambda **_: Unprintable())
    broken = _cli(["db", "sql"], {})
    assert broken.exit_code == 70 and "internal error" in broken.output, broken.output


def test_project_errors_and_clicks_own_exits_pass_through_the_edge() -> None:
    assert _cli(["db", "sql", "--dialect", "oracle"], {}).exit_code == 2
    assert _cli(["run", "--batch-size", "many"], {}).exit_code == 2  # click's usage error
    assert _cli(["--help"], {}).exit_code == 0


# --- every malformed setting exits 2 naming its variable -------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEAD_SCORER_LOG_LEVEL", "junk"),
        ("LEAD_SCORER_SKOPS_TRUSTED_TYPES", "notjson"),
        ("MLFLOW_TRACKING_URI", "https//x"),
        ("MLFLOW_TRACKING_URI", f"http:job:{PASSWORD}@host"),
        ("LEAD_SCORER_DB_STATEMENT_TIMEOUT_S", "0.0004"),
        ("LEAD_SCORER_DB_LOCK_TIMEOUT_S", "0"),
        ("LEAD_SCORER_BATCH_SIZE", "0"),
        ("DATABASE_URL", f"postgresql://job:{PASSWORD}@127.0.0.1:9/product"),
    ],
)
def test_a_malformed_setting_exits_2_naming_the_variable(variable: str, value: str, sqlite_url: str) -> None:
    env = {"DATABASE_URL": sqlite_url, "MLFLOW_TRACKING_URI": "sqlite:///m.db", variable: value}
    result = CliRunner().invoke(app, ["run"], env=env)
    assert result.exit_code == 2, result.output
    assert variable in result.output and "Traceback" not in result.output
    assert "cretXq9" not in result.output


# --- a server that accepts and never answers ----------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose listener completes every TCP handshake (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


#: The database answers within its connect timeout (5 s) and one retry; MLflow within its request timeout and
#: retries; Supabase within its first-contact bound (5 s, one retry). It was 8.3 s, 13.8 s and 130 s.
BOUND_S = 45.0


@pytest.mark.parametrize("silent", ["database", "mlflow", "supabase"])
def test_a_silent_server_fails_the_run_quickly_with_4(silent: str, silent_port: int, tmp_path: Path, trained) -> None:
    settings, _model = trained
    sqlite_url = f"sqlite:///{tmp_path / 'leads.db'}"
    make_product(sqlite_url, users=20, seed=3)
    env = job_env(sqlite_url, settings, f"scoring-silent-{uuid.uuid4().hex[:8]}")
    if silent == "database":
        env["DATABASE_URL"] = f"postgresql://job:{PASSWORD.replace('@', '%40')}@127.0.0.1:{silent_port}/product"
    elif silent == "mlflow":
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{silent_port}"
    else:
        env |= {"SUPABASE_URL": f"http://127.0.0.1:{silent_port}", "SUPABASE_SERVICE_ROLE_KEY": REST_KEY}
        env.pop("DATABASE_URL")
    started = time.monotonic()
    done = subprocess.run(
        [LEAD_SCORER, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=BOUND_S * 3
    )
    took = time.monotonic() - started
    assert done.returncode == 4, done.stdout + done.stderr
    assert took < BOUND_S, f"{silent}: {took:.1f} s"
    assert "cretXq9" not in done.stdout + done.stderr and REST_KEY not in done.stdout + done.stderr


# --- no secret when the store is lost mid-run ----------------------------------------------------------------


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "pgdata" not in p.parts and secret.encode() in p.read_bytes()]


def test_a_database_lost_mid_run_prints_no_secret(trained, tmp_path: Path) -> None:
    import pgserver
    from sqlalchemy.engine import make_url

    settings, _model = trained
    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg")
    make_product(url.render_as_string(hide_password=False), users=3_000, seed=16, events_per_user=4.0)
    # pgserver trusts its socket, so the password is never checked, but psycopg carries it in every frame.
    secret_url = url.set(password=PASSWORD).render_as_string(hide_password=False)
    env = job_env(secret_url, settings, f"scoring-lost-{uuid.uuid4().hex[:8]}") | {
        "LEAD_SCORER_DB_CONNECT_TIMEOUT_S": "2"
    }
    job = Job(["--batch-size", "50"], env, cwd=tmp_path)
    job.wait_for("batch")
    server.cleanup()
    assert job.finish() == 4, job.output()
    (lost,) = job.events("store_lost")
    assert "exception" in lost, lost  # the traceback is there, as data, without its frames' locals
    printed = job.output()
    assert PASSWORD not in printed and "cretXq9" not in printed and "'password'" not in printed
    assert _files_holding(tmp_path, "cretXq9") == []


def test_the_rest_api_lost_mid_run_prints_no_key(trained, pg_url: str, tmp_path: Path) -> None:
    from scorer.schema import migrate
    from scorer.stores.sql import engine_for
    from tests.postgrest_standin import PostgrestStandin

    settings, _model = trained
    make_product(pg_url, users=3_000, seed=18, events_per_user=4.0)
    engine = engine_for(pg_url)
    migrate(engine, names=settings.names())
    engine.dispose()
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=1000) as rest:
        env = job_env("", settings, f"scoring-rest-lost-{uuid.uuid4().hex[:8]}") | {
            "SUPABASE_URL": rest.url,
            "SUPABASE_SERVICE_ROLE_KEY": REST_KEY,
        }
        env.pop("DATABASE_URL")
        job = Job(["--batch-size", "50"], env, cwd=tmp_path)
        job.wait_for("batch")
        rest.stop()
        assert job.finish() == 4, job.output()
    assert job.events("store_lost"), job.output()
    printed = job.output()
    assert REST_KEY not in printed and "test-service-role-key" not in printed
    assert _files_holding(tmp_path, "test-service-role-key") == []


# --- errors that name their real cause -------------------------------------------------------------------------


def test_a_full_temporary_directory_is_named_not_blamed_on_mlflow(trained, tmp_path: Path) -> None:
    """The disk under TMPDIR cannot take the model: the job says so (exit 2, TMPDIR named), not "cannot reach the
    MLflow server" (exit 4). A full disk is made with the kernel's file-size limit on the child: any write past
    ``limit`` bytes fails with EFBIG, as writes to a full disk fail with ENOSPC."""
    import resource
    import signal

    settings, _model = trained
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    make_product(url, users=10, seed=5)
    # Room for the product's database to be read and locked, not for the model (66 KB) to be downloaded.
    limit = (tmp_path / "leads.db").stat().st_size + 8192

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit + 1, limit + 1))

    env = job_env(url, settings, f"scoring-disk-{uuid.uuid4().hex[:8]}") | {"TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [LEAD_SCORER, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=small_disk
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TMPDIR" in done.stdout + done.stderr and "cannot reach the MLflow" not in done.stdout + done.stderr


def test_a_trigger_that_breaks_rest_writes_is_named(pg_url: str) -> None:
    """A product trigger on users names a table without its schema; the write function runs with
    search_path = '', so every REST write fails. The error says a trigger failed, quotes PostgreSQL, and says
    how to fix the trigger, instead of "check LEAD_SCORER_*_TABLE"; nothing is written."""
    from datetime import UTC, datetime

    from lead_errors import SchemaError
    from scorer.stores.base import ScoreWrite
    from scorer.stores.rest import RestStore
    from tests.postgrest_standin import PostgrestStandin
    from tests.support import execute, snapshot

    make_product(pg_url, users=30, seed=7)
    execute(
        pg_url,
        "CREATE TABLE audit_log (user_id text, at timestamptz DEFAULT now())",
        "CREATE FUNCTION log_user_change() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        "INSERT INTO audit_log (user_id) VALUES (NEW.user_id::text); RETURN NEW; END $fn$",
        "CREATE TRIGGER users_audit AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION log_user_change()",
    )
    before = snapshot(pg_url)
    with PostgrestStandin(pg_url, api_key=REST_KEY, max_rows=1000) as rest:
        store = RestStore(rest.url, key=REST_KEY)
        store.open().check()  # an empty write fires no row trigger: the check passes
        first = before["user_id"].iloc[0]
        with pytest.raises(SchemaError) as caught:
            store.write_scores(ScoreWrite(user_ids=[first], scores=[0.5], model="1/m-x", scored_at=datetime.now(UTC)))
        store.close()
    message = str(caught.value)
    assert "a trigger or function on public.users failed" in message and 'relation "audit_log"' in message
    assert "schema-qualify" in message and "LEAD_SCORER_" not in message
    assert snapshot(pg_url).equals(before)


@pytest.mark.parametrize(
    ("driver", "code", "says"),
    [("postgresql", 4, "does not exist"), ("postgresql+psycopg", 4, "does not exist"), ("mysql", 2, "no driver")],
)
def test_a_tracking_database_that_cannot_be_opened_fails_quickly(
    driver: str, code: int, says: str, pg_server_url: str, sqlite_url: str
) -> None:
    """MLflow opened a database-backed store with ten attempts over ~100 s, then raised SQLAlchemy's error
    (exit 70). Now: a missing database is exit 4 within the connect timeout, a missing driver (MySQLdb) exit 2."""
    from sqlalchemy.engine import make_url

    make_product(sqlite_url, users=10, seed=2)
    tracking = make_url(pg_server_url).set(drivername=driver, database=f"missing_{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    result = _cli(
        ["run"], {"DATABASE_URL": sqlite_url, "MLFLOW_TRACKING_URI": tracking.render_as_string(hide_password=False)}
    )
    assert result.exit_code == code, result.output
    assert says in result.output and "MLFLOW_TRACKING_URI" in result.output
    assert time.monotonic() - started < 15
