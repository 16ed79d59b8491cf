"""Settings → the library's options, at the edge: the CLI reads `Settings` once and builds, here, the plain
options objects the entry points take (`scorer.app`, `scorer.trainer`, `scorer.spark`). Nothing below this
module reads the environment. The CLI's run is ``run_scoring(run_options(load_settings()))``.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from registry import DEFAULT_HORIZON_DAYS, LoadPolicy, Registry
from scorer.app import ExplainOptions, LiveOptions, ModelSource, RunOptions, StoreOptions
from scorer.evaluation import EvaluateOptions
from scorer.job import JobOptions, batch_cap
from scorer.promotion import CompareOptions
from scorer.settings import Settings
from scorer.stores import Waits
from scorer.trainer import TOP_EVENT_TYPES, ImportOptions, TrainOptions

__all__ = [
    "actor",
    "compare_options",
    "evaluate_options",
    "explain_options",
    "import_options",
    "job_options",
    "load_policy",
    "migrate_options",
    "model_source",
    "registry",
    "run_options",
    "store_options",
    "train_options",
]

log = structlog.get_logger("lead_scorer")


def actor() -> str:
    """Who a promotion or rollback is recorded as (``promoted_by``) when ``--actor`` is not given: the user MLflow
    itself records on a run (``mlflow.user``: the MLflow user name, else the login name of the process's uid),
    so a version's "promoted by" and its run's user agree ("root", not "uid 0"). A uid with no name (a container
    run as a bare number) is named by its Render service, else by the number."""
    from mlflow.utils.credentials import read_mlflow_creds

    name = read_mlflow_creds().username
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name: 3.11 raises KeyError, 3.13 OSError
        return os.environ.get("RENDER_SERVICE_NAME") or f"uid {os.getuid()}"


def store_options(settings: Settings) -> StoreOptions:
    return StoreOptions(
        database_url=settings.database_url.get_secret_value() if settings.database_url is not None else None,
        supabase_url=settings.supabase_url,
        supabase_key=settings.supabase_key.get_secret_value() if settings.supabase_key is not None else None,
        names=settings.names(),
        supabase_max_rows=settings.supabase_max_rows,
        supabase_url_budget=settings.supabase_url_budget,
        supabase_timeout_s=settings.supabase_timeout_s,
        waits=Waits(
            connect_s=settings.db_connect_timeout_s,
            statement_s=settings.db_statement_timeout_s,
            lock_s=settings.db_lock_timeout_s,
        ),
    )


def migrate_options(settings: Settings) -> StoreOptions:
    """`lead-scorer db migrate`'s (and `db sql`'s names): the database, which it must have (DATABASE_URL)."""
    return replace(store_options(settings), database_url=settings.require_database())


def load_policy(settings: Settings) -> LoadPolicy:
    """The registry's load policy: the default trusted types plus LEAD_SCORER_SKOPS_TRUSTED_TYPES."""
    return LoadPolicy.trusting(settings.skops_trusted_types, allow_pickle=settings.allow_pickle)


def model_source(settings: Settings) -> ModelSource:
    """The registry (MLFLOW_TRACKING_URI, required), the model, a pin, and the load policy."""
    return ModelSource(
        tracking_uri=settings.require_tracking(),
        model_name=settings.model_name,
        pin=settings.model_version,
        policy=load_policy(settings),
        challenger_alias=settings.challenger_alias,
    )


def registry(settings: Settings) -> Registry:
    return model_source(settings).registry()


def job_options(settings: Settings) -> JobOptions:
    """The batch loop's options; the batch size capped by the memory the job may use (a warning says so)."""
    cap = batch_cap(settings.memory_mb)
    if settings.batch_size > cap:
        log.warning(
            "batch_size_capped",
            asked=settings.batch_size,
            used=cap,
            memory_mb=settings.memory_mb,
            hint="raise LEAD_SCORER_MEMORY_MB on a plan with more memory",
        )
    return JobOptions(
        select=settings.select,
        batch_size=min(settings.batch_size, cap),
        limit=settings.limit,
        dry_run=settings.dry_run,
        tolerance=settings.score_tolerance,
        leads_only=settings.population == "leads",
        history=settings.history,
    )


def run_options(settings: Settings) -> RunOptions:
    """A scoring run's options (`lead-scorer run`, `lead-scorer spark run`)."""
    model = model_source(settings)  # first: no tracking server is the first thing a run reports
    return RunOptions(
        store=store_options(settings),
        model=model,
        job=job_options(settings),
        experiment=settings.scoring_experiment,
        mlflow_run_id=settings.mlflow_run_id,
        git_commit=settings.git_commit,
        hot_threshold=settings.hot_threshold,
        warm_threshold=settings.warm_threshold,
        live=LiveOptions(
            every_days=settings.live_every_days,
            auc_drop=settings.live_auc_drop,
            experiment=settings.evaluation_experiment,
            max_users=settings.live_max_users,
            max_share=settings.live_max_share,
            auto_promote=settings.auto_promote,
            min_conversions=settings.min_conversions,
        ),
    )


def explain_options(settings: Settings) -> ExplainOptions:
    model = model_source(settings)
    return ExplainOptions(store=store_options(settings), model=model)


def train_options(
    settings: Settings,
    *,
    promoted_by: str | None = None,
    as_of: datetime | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    top_event_types: int = TOP_EVENT_TYPES,
    promote: bool = False,
    challenger: bool = False,
    seed: int = 0,
) -> TrainOptions:
    """Training's options: the settings, and one argument per flag of `lead-scorer train` (a date without a
    zone is UTC); a promotion is recorded as ``promoted_by``, else as `actor()` says. ``lead-scorer train
    --horizon-days 14 --challenger`` is ``train_options(settings, horizon_days=14, challenger=True)``."""
    model = model_source(settings)
    return TrainOptions(
        store=store_options(settings),
        model=model,
        actor=promoted_by or actor(),
        experiment=settings.training_experiment,
        batch_size=settings.batch_size,
        as_of=_utc(as_of),
        horizon_days=horizon_days,
        top_event_types=top_event_types,
        promote=promote,
        challenger=challenger,
        seed=seed,
    )


def import_options(
    settings: Settings, *, trust: bool = False, as_of: datetime | None = None, horizon_days: int | None = None
) -> ImportOptions:
    """`lead-scorer registry import-joblib`'s options: the model source, the training experiment, and one
    argument per flag (a date without a zone is UTC)."""
    return ImportOptions(
        model=model_source(settings),
        experiment=settings.training_experiment,
        trust=trust,
        as_of=_utc(as_of),
        horizon_days=horizon_days,
    )


def _utc(day: datetime | None) -> datetime | None:
    """A date given on the command line (no zone) is a UTC date; one with a zone is kept."""
    return day.replace(tzinfo=UTC) if day is not None and day.tzinfo is None else day


def evaluate_options(settings: Settings) -> EvaluateOptions:
    """`lead-scorer evaluate`'s options: the SQL store, the registry, the evaluation experiment."""
    model = model_source(settings)
    return EvaluateOptions(
        store=store_options(settings),
        model=model,
        experiment=settings.evaluation_experiment,
        batch_size=max(settings.batch_size, 5_000),
    )


def compare_options(settings: Settings) -> CompareOptions:
    """`lead-scorer registry compare`'s options, and the live check `registry promote` runs."""
    return CompareOptions(
        store=store_options(settings),
        model=model_source(settings),
        scoring_experiment=settings.scoring_experiment,
        min_conversions=settings.min_conversions,
        batch_size=max(settings.batch_size, 5_000),
    )
