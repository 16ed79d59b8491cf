"""The run's work, with its options passed in: the CLI is a thin layer over these functions, and builds
their options from its settings once (`scorer.edge`). Training is `scorer.trainer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import structlog

from lead_errors import SettingsError, StoreError
from models import FeatureCatalog
from models.reasons import Reason, top_reasons
from registry import (
    CHALLENGER_ALIAS,
    DEFAULT_POLICY,
    LoadedModel,
    LoadPolicy,
    Registry,
    ResolvedVersion,
    redact,
)
from scorer.compare import run_auto_promotion
from scorer.contract import Names
from scorer.job import BatchReport, JobOptions, RunSummary, score_users
from scorer.live import LiveCheck, evaluate_matured, live_due
from scorer.run_record import (
    RecordOptions,
    RunRecord,
    baseline_tags,
    describe_run,
    drift_and_tiers,
    run_name,
    run_outcome,
    scoring_tracker,
)
from scorer.shadow import Shadow, load_challenger
from scorer.stop import StopSignal
from scorer.stores import ScoringSource, SqlStore, TrainingSource, Waits
from scorer.stores.base import Selector
from scorer.tracking import MlflowTracker, Tracker

__all__ = [
    "ExplainOptions",
    "Explanation",
    "LiveOptions",
    "ModelSource",
    "RunOptions",
    "StoreOptions",
    "baseline_tags",
    "challenger_for",
    "describe_run",
    "drift_and_tiers",
    "explain_user",
    "live_check",
    "open_store",
    "require_temp_dir",
    "resolve_and_load",
    "run_name",
    "run_outcome",
    "run_scoring",
    "scoring_tracker_for",
    "store_id",
]

log = structlog.get_logger("lead_scorer")


@dataclass(frozen=True, kw_only=True)
class StoreOptions:
    """The store to open: ``supabase_url`` + ``supabase_key`` → REST; ``database_url`` → SQL; not both.

    The URL and the key are secrets: left out of the repr."""

    database_url: str | None = field(default=None, repr=False)
    supabase_url: str | None = None
    supabase_key: str | None = field(default=None, repr=False)
    names: Names = field(default_factory=Names)
    supabase_max_rows: int = 1_000
    supabase_url_budget: int = 6_000
    supabase_timeout_s: float = 30.0
    waits: Waits = field(default_factory=Waits)


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """Where the model comes from: the registry's server and model, a pinned version (else production), and
    what the job agrees to load."""

    tracking_uri: str = field(repr=False)  # may hold a password (http://user:pass@host)
    model_name: str = "lead_scoring_pipeline"
    pin: str | None = None
    policy: LoadPolicy = DEFAULT_POLICY
    #: The version under this alias is shadow-scored beside production (None: no shadow scoring).
    challenger_alias: str | None = CHALLENGER_ALIAS

    def registry(self) -> Registry:
        return Registry(
            tracking_uri=self.tracking_uri,
            model_name=self.model_name,
            challenger_alias=self.challenger_alias or CHALLENGER_ALIAS,
        )


@dataclass(frozen=True, kw_only=True)
class LiveOptions:
    """The daily run's live check (docs/live-performance.md): after scoring, production's newest matured cohort
    when one is due, every ``every_days`` days (0: off, as tests and the benchmark set it)."""

    every_days: int = 7
    #: Degraded: the live AUC's upper bound below the holdout AUC minus this.
    auc_drop: float = 0.05
    experiment: str = "lead-scorer/evaluation"
    #: The check's sample (`scorer.live.sample_rate`): at most ``max_users`` users and ``max_share`` of them,
    #: so its cost stays a bounded share of the run's.
    max_users: int = 10_000
    max_share: float = 0.05
    #: Promote the challenger when it is significantly better on live data (`scorer.compare.run_auto_promotion`).
    auto_promote: bool = False
    #: A live verdict needs at least this many conversions.
    min_conversions: int = 100


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Everything a scoring run (`run_scoring`, `scorer.spark.run_spark`) is told: the store, the model, the
    batch loop's options, and where and how the run is recorded."""

    store: StoreOptions
    model: ModelSource
    job: JobOptions = field(default_factory=JobOptions)
    experiment: str = "lead-scorer/scoring"
    #: Record into this MLflow run (``mlflow run`` sets MLFLOW_RUN_ID) instead of a new one.
    mlflow_run_id: str | None = None
    git_commit: str | None = None
    #: Score tiers: hot at or above ``hot_threshold``, warm at or above ``warm_threshold``.
    hot_threshold: float = 0.5
    warm_threshold: float = 0.2
    live: LiveOptions = field(default_factory=LiveOptions)

    def record(self) -> RecordOptions:
        """What the run's MLflow record is told (`scorer.run_record.RunRecord`)."""
        return RecordOptions(
            job=self.job,
            experiment=self.experiment,
            git_commit=self.git_commit,
            hot=self.hot_threshold,
            warm=self.warm_threshold,
        )


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    """What `explain_user` reads: the store and the model."""

    store: StoreOptions
    model: ModelSource


def run_scoring(
    options: RunOptions,
    *,
    store: ScoringSource | None = None,
    tracker: Tracker | None = None,
    artifact_location: str | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,  # the total to score; None: the store cannot count
    stop: StopSignal | None = None,
    catalog: FeatureCatalog | None = None,
    now: datetime | None = None,
) -> RunSummary:
    """The whole run (docs/architecture.md): check store → resolve and load model → track → score → finish.

    A ``store`` passed in is the caller's, open, and stays open; the run gives back only the run lock it took.
    ``stop``: asked between batches, and it cancels what the store has in flight when the run outlasts its
    grace (`scorer.stop.StopSignal`). ``now``: the run's time (its features' cutoff and every score's time),
    for a test that repeats a run."""
    catalog = catalog or FeatureCatalog()
    job = options.job
    require_temp_dir()
    owned = contextlib.ExitStack()  # what this run opened or took, given back when it is done with it
    if store is None:
        store = owned.enter_context(open_store(options.store))
    if stop is not None:
        stop.on_stop(store.cancel)  # a stop request cancels a statement that hangs
    try:
        # 1. The store, and the run lock.
        store.check(scoring=True)
        if not job.dry_run:
            # One run per model and database: a second one started beside it (a laptop, `mlflow run`, another
            # scheduler) stops here, before it reads, writes or records anything.
            store.lock_run(options.model.model_name)
            owned.callback(store.unlock_run)
        log.info("store_ready", store=store.kind, where=store.describe())
        # 2. The model, and the challenger.
        resolved, model = resolve_and_load(options.model, catalog)
        shadow = challenger_for(options.model, resolved, catalog)
        # 3. One MLflow run per job run; a run left RUNNING by a process that died is closed now. Holding the
        # run lock, every other RUNNING run of this model on this database is dead unless its process is still
        # connected (it lost its lock and stops at its next write); over REST (no lock) only those older than a day.
        now = now or datetime.now(UTC)
        record = RunRecord.open(
            tracker or scoring_tracker_for(options, artifact_location=artifact_location),
            resolved,
            model,
            options=options.record(),
            store_kind=store.kind,
            store_id=store_id(store.describe()),
            store_session=store.session_name,
            now=now,
            challenger=shadow,
            close_orphans=not job.dry_run,
            orphans_before_ms=None if store.kind == "sql" else int((now - timedelta(days=1)).timestamp() * 1000),
            live_sessions=store.live_sessions,
        )
    except BaseException:
        owned.close()  # a run that stops before scoring leaves no connection (or lock) behind
        raise
    try:
        # 4-5. Who is stale (by the catalog's windows and the checkpoint earlier runs of this model left), and
        # the batch loop over them.
        summary = score_users(
            store=store,
            model=model,
            options=job,
            tracker=record.tracker,
            catalog=catalog,
            now=now,
            on_start=on_start,
            on_batch=on_batch,
            should_stop=stop,
            shadow=shadow,
        )
        if shadow is not None and not job.dry_run and not summary.store_lost:
            shadow.compare_population(
                store,
                production=resolved.identity,
                leads_only=summary.leads_only,
                hot=options.hot_threshold,
                warm=options.warm_threshold,
            )
        # The scores are written: an evaluation that fails now costs none of them, only its own figures.
        live = None if job.dry_run or summary.stopped else live_check(store, options, resolved, model, now, catalog)
        promotion = None
        if (
            options.live.auto_promote
            and shadow is not None
            and not (job.dry_run or summary.stopped or summary.store_lost)
        ):
            promotion = run_auto_promotion(
                store,
                registry=options.model.registry(),
                production=model,
                challenger=shadow.model if shadow.active else None,
                now=now,
                catalog=catalog,
                policy=options.model.policy,
                every=options.live.every_days or 7,
                min_conversions=options.live.min_conversions,
                max_users=options.live.max_users,
                max_share=options.live.max_share,
            )
    except BaseException as exc:
        record.fail(exc)
        raise
    finally:
        owned.close()

    # 6. Totals, distribution, drift, tiers, failed users: the run's record ends as a Spark run's does.
    record.finish(
        summary,
        leads_only=summary.leads_only,
        live=live,
        shadow=shadow,
        notes=[promotion.line] if promotion is not None else [],
        metrics=promotion.metrics if promotion is not None else {},
        tags=promotion.tags if promotion is not None else {},
    )
    return summary


def store_id(where: str) -> str:
    """Which database (a hash of its redacted address): runs left RUNNING are closed per store.

    >>> store_id("sqlite:///leads.db")
    'bf206406bf1e'
    """
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def scoring_tracker_for(options: RunOptions, *, artifact_location: str | None = None) -> MlflowTracker:
    """The MLflow record of a scoring run (`lead-scorer run` and `lead-scorer spark run` alike)."""
    return scoring_tracker(
        tracking_uri=options.model.tracking_uri,
        experiment=options.experiment,
        run_id=options.mlflow_run_id,
        artifact_location=artifact_location,
    )


def live_check(
    store: ScoringSource,
    options: RunOptions,
    resolved: ResolvedVersion,
    model: LoadedModel,
    now: datetime,
    catalog: FeatureCatalog,
) -> LiveCheck | None:
    """The run's live check (`scorer.live.evaluate_matured`), never raising: a `LiveCheck` (with
    ``error`` set when it failed) or None when nothing is due or it is off."""
    if options.live.every_days <= 0:
        return None
    try:
        if not live_due(resolved, now=now, every=options.live.every_days):
            return None
        if not isinstance(store, SqlStore):
            return LiveCheck(
                line="Live check skipped: a cohort has matured, but evaluating it reads every event of past days, "
                "which the REST API is not made for; run `lead-scorer evaluate` with DATABASE_URL set to a direct "
                "SQL connection string."
            )
        started = time.perf_counter()
        checked = evaluate_matured(
            store,
            registry=options.model.registry(),
            version=resolved,
            model=model,
            now=now,
            every=options.live.every_days,
            auc_drop=options.live.auc_drop,
            catalog=catalog,
            users=store.count_users(Selector(select="all", leads_only=False)),
            max_users=options.live.max_users,
            max_share=options.live.max_share,
        )
        if checked is None:
            return None
        # What the check added to the run: the figure its 10 % budget is held to (docs/live-performance.md).
        seconds = round(time.perf_counter() - started, 3)
        log.info("live_checked", as_of=f"{checked.as_of}", seconds=seconds, **checked.metrics)
        return replace(checked, metrics=checked.metrics | {"live/seconds": seconds})
    except Exception as exc:  # any failure: the scores are written, the run says what failed
        log.error("live_evaluation_failed", error=redact(f"{type(exc).__name__}: {exc}"))
        return LiveCheck(error=redact(f"{type(exc).__name__}: {exc}")[:300], metrics={"live/failed": 1.0})


def open_store(options: StoreOptions) -> ScoringSource:
    """The store the options select: ``SUPABASE_URL`` + a key → REST; ``DATABASE_URL`` → SQL; not both.
    Not connected yet: ``with open_store(options) as store:`` opens it, and closes it."""
    rest = options.supabase_url is not None or options.supabase_key is not None
    if rest and options.database_url is not None:
        raise SettingsError(
            "both DATABASE_URL and SUPABASE_URL/SUPABASE_SERVICE_ROLE_KEY are set; the job uses one store",
            hint="unset DATABASE_URL to use the Supabase REST API, or unset SUPABASE_URL and the key",
        )
    if rest:
        if options.supabase_url is None or options.supabase_key is None:
            missing = "SUPABASE_URL" if options.supabase_url is None else "SUPABASE_SERVICE_ROLE_KEY"
            raise SettingsError(f"{missing} is not set", hint="the REST store needs SUPABASE_URL and the service key")
        if not options.supabase_url.startswith(("https://", "http://")):
            raise SettingsError("SUPABASE_URL must start with https://", hint="e.g. https://<project>.supabase.co")
        from scorer.stores.rest import RestStore  # supabase's client is imported only when it is used

        return RestStore(
            options.supabase_url,
            key=options.supabase_key,
            names=options.names,
            max_rows=options.supabase_max_rows,
            url_budget=options.supabase_url_budget,
            timeout_s=options.supabase_timeout_s,
            connect_s=options.waits.connect_s,
        )
    if options.database_url is None or not options.database_url.strip():
        raise SettingsError(
            "no data store configured",
            hint="set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or DATABASE_URL (sqlite:///leads.db, postgresql://…)",
        )
    return SqlStore(options.database_url, names=options.names, waits=options.waits)


def open_training_source(options: StoreOptions, *, reader: str = "training", command: str = "train") -> TrainingSource:
    """The store training (or live evaluation: ``reader``, ``command``) reads, which must be SQL: it reads every
    user and event. Not connected yet."""
    store = open_store(options)
    if not isinstance(store, SqlStore):
        store.close()
        raise StoreError(
            f"{reader} reads every event, which the REST API is not made for",
            hint=f"{command} with DATABASE_URL set to a direct connection string (Supabase: Connect → Session "
            "pooler), and SUPABASE_URL unset",
        )
    return store


def require_temp_dir() -> None:
    """The model is downloaded, and the run's artifacts written, through a temporary directory. A read-only root
    with no writable /tmp otherwise surfaced as "FileNotFoundError", blamed on the MLflow server."""
    try:
        with tempfile.TemporaryFile():
            pass
    except OSError as exc:
        raise SettingsError(
            f"no writable temporary directory ({type(exc).__name__}: {exc})",
            hint="mount a writable /tmp (e.g. a tmpfs) or set TMPDIR to a directory the job's user (uid 10001 in "
            "the image) can write",
        ) from exc


def resolve_and_load(source: ModelSource, catalog: FeatureCatalog) -> tuple[ResolvedVersion, LoadedModel]:
    """2. Resolve once, load once; the version is pinned for the whole run."""
    registry = source.registry()
    t0 = time.perf_counter()
    registry.ping()
    resolved = registry.resolve(pin=source.pin)
    resolve_s = time.perf_counter() - t0
    model = registry.load(resolved, policy=source.policy)
    catalog.check(model.input_names)
    log.info(
        "model_loaded",
        model=resolved.name,
        version=resolved.version,
        resolved_by=resolved.how,
        features=len(model.input_names),
        resolve_s=round(resolve_s, 3),
        **{k: round(v, 3) for k, v in model.timings.items()},
    )
    return resolved, model


def challenger_for(source: ModelSource, production: ResolvedVersion, catalog: FeatureCatalog) -> Shadow | None:
    """The challenger this run shadow-scores (None: no alias set, or it is production), loaded as production
    is; one that fails to load comes back holding why, and the run goes on."""
    if not source.challenger_alias:
        return None
    return load_challenger(source.registry(), production=production, policy=source.policy, check_inputs=catalog.check)


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """One user's score from the live data, and why."""

    user_id: Any
    visitor_id: str | None
    model: ResolvedVersion
    score: float
    stored_score: float | None
    stored_model: str | None
    reasons: list[Reason] | None  # None: the model gives no reasons
    features: dict[str, float]


def explain_user(
    options: ExplainOptions, user_id: str, *, store: ScoringSource | None = None, catalog: FeatureCatalog | None = None
) -> Explanation:
    """Score one user now with the production model (nothing is written) and say why."""
    catalog = catalog or FeatureCatalog()
    owned = contextlib.ExitStack()  # closes the store only if this call opened it
    if store is None:
        store = owned.enter_context(open_store(options.store))
    try:
        store.check(scoring=False)
        resolved, model = resolve_and_load(options.model, catalog)
        page = store.find_users([user_id])
        if not len(page):
            names = options.store.names
            raise SettingsError(
                f"no user with {names.user_id} = {user_id!r} in {names.users}",
                hint="give the user's id as stored in the users table",
            )
        as_of = datetime.now(UTC)
        read = store.read_events(page.visitor_ids, since=catalog.since(as_of), as_of=as_of)
    finally:
        owned.close()
    features = catalog.features(read.grain, visitor_ids=page.visitor_ids, as_of=as_of, names=model.input_names)
    score = float(model.predict_scores(features)[0])
    reasons = top_reasons(model.pipeline, features[model.input_names], top=3, catalog=catalog)
    stored = page.scores[0] if page.scores is not None else float("nan")
    return Explanation(
        user_id=page.user_ids[0],
        visitor_id=page.visitor_ids[0],
        model=resolved,
        score=score,
        stored_score=None if np.isnan(stored) else float(stored),
        stored_model=page.models[0] if page.models else None,
        reasons=reasons[0] if reasons is not None else None,
        features={k: float(v) for k, v in features.iloc[0].items()},
    )
