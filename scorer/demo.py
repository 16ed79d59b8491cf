"""The one-command demo: synthetic product data in SQLite, a local MLflow store, a trained and
promoted model, and a scoring run. Also the loader the tests use to fill a real database."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from models import SyntheticData, generate
from scorer.contract import Names
from scorer.schema import migrate

if TYPE_CHECKING:
    from scorer.app import RunOptions
    from scorer.trainer import TrainOptions

__all__ = ["DemoPaths", "create_tables", "demo_options", "load_data"]

#: The demo's product: events over ten months, conversions over the last eight; its model is trained as of
#: 120 days ago with a 30-day horizon, so weekly cohorts from 90 to 30 days ago are honest and matured.
DEMO_HISTORY_DAYS = 300
DEMO_CONVERSION_DAYS = 240
DEMO_TRAINED_DAYS_AGO = 120


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def leads_db(self) -> Path:
        return self.root / "leads.db"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.leads_db}"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    def reset(self) -> None:
        for p in (self.leads_db, self.mlflow_db):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.artifacts, ignore_errors=True)


def create_tables(
    engine: sa.Engine, *, names: Names | None = None, id_type: Any = sa.BigInteger, with_scores: bool = True
) -> tuple[sa.Table, sa.Table]:
    """A product's own ``users`` (with NOT NULL columns the job never touches) and ``events``."""
    n = names or Names()
    md = sa.MetaData(schema=n.schema if engine.dialect.name == "postgresql" else None)
    users = sa.Table(
        n.users,
        md,
        sa.Column(n.user_id, id_type, primary_key=True, autoincrement=False),
        sa.Column(n.visitor_id, sa.Text),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("signed_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(n.converted_at, sa.DateTime(timezone=True)),
    )
    events = sa.Table(
        n.events,
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column(n.event_visitor_id, sa.Text),
        sa.Column(n.event_type, sa.Text),
        sa.Column(n.created_at, sa.DateTime(timezone=True)),
    )
    md.create_all(engine)
    if with_scores:
        migrate(engine, names=n)
    return users, events


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()}
        for row in out.to_dict("records")
    ]


def load_data(
    engine: sa.Engine, data: SyntheticData, *, names: Names | None = None, user_ids: list[Any] | None = None
) -> None:
    """Insert ``data`` (optionally with other ``user_ids``) into tables made by `create_tables`."""
    n = names or Names()
    md = sa.MetaData(schema=n.schema if engine.dialect.name == "postgresql" else None)
    users = sa.Table(n.users, md, autoload_with=engine)
    events = sa.Table(n.events, md, autoload_with=engine)
    u = data.users.rename(columns={"user_id": n.user_id, "visitor_id": n.visitor_id, "converted_at": n.converted_at})
    if user_ids is not None:
        u[n.user_id] = user_ids
    e = data.events.rename(
        columns={"visitor_id": n.event_visitor_id, "event_type": n.event_type, "created_at": n.created_at}
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(users), _records(u))
        rows = _records(e)
        for i in range(0, len(rows), 50_000):
            conn.execute(sa.insert(events), rows[i : i + 50_000])


def build_demo(paths: DemoPaths, *, users: int, seed: int = 42) -> dict[str, int]:
    """Generate and load the synthetic product into ``paths.leads_db``."""
    paths.root.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(paths.database_url)
    try:
        create_tables(engine)
        # Conversions over eight months, so a version trained months ago has honest cohorts to be judged on.
        data = generate(
            users=users,
            seed=seed,
            now=datetime.now(UTC) - timedelta(minutes=1),
            history_days=DEMO_HISTORY_DAYS,
            conversion_days=DEMO_CONVERSION_DAYS,
        )
        load_data(engine, data)
    finally:
        engine.dispose()
    return {"users": len(data.users), "events": len(data.events)}


def _score_table(paths: DemoPaths) -> tuple[list[int], list[tuple[Any, ...]], int]:
    """Open leads per score decile, the top ten open leads with their reasons, and how many are unscored."""
    engine = sa.create_engine(paths.database_url)
    leads = "converted_at IS NULL"
    try:
        with engine.connect() as conn:
            counts = [
                int(
                    conn.execute(
                        sa.text(f"SELECT count(*) FROM users WHERE {leads} AND lead_score >= :lo AND lead_score < :hi"),
                        {"lo": i / 10, "hi": (i + 1) / 10 if i < 9 else 1.01},
                    ).scalar_one()
                )
                for i in range(10)
            ]
            top = conn.execute(
                sa.text(
                    "SELECT user_id, email, lead_score, lead_score_model_version, lead_score_reasons FROM users "
                    f"WHERE {leads} AND lead_score IS NOT NULL ORDER BY lead_score DESC, user_id LIMIT 10"
                )
            ).all()
            unscored = int(
                conn.execute(sa.text(f"SELECT count(*) FROM users WHERE {leads} AND lead_score IS NULL")).scalar_one()
            )
    finally:
        engine.dispose()
    return counts, [tuple(r) for r in top], unscored


def _reasons_text(raw: str | None) -> str:
    if not raw:
        return ""
    return "; ".join(r["reason"] for r in json.loads(raw))


def demo_options(paths: DemoPaths, *, promoted_by: str) -> tuple[RunOptions, TrainOptions]:
    """The demo's run and training options: its own SQLite database and local MLflow store, and the defaults
    for everything else. Built from ``paths`` alone, not from the environment: an exported DATABASE_URL,
    SUPABASE_URL or MLFLOW_TRACKING_URI (a shell set up for the real job) must not send the demo there."""
    from scorer.app import ModelSource, RunOptions, StoreOptions
    from scorer.settings import openable_tracking_uri
    from scorer.trainer import TrainOptions

    # The demo keeps MLflow in a local store: refused, by name, where only a tracking client is installed.
    model = ModelSource(tracking_uri=openable_tracking_uri(paths.tracking_uri))
    store = StoreOptions(database_url=paths.database_url)
    return RunOptions(store=store, model=model), TrainOptions(store=store, model=model, actor=promoted_by)


def _print_live(options: RunOptions, artifacts: str) -> None:
    """The production version's live figures on its honest weekly cohorts, beside its holdout's."""
    import typer

    from scorer.evaluation import EvaluateOptions, evaluate_version

    out = evaluate_version(EvaluateOptions(store=options.store, model=options.model), artifact_location=artifacts)
    pooled, days = out.pooled, [c["as_of"] for c in out.cohorts]
    typer.echo("")
    typer.echo(
        f"live performance of v{out.version.version} on {len(days)} weekly cohorts of open leads ({days[0]} to "
        f"{days[-1]}), each judged on who converted in the {out.window.horizon_days} days after:"
    )
    for c in out.cohorts:
        ci = c["roc_auc_ci"]
        auc = "-" if c["roc_auc"] is None else f"{c['roc_auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        typer.echo(f"  {c['as_of']}  {c['n']:>6,} leads  {c['positives']:>4,} converted  ROC AUC {auc}")
    ci = pooled["roc_auc_ci"]
    live = (
        "-"
        if pooled["roc_auc"] is None
        else f"{pooled['roc_auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    )
    holdout = "-" if out.holdout_auc is None else f"{out.holdout_auc:.3f}"
    typer.echo(f"  pooled ROC AUC {live} (DeLong 95 %) vs {holdout} on the training holdout")
    typer.echo(
        f"  again, with the table or --json: DATABASE_URL={options.store.database_url} "
        f"MLFLOW_TRACKING_URI={options.model.tracking_uri} lead-scorer evaluate"
    )


def run_demo(root: Path, *, promoted_by: str, users: int = 5_000, reset: bool = False, seed: int = 42) -> int:
    """Build (or reuse) the demo in ``root``, train and promote (in ``promoted_by``'s name) if no model
    exists, run the job, report."""
    import sys

    import typer

    from scorer.app import run_scoring
    from scorer.tracking import ui_url
    from scorer.trainer import train_model

    paths = DemoPaths(root)
    options, training = demo_options(paths, promoted_by=promoted_by)
    if reset:
        paths.reset()
    if paths.leads_db.exists():
        typer.echo(f"reusing the demo data in {paths.leads_db} (--reset starts over)")
    else:
        made = build_demo(paths, users=users, seed=seed)
        typer.echo(f"generated {made['users']:,} users and {made['events']:,} events into {paths.leads_db}")
    artifacts = paths.artifacts.as_uri()
    registry = options.model.registry()
    if not registry.versions():
        as_of = datetime.now(UTC) - timedelta(days=DEMO_TRAINED_DAYS_AGO)
        out = train_model(replace(training, as_of=as_of, promote=True), artifact_location=artifacts)
        m = out.result.metrics
        typer.echo(
            f"trained {out.version.name} v{out.version.version} on {out.users:,} users as of {as_of:%Y-%m-%d} "
            f"(holdout ROC AUC {m['roc_auc']:.3f}, top-decile lift {m['top_decile_lift']:.2f}) and promoted it"
        )
    summary = run_scoring(options, artifact_location=artifacts)
    counts, top, unscored = _score_table(paths)
    typer.echo("")
    typer.echo(
        f"selected {summary.users_selected:,} open leads (new, changed since their last score, or a new day), "
        f"rescored {summary.users_scored:,} with model v{summary.model_version} in {summary.batches} batch(es), "
        f"{summary.duration_s:.1f}s: {summary.users_changed:,} scores written, {summary.users_unchanged:,} unchanged "
        f"({summary.events_read:,} events read; {sum(summary.dropped.values())} bad events dropped); "
        f"{unscored} open leads still unscored"
    )
    if summary.users_selected == 0:
        typer.echo("nothing to do: no open lead has new events or a new day since its score")
    typer.echo("score distribution (open leads):")
    peak = max(counts) or 1
    for i, c in enumerate(counts):
        typer.echo(f"  {i / 10:.1f}-{(i + 1) / 10:.1f} {'#' * round(40 * c / peak):<40} {c:,}")
    typer.echo("top open leads, and why:")
    for uid, email, score, version, reasons in top:
        typer.echo(f"  user {uid:<6} {email:<24} {score:.3f}  (model v{str(version).split('/')[0]})")
        if reasons:
            typer.echo(f"      {_reasons_text(reasons)}")
    _print_live(options, artifacts)
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    experiment = registry.client.get_experiment_by_name(options.experiment)
    typer.echo("")
    typer.echo("see the scoring runs in the MLflow UI: start it, then open the address below")
    typer.echo(f"  {mlflow_bin} ui --backend-store-uri {paths.tracking_uri} --port 5000")
    if experiment is not None:
        typer.echo(f"  {ui_url('http://127.0.0.1:5000', experiment_id=experiment.experiment_id)}")
    return summary.exit_code
