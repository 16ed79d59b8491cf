"""Test support: real databases filled with a synthetic product, a local MLflow store, snapshots."""

from __future__ import annotations

import uuid
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
