"""The run's work, with its options passed in: the CLI is a thin layer over these functions, and builds
their options from its settings once (`scorer.edge`). Training is `scorer.trainer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import structlog

from lead_errors import ServiceUnavailable, SettingsError, StoreError
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
from scorer.job import BatchReport, JobOptions, RunSummary, score_users, selector_for
from scorer.live import LiveCheck, evaluate_matured, live_due
from scorer.shadow import Shadow, load_challenger
from scorer.stores import ScoringSource, SqlStore, TrainingSource, Waits
from scorer.stores.base import Selector
from scorer.tracking import TAG_SCORE_SHARES, MlflowTracker, Status, Tracker, TrackingError

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
    "open_run",
    "open_store",
    "require_temp_dir",
    "resolve_and_load",
    "run_name",
    "run_outcome",
    "run_scoring",
    "scoring_tracker",
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
    #: Above this many users the check evaluates a systematic sample of about this many (its cost stays bounded).
    max_users: int = 10_000
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
    should_stop: Callable[[], bool] | None = None,
    catalog: FeatureCatalog | None = None,
    now: datetime | None = None,
) -> RunSummary:
    """The whole run (docs/architecture.md): check store → resolve and load model → track → score.

    A ``store`` passed in is the caller's, open, and stays open; the run gives back only the run lock it took.
    ``now``: the run's time (its features' cutoff and every score's time), for a test that repeats a run."""
    catalog = catalog or FeatureCatalog()
    job = options.job
    require_temp_dir()
    owned = contextlib.ExitStack()  # what this run opened or took, given back when it is done with it
    if store is None:
        store = owned.enter_context(open_store(options.store))
    if should_stop is not None and hasattr(should_stop, "on_stop"):
        should_stop.on_stop(store.cancel)  # a stop request cancels a statement that hangs
    try:
        store.check(scoring=True)
        if not job.dry_run:
            # One run per model and database: a second one started beside it (a laptop, `mlflow run`, another
            # scheduler) stops here, before it reads, writes or records anything.
            store.lock_run(options.model.model_name)
            owned.callback(store.unlock_run)
        log.info("store_ready", store=store.kind, where=store.describe())
        resolved, model = resolve_and_load(options.model, catalog)
        shadow = challenger_for(options.model, resolved, catalog)
        # 3. One MLflow run per job run.
        tracker = tracker or scoring_tracker(options, artifact_location=artifact_location)
        now = now or datetime.now(UTC)
        store_id = hashlib.sha256(store.describe().encode()).hexdigest()[:12]
        open_run(
            tracker,
            options,
            resolved,
            model,
            store_kind=store.kind,
            store_id=store_id,
            now=now,
            store_session=store.session_name,
            challenger=shadow,
        )
        # A run left RUNNING by a process that died is closed now. Holding the run lock, every other RUNNING
        # run of this model on this database is dead unless its process is still connected (it lost its lock
        # and stops at its next write); over REST only those older than a day.
        day_ago = None if store.kind == "sql" else int((now - timedelta(days=1)).timestamp() * 1000)
        if not job.dry_run:
            tracker.close_orphans(
                tags={"model_name": resolved.name, "store_id": store_id, "dry_run": "false"},
                started_before_ms=day_ago,
                # A run whose lock session died (terminated, a restart) may still be alive: not an orphan.
                live_sessions=store.live_sessions(),
            )
    except BaseException:
        owned.close()  # a run that stops before scoring leaves no connection (or lock) behind
        raise
    try:
        # 4. Who is stale, by the catalog's windows and the checkpoint earlier runs of this model left.
        selector = selector_for(store, options=job, model=resolved.identity, catalog=catalog, as_of=now)
        if on_start is not None:
            on_start(store.count_users(selector))
        summary = score_users(
            store=store,
            model=model,
            options=job,
            tracker=tracker,
            catalog=catalog,
            now=now,
            on_batch=on_batch,
            should_stop=should_stop,
            selector=selector,
            shadow=shadow,
        )
        if shadow is not None and not job.dry_run and not summary.store_lost:
            shadow.compare_population(
                store,
                production=resolved.identity,
                leads_only=selector.leads_only,
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
            )
    except BaseException as exc:
        with contextlib.suppress(TrackingError):
            tracker.finish(
                metrics={},
                artifacts={},
                status="FAILED",
                run_name=run_name(resolved.version, now, dry_run=job.dry_run, outcome=f"FAILED: {type(exc).__name__}"),
            )
        raise
    finally:
        owned.close()

    # 6. Totals, distribution, drift, tiers.
    failed = summary.failed_batches or summary.users_failed or summary.store_lost
    status: Status = "KILLED" if summary.stopped else ("FAILED" if failed else "FINISHED")
    metrics = summary.metrics() | drift_and_tiers(
        summary, resolved, tracker, hot=options.hot_threshold, warm=options.warm_threshold
    )
    if live is not None:
        metrics |= live.metrics
    artifacts: dict[str, Any] = {
        "score_histogram.json": summary.distribution.coarse_histogram() | {"count": summary.distribution.count},
        "run_summary.json": metrics | {"dropped": summary.dropped, "model_version": resolved.version},
    }
    dist = summary.distribution
    who = "open leads" if job.leads_only else "users"
    if summary.failed_users:
        # Who failed and why (the database's message, never the row's data), for the operator to look at.
        artifacts["failed_users.json"] = summary.failed_users[:10_000]
    artifacts["score_histogram.svg"] = dist.histogram_svg(
        title=f"model v{resolved.version}: {dist.count:,} {who} ({summary.users_changed:,} written in this run)",
        marks={"warm": options.warm_threshold, "hot": options.hot_threshold},
    )
    log.info("run_finished", status=status, **{k: round(v, 4) for k, v in metrics.items()})
    note = describe_run(summary, metrics, resolved, leads_only=job.leads_only, status=status)
    if shadow is not None:
        # After the description's figures: the challenger's own are not the run's totals.
        challenger = shadow.metrics(hot=options.hot_threshold, warm=options.warm_threshold)
        metrics |= challenger
        artifacts |= shadow.artifacts()
        note += "\n\n" + shadow.describe(challenger)
    if live is not None:
        note += "\n\n" + (live.line or f"**The live evaluation failed** ({live.error}); the scores are written.")
    if promotion is not None:
        metrics |= promotion.metrics
        note += "\n\n" + promotion.line
    name = run_name(resolved.version, now, dry_run=job.dry_run, outcome=run_outcome(summary, status=status))
    try:
        tracker.finish(
            metrics=metrics,
            artifacts=artifacts,
            status=status,
            note=note,
            run_name=name,
            tags=baseline_tags(summary) | (promotion.tags if promotion is not None else {}),
        )
    except TrackingError as exc:
        # The scores are written; only the record is lost. The run_finished line above is the record.
        summary.tracking_lost = True
        log.error("run_record_lost", error=str(exc), hint="the run_finished log line holds the run's summary")
    return summary


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
        return evaluate_matured(
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
        )
    except Exception as exc:  # any failure: the scores are written, the run says what failed
        log.error("live_evaluation_failed", error=redact(f"{type(exc).__name__}: {exc}"))
        return LiveCheck(error=redact(f"{type(exc).__name__}: {exc}")[:300], metrics={"live/failed": 1.0})


def scoring_tracker(options: RunOptions, *, artifact_location: str | None = None) -> MlflowTracker:
    """The MLflow record of a scoring run (`lead-scorer run` and `lead-scorer spark run` alike)."""
    return MlflowTracker(
        tracking_uri=options.model.tracking_uri,
        experiment=options.experiment,
        artifact_location=artifact_location,
        run_id=options.mlflow_run_id,
        description="Scoring runs of lead-scorer: one per job run (the daily cron job, or `lead-scorer run`). "
        "Each run's name says when it started and what it did; its description says what it rescored and "
        "wrote, with which model version; its metrics hold the totals first, per-batch figures under batch/.",
    )


def describe_run(
    summary: RunSummary, metrics: dict[str, float], resolved: ResolvedVersion, *, leads_only: bool, status: str
) -> str:
    """The run's description (MLflow's run note, Markdown): what happened in a line a person reads, a link to
    the model version, and what to do when something is off.
    """
    who = "open leads" if leads_only else "users"
    dist = summary.distribution
    model = f"[{resolved.name} v{resolved.version}](#/models/{resolved.name}/versions/{resolved.version})"
    if summary.users_selected:
        head = (
            f"Rescored {summary.users_scored:,} {who} with {model} in {seconds(summary.duration_s)}: "
            f"{_written(summary, resolved.version)}"
        )
    else:
        head = f"Nothing to do: no {who[:-1]} changed since its last score ({model})"
    if dist.count:
        hot = round(metrics.get("tier_hot_share", 0.0) * dist.count)
        warm = round(metrics.get("tier_warm_share", 0.0) * dist.count)
        head += f"; of {dist.count:,} {who}: {hot:,} hot, {warm:,} warm"
    psi = metrics.get("score_psi_reference")
    if psi is not None:
        head += f"; drift vs training {psi:.2f}"
    lines = [head + "."]
    if status == "KILLED":
        lines.append("**Stopped** (SIGTERM/SIGINT) after a finished batch: the next run continues.")
    if summary.store_lost:
        lines.append(f"**The database was lost mid-run** ({summary.store_lost}): check it; the next run continues.")
    if summary.failed_batches:
        lines.append(f"**{summary.failed_batches} batch(es) failed** for a passing reason: the next run retries them.")
    if summary.failed_users:
        lines.append(
            f"**{len(summary.failed_users)} user(s) failed** on their own rows: see `failed_users.json` in the "
            "artifacts (id and the database's message)."
        )
    if psi is not None and psi > 0.2:
        lines.append(
            "**Drift above 0.2**: today's leads score unlike the training holdout. Check the event data, or train "
            "a new version (`lead-scorer train`) and compare."
        )
    return "\n\n".join(lines)


def seconds(value: float) -> str:
    """A duration as a person reads it: ``0.44 s`` and ``3.2 s`` rather than "0 s", whole seconds from 10 on.

    >>> seconds(0.44), seconds(3.21), seconds(1234.5)
    ('0.44 s', '3.2 s', '1,234 s')
    """
    if value < 1:
        return f"{value:.2f} s"
    if value < 10:
        return f"{value:.1f} s"
    return f"{value:,.0f} s"


def _written(summary: RunSummary, version: str) -> str:
    """What the run wrote, in words that say why: a score that moved, or one rewritten only to record that
    another model version (which scores the same) now stands behind it."""
    n, moved = summary.users_changed, summary.users_moved
    if not n:
        return "none written, no score moved"
    if moved == n:
        return f"{n:,} written (new or moved)"
    return f"{n:,} written ({n - moved:,} rewritten for v{version}, {f'{moved:,}' if moved else 'none'} moved)"


def run_outcome(summary: RunSummary, *, status: str) -> str:
    """The end of a run's name: what happened, in the few words the runs table has room for.

    >>> from scorer.job import RunSummary
    >>> run_outcome(RunSummary(model_version="2", users_selected=3908, users_changed=3908), status="FINISHED")
    '3,908 written'
    >>> run_outcome(RunSummary(model_version="2", users_failed=2), status="FAILED")
    'FAILED 2 users'
    """
    if summary.users_failed:
        return f"FAILED {summary.users_failed:,} user{'s' if summary.users_failed != 1 else ''}"
    if summary.store_lost:
        return f"FAILED: database lost · {summary.users_changed:,} written"
    if status == "KILLED":
        return f"stopped · {summary.users_changed:,} written"
    if not summary.users_selected:
        return "nothing to do"
    return f"{summary.users_changed:,} written"


def run_name(version: str, started: datetime, *, outcome: str = "running", dry_run: bool = False) -> str:
    """A scoring run's name: the version, the second it started (two runs in one minute still differ) and what
    happened, which the run is renamed to when it ends.

    >>> run_name("2", datetime(2026, 12, 6, 0, 6, 26, tzinfo=UTC), outcome="3,908 written")
    'score v2 · 2026-12-06 00:06:26 UTC · 3,908 written'
    """
    return f"score v{version} · {started:%Y-%m-%d %H:%M:%S} UTC" + (" · dry run" if dry_run else "") + f" · {outcome}"


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


def open_run(
    tracker: Tracker,
    options: RunOptions,
    resolved: ResolvedVersion,
    model: LoadedModel,
    *,
    store_kind: str,
    store_id: str,
    now: datetime,
    challenger: Shadow | None = None,
    store_session: str | None = None,
) -> None:
    """The run's MLflow record, before anything is written: no record, no scoring."""
    job = options.job
    tags = {
        "model_name": resolved.name,
        "model_version": resolved.version,
        "model_identity": resolved.identity,
        "model_resolved_by": resolved.how,
        "model_id": resolved.model_id or "",
        "model_run_id": resolved.run_id or "",
        "store": store_kind,
        "store_id": store_id,  # which database (a hash of its redacted address): orphans are closed per store
        "select": job.select,
        "dry_run": str(job.dry_run).lower(),
    }
    if options.git_commit:
        tags["git_commit"] = options.git_commit
    if challenger is not None and challenger.resolved is not None:
        tags["challenger_version"] = challenger.resolved.version
        tags["challenger_identity"] = challenger.identity
    if store_session:
        tags["store_session"] = store_session  # whether its process is alive (`Tracker.close_orphans`)
    try:
        tracker.start(
            # Renamed with the run's outcome when it ends (`run_name`).
            run_name=run_name(resolved.version, now, dry_run=job.dry_run),
            tags=tags,
            params={
                k: _as_typed(v)
                for k, v in {
                    "batch_size": job.batch_size,
                    "select": job.select,
                    "limit": job.limit,
                    "dry_run": job.dry_run,
                    "feature_count": len(model.input_names),
                    "score_tolerance": job.tolerance,
                    "population": "leads" if job.leads_only else "everyone",
                    "history": job.history,
                }.items()
            },
            model_id=resolved.model_id,
            # The totals' keys, logged first so the run page lists them above the per-batch figures.
            totals=[*RunSummary(model_version=resolved.version).metrics(), *_TIERS]
            + (["score_psi_reference"] if resolved.reference_deciles() else []),
        )
    except Exception as exc:
        raise ServiceUnavailable(
            f"could not open the MLflow run: {type(exc).__name__}: {redact(str(exc)).splitlines()[0][:300]}",
            hint="check the MLflow server, and that MLFLOW_TRACKING_USERNAME may create runs in "
            f"the experiment {options.experiment!r}",
        ) from exc


def _as_typed(value: Any) -> str:
    """A parameter as a person types it: ``false`` not ``False``, empty for unset (not ``None``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_TIERS = ("tier_hot_share", "tier_warm_share", "tier_cold_share")


def baseline_tags(summary: RunSummary) -> dict[str, str]:
    """The run's tag the next run's drift compares with: the share of its population through each of its
    deciles, at the deciles as its metrics hold them (4 decimals), counted on the same histogram bins."""
    stats = summary.distribution
    if not stats.count:
        return {}
    edges = [round(stats.quantile(p / 100), 4) for p in range(10, 100, 10)]
    return {TAG_SCORE_SHARES: json.dumps([round(x, 6) for x in stats.shares_through(edges)])}


def drift_and_tiers(
    summary: RunSummary, resolved: ResolvedVersion, tracker: Tracker, *, hot: float, warm: float
) -> dict[str, float]:
    """PSI against the training holdout and the previous run; share of users per tier (``hot`` and ``warm``:
    the tiers' lower bounds)."""
    stats = summary.distribution
    hot_share = stats.share_at_least(hot)
    warm_share = stats.share_at_least(warm) - hot_share
    out = dict(zip(_TIERS, (hot_share, warm_share, (1.0 - hot_share - warm_share) if stats.count else 0), strict=True))
    reference = resolved.reference_deciles()
    if reference and stats.count:
        out["score_psi_reference"] = stats.psi(reference, resolved.reference_shares())
    previous = tracker.previous_baseline()
    if previous and stats.count:
        # Against what the previous run's population really held through its deciles (`baseline_tags`): the
        # same scores read 0, where nominal 10 % per decile read 0.04 to 0.12 for a population that did not move.
        out["score_psi_previous"] = stats.psi(previous.deciles, previous.shares)
    # Shares and indices to 4 decimals: 0.0808, not 0.08080000000000001; a PSI of 1e-30 is 0.
    return {k: round(v, 4) for k, v in out.items()}


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
