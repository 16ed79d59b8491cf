"""Test support: real databases filled with a synthetic product, a local MLflow store, snapshots."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from models import SyntheticData, generate
from scorer.demo import create_tables, load_data
from scorer.settings import Settings, load_settings
from scorer.stores.sql import engine_for

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def make_product(
    url: str,
    *,
    users: int = 300,
    seed: int = 1,
    events_per_user: float = 12.0,
    id_type: Any = sa.BigInteger,
    user_ids: list[Any] | None = None,
    with_scores: bool = True,
) -> SyntheticData:
    """Create users/events tables in the database at ``url`` and fill them."""
    engine = engine_for(url)
    data = generate(users=users, seed=seed, now=NOW, events_per_user=events_per_user)
    create_tables(engine, id_type=id_type, with_scores=with_scores)
    load_data(engine, data, user_ids=user_ids)
    engine.dispose()
    return data


def snapshot(url: str, table: str = "users") -> pd.DataFrame:
    """Every row and column of ``table``, ordered by its first column."""
    engine = engine_for(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn)
    engine.dispose()
    key = frame.columns[0]
    frame[key] = frame[key].astype(str)
    return frame.sort_values(key).reset_index(drop=True)


def scoring_runs(settings: Settings) -> list[Any]:
    """The scoring experiment's MLflow runs, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.scoring_experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]) if exp else []


def execute(url: str, *statements: str, params: dict[str, Any] | None = None) -> list[Any]:
    engine = engine_for(url)
    out: list[Any] = []
    with engine.begin() as conn:
        for stmt in statements:
            res = conn.execute(sa.text(stmt), params or {})
            out.append(res.all() if res.returns_rows else res.rowcount)
    engine.dispose()
    return out


@dataclass(frozen=True)
class Mlflow:
    """A local MLflow store (SQLite) with per-test model names, so tests never share a registry state."""

    tracking_uri: str
    artifacts: str

    def settings(self, database_url: str, **overrides: Any) -> Settings:
        name = overrides.pop("model_name", None) or f"lead_scoring_{uuid.uuid4().hex[:8]}"
        # These tests are about runs, registries and stores, so they score every user; who is selected
        # (open leads only, by default) is tested in test_freshness.py.
        overrides.setdefault("population", "everyone")
        return load_settings(
            database_url=database_url,
            mlflow_tracking_uri=self.tracking_uri,
            model_name=name,
            scoring_experiment=f"scoring-{name}",
            training_experiment=f"training-{name}",
            **overrides,
        )


def mlflow_store(root: Path) -> Mlflow:
    return Mlflow(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifacts=(root / "artifacts").as_uri())


# -- a cache that outlives the session ------------------------------------------------------------------------

#: Entries nobody used for this long are removed (a cache keyed by content only grows otherwise).
CACHE_MAX_IDLE_S = 7 * 24 * 3600


def cache_root() -> Path:
    """Where tests keep what is slow to build and safe to reuse: TEST_CACHE_DIR, else ~/.cache/lead-scorer-tests."""
    given = os.environ.get("TEST_CACHE_DIR")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lead-scorer-tests"


def digest(*, files: Iterable[Path], relative_to: Path, extra: Iterable[str] = ()) -> str:
    """A SHA-256 over the files' paths (relative to ``relative_to``) and bytes, then the ``extra`` strings."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path.relative_to(relative_to)).encode() + b"\0" + path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()


def cached_build(kind: str, key: str, build: Callable[[Path], None]) -> Path:
    """A directory built by ``build(path)`` once per ``key`` and reused by later sessions.

    The directory's name carries the key, so a changed input builds a new one instead of reusing a stale
    one; it counts only once ``build`` returned (a killed session leaves no half-built entry in use). An
    exclusive file lock makes concurrent sessions (xdist workers, other checkouts) build it once. The built
    directory must not be moved afterwards: a virtualenv, for one, has its path in its scripts.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    entry = root / f"{kind}-{key[:24]}"
    stamp = root / f"{kind}-{key[:24]}.complete"
    with (root / f"{kind}-{key[:24]}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == key):
            stamp.unlink(missing_ok=True)
            shutil.rmtree(entry, ignore_errors=True)
            entry.mkdir()
            build(entry)
            stamp.write_text(key)
        os.utime(stamp)  # last used: what eviction goes by
    _evict(root, kind, keep=entry)
    return entry


def _evict(root: Path, kind: str, *, keep: Path) -> None:
    """Remove this kind's entries idle for CACHE_MAX_IDLE_S, each under its own lock (never one in use)."""
    now = time.time()
    for stamp in root.glob(f"{kind}-*.complete"):
        entry = stamp.with_suffix("")
        if entry == keep or now - stamp.stat().st_mtime < CACHE_MAX_IDLE_S:
            continue
        with stamp.with_suffix(".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being built right now
            stamp.unlink(missing_ok=True)
            shutil.rmtree(entry, ignore_errors=True)
