"""Errors on the upgrade path and in the image name their real cause and fix: a REST project still on the
previous release's schema, and a SQLite database in a folder the job's user cannot write."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lead_errors import SchemaError
from scorer.stores.rest import RestStore
from tests.conftest import REST_KEY
from tests.jobproc import LEAD_SCORER, TIMEOUT
from tests.postgrest_standin import PostgrestStandin
from tests.support import execute, make_product

#: The image's user (Dockerfile): a folder owned by root is not writable for it.
IMAGE_UID = 10001


@pytest.mark.parametrize(
    "previous",
    [
        pytest.param(["DROP TABLE lead_scorer_checkpoints"], id="no-checkpoints-table"),
        pytest.param(["DROP TABLE lead_score_history", "DROP TABLE lead_scorer_checkpoints"], id="neither-table"),
    ],
)
def test_rest_on_the_previous_release_schema_says_apply_the_sql(pg_url, previous):
    """The job's own table is missing: the fix is this release's SQL, not the LEAD_SCORER_*_TABLE settings."""
    make_product(pg_url, users=20, seed=48)
    execute(pg_url, *previous)
    with PostgrestStandin(pg_url, api_key=REST_KEY) as rest:
        store = RestStore(rest.url, key=REST_KEY)
        with pytest.raises(SchemaError) as caught:
            store.open().check()
        store.close()
    err = caught.value
    assert "lead_scorer_checkpoints" in err.message and "own table" in err.message
    assert "lead-scorer db migrate" in err.hint and "lead-scorer db sql" in err.hint
    assert "LEAD_SCORER_" not in err.hint


def test_rest_still_blames_the_settings_for_a_missing_product_table(pg_url):
    make_product(pg_url, users=20, seed=49)
    execute(pg_url, "ALTER TABLE events RENAME TO product_events")
    with PostgrestStandin(pg_url, api_key=REST_KEY) as rest:
        store = RestStore(rest.url, key=REST_KEY)
        with pytest.raises(SchemaError) as caught:
            store.open().check()
        store.close()
    assert "LEAD_SCORER_*_TABLE" in caught.value.hint


@pytest.fixture
def unwritable_sqlite(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict]]:
    """A SQLite database in a folder the child process's user cannot write: migrated, or (param "previous")
    on the previous release's schema, without the checkpoints table, so that `db migrate` has work to do, or
    (param "file") in a writable folder but itself not writable.

    As root (which ignores permission bits) the child runs as the image's uid 10001 and the folder belongs to
    root (0755): the kernel answers EACCES, as in the image. Otherwise the folder is made read-only (0555)."""
    folder = Path(tempfile.mkdtemp(prefix="lead-scorer-ro-"))
    db = folder / "leads.db"
    make_product(f"sqlite:///{db}", users=30, seed=50)
    if getattr(request, "param", None) == "previous":
        execute(f"sqlite:///{db}", "DROP TABLE lead_scorer_checkpoints")
    os.chmod(db, 0o644)
    as_root = os.geteuid() == 0
    if getattr(request, "param", None) == "file":
        # Only the file: the folder is writable (the lock file can be made), the database is not.
        os.chmod(db, 0o644 if as_root else 0o444)
        os.chmod(folder, 0o777)
    else:
        os.chmod(folder, 0o755 if as_root else 0o555)
    user = {"user": IMAGE_UID, "group": IMAGE_UID, "extra_groups": []} if as_root else {}
    try:
        yield f"sqlite:///{db}", user
    finally:
        os.chmod(folder, 0o755)
        os.chmod(db, 0o644)
        shutil.rmtree(folder)


def _cli(args: list[str], url: str, user: dict) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAD_SCORER_", "MLFLOW_", "SUPABASE_"))}
    env |= {"DATABASE_URL": url, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "HOME": tempfile.gettempdir()}
    return subprocess.run(
        [LEAD_SCORER, *args],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        **user,
    )


@pytest.mark.parametrize(
    ("unwritable_sqlite", "args"),
    [("migrated", ["run"]), ("previous", ["db", "migrate"])],
    ids=["run", "db-migrate"],
    indirect=["unwritable_sqlite"],
)
def test_sqlite_in_a_folder_the_user_cannot_write_names_the_folder(unwritable_sqlite, args):
    url, user = unwritable_sqlite
    folder = str(Path(url.removeprefix("sqlite:///")).parent)
    done = _cli(args, url, user)
    assert done.returncode == 4, done.stdout + done.stderr  # the store's kind, not 70 (a bug) or a lock timeout
    said = done.stdout + done.stderr
    assert f"its folder {folder} is not writable by this user (uid {os.geteuid() if not user else IMAGE_UID})" in said
    assert "writable volume" in said
    assert "Traceback" not in said and "internal error" not in said and "lock timeout" not in said


@pytest.mark.parametrize("unwritable_sqlite", ["file"], indirect=True)
def test_sqlite_file_the_user_cannot_write_is_named_before_the_run_reads(unwritable_sqlite):
    """Without the check the run went on (here to MLflow), and each batch's write would have failed on its own
    ("attempt to write a readonly database")."""
    url, user = unwritable_sqlite
    done = _cli(["run"], url, user)
    said = done.stdout + done.stderr
    assert done.returncode == 4, said
    assert f"the file is not writable by this user (uid {os.geteuid() if not user else IMAGE_UID})" in said
    assert "Traceback" not in said and "batch" not in said
