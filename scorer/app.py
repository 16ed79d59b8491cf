"""The commands' work, with settings passed in: the CLI is a thin layer over these functions.

>>> summary = run_scoring(load_settings(), progress=None)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog

from models import FeatureCatalog, TrainResult, UnknownFeatureError, day_number, fit_and_evaluate
from models.reasons import Reason, top_reasons
from registry import (
    DEFAULT_TRUSTED_TYPES,
    TAG_EVENT_TYPES,
    TAG_REFERENCE,
    TAG_REFERENCE_SHARES,
    TAG_TRUSTED_TYPES,
    LoadedModel,
    NoProductionVersion,
    PromotionRefused,
    Registry,
    RegistryError,
    RegistryUnavailable,
    ResolvedVersion,
    redact,
)
from scorer.errors import ModelError, ServiceUnavailable, SettingsError, StoreError
from scorer.job import BatchReport, JobOptions, RunSummary, batch_cap, score_users, selector_for
from scorer.settings import Settings
from scorer.stats import ScoreStats
from scorer.stores import ScoringSource, SqlStore, TrainingSource, Waits
from scorer.tracking import MlflowTracker, Tracker, TrackingError

__all__ = ["Explanation", "TrainOutcome", "explain_user", "import_joblib", "job_options", "run_scoring", "train_model"]

log = structlog.get_logger("lead_scorer")


def _registry(settings: Settings) -> Registry:
    return Registry(tracking_uri=settings.require_tracking(), model_name=settings.model_name)


def run_scoring(
    settings: Settings,
    *,
    store: ScoringSource | None = None,
    tracker: Tracker | None = None,
    artifact_location: str | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    catalog: FeatureCatalog | None = None,
) -> RunSummary:
    """The whole run (docs/architecture.md): check store → resolve and load model → track → score.

    A ``store`` passed in is the caller's, open, and stays open; the run gives back only the run lock it took."""
    catalog = catalog or FeatureCatalog()
    tracking_uri = settings.require_tracking()
    _require_temp_dir()
    owned = contextlib.ExitStack()  # what this run opened or took, given back when it is done with it
    if store is None:
        store = owned.enter_context(open_store(settings))
    if should_stop is not None and hasattr(should_stop, "on_stop"):
        should_stop.on_stop(store.cancel)  # a stop request cancels a statement that hangs
    try:
        store.check(scoring=True)
        if not settings.dry_run:
            # One run per model and database: a second one started beside it (a laptop, `mlflow run`, another
            # scheduler) stops here, before it reads, writes or records anything.
            store.lock_run(settings.model_name)
            owned.callback(store.unlock_run)
        log.info("store_ready", store=store.kind, where=store.describe())
        resolved, model = _resolve_and_load(settings, catalog)
        # 3. One MLflow run per job run.
        tracker = tracker or scoring_tracker(settings, tracking_uri=tracking_uri, artifact_location=artifact_location)
        now = datetime.now(UTC)
        store_id = hashlib.sha256(store.describe().encode()).hexdigest()[:12]
        _open_run(tracker, settings, resolved, model, store_kind=store.kind, store_id=store_id, now=now)
        # A run left RUNNING by a process that died is closed now. Holding the run lock, every other RUNNING
        # run of this model on this database is dead; over REST (no lock) only those older than a day.
        day_ago = None if store.kind == "sql" else int((now - timedelta(days=1)).timestamp() * 1000)
        if not settings.dry_run:
            tracker.close_orphans(
                tags={"model_name": resolved.name, "store_id": store_id, "dry_run": "false"},
                started_before_ms=day_ago,
            )
    except BaseException:
        owned.close()  # a run that stops before scoring leaves no connection (or lock) behind
        raise
    options = job_options(settings)
    try:
        # 4. Who is stale, by the catalog's windows and the checkpoint earlier runs of this model left.
        selector = selector_for(store, options=options, model=resolved.identity, catalog=catalog, as_of=now)
        if on_start is not None:
            on_start(store.count_users(selector))
        summary = score_users(
            store=store,
            model=model,
            options=options,
            tracker=tracker,
            catalog=catalog,
            now=now,
            on_batch=on_batch,
            should_stop=should_stop,
            selector=selector,
        )
    except BaseException:
        with contextlib.suppress(TrackingError):
            tracker.finish(metrics={}, artifacts={}, status="FAILED")
        raise
    finally:
        owned.close()

    # 6. Totals, distribution, drift, tiers.
    failed = summary.failed_batches or summary.users_failed or summary.store_lost
    status = "KILLED" if summary.stopped else ("FAILED" if failed else "FINISHED")
    metrics = summary.metrics() | _drift_and_tiers(summary, settings, resolved, tracker)
    artifacts: dict[str, Any] = {
        "score_histogram.json": summary.distribution.coarse_histogram() | {"count": summary.distribution.count},
        "run_summary.json": metrics | {"dropped": summary.dropped, "model_version": resolved.version},
    }
    dist = summary.distribution
    who = "open leads" if options.leads_only else "users"
    if summary.failed_users:
        # Who failed and why (the database's message, never the row's data), for the operator to look at.
        artifacts["failed_users.json"] = summary.failed_users[:10_000]
    artifacts["score_histogram.svg"] = dist.histogram_svg(
        title=f"model v{resolved.version}: {dist.count:,} {who} ({summary.users_changed:,} changed in this run)",
        marks={"warm": settings.warm_threshold, "hot": settings.hot_threshold},
    )
    log.info("run_finished", status=status, **{k: round(v, 4) for k, v in metrics.items()})
    note = describe_run(summary, metrics, resolved, settings, status=status)
    try:
        tracker.finish(metrics=metrics, artifacts=artifacts, status=status, note=note)  # type: ignore[arg-type]
    except TrackingError as exc:
        # The scores are written; only the record is lost. The run_finished line above is the record.
        summary.tracking_lost = True
        log.error("run_record_lost", error=str(exc), hint="the run_finished log line holds the run's summary")
    return summary


def scoring_tracker(settings: Settings, *, tracking_uri: str, artifact_location: str | None = None) -> MlflowTracker:
    """The MLflow record of a scoring run (`lead-scorer run` and `lead-scorer spark run` alike)."""
    return MlflowTracker(
        tracking_uri=tracking_uri,
        experiment=settings.scoring_experiment,
        artifact_location=artifact_location,
        run_id=settings.mlflow_run_id,
        description="Scoring runs of lead-scorer: one per job run (the daily cron job, or `lead-scorer run`). "
        "Each run's description says what it rescored and changed, with which model version; its metrics "
        "hold the totals first, per-batch figures under batch/.",
    )


def describe_run(
    summary: RunSummary, metrics: dict[str, float], resolved: ResolvedVersion, settings: Settings, *, status: str
) -> str:
    """The run's description (MLflow's run note, Markdown): what happened in a line a person reads, a link to
    the model version, and what to do when something is off.

    >>> describe_run(summary, metrics, resolved, settings, status="FINISHED").splitlines()[0]
    'Rescored 4,812 open leads (1,203 changed) with lead_scoring_pipeline v2 in 14 s; …'
    """
    who = "open leads" if settings.population == "leads" else "users"
    dist = summary.distribution
    model = f"[{resolved.name} v{resolved.version}](#/models/{resolved.name}/versions/{resolved.version})"
    if summary.users_selected:
        head = (
            f"Rescored {summary.users_scored:,} {who} ({summary.users_changed:,} changed) with {model} "
            f"in {summary.duration_s:,.0f} s"
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


def open_store(settings: Settings) -> ScoringSource:
    """The store the settings select: ``SUPABASE_URL`` + a key → REST; ``DATABASE_URL`` → SQL; not both.
    Not connected yet: ``with open_store(settings) as store:`` opens it, and closes it."""
    rest = settings.supabase_url is not None or settings.supabase_key is not None
    if rest and settings.database_url is not None:
        raise SettingsError(
            "both DATABASE_URL and SUPABASE_URL/SUPABASE_SERVICE_ROLE_KEY are set; the job uses one store",
            hint="unset DATABASE_URL to use the Supabase REST API, or unset SUPABASE_URL and the key",
        )
    if rest:
        if settings.supabase_url is None or settings.supabase_key is None:
            missing = "SUPABASE_URL" if settings.supabase_url is None else "SUPABASE_SERVICE_ROLE_KEY"
            raise SettingsError(f"{missing} is not set", hint="the REST store needs SUPABASE_URL and the service key")
        if not settings.supabase_url.startswith(("https://", "http://")):
            raise SettingsError("SUPABASE_URL must start with https://", hint="e.g. https://<project>.supabase.co")
        from scorer.stores.rest import RestStore  # supabase's client is imported only when it is used

        return RestStore(
            settings.supabase_url,
            key=settings.supabase_key.get_secret_value(),
            names=settings.names(),
            max_rows=settings.supabase_max_rows,
            url_budget=settings.supabase_url_budget,
            timeout_s=settings.supabase_timeout_s,
        )
    if settings.database_url is None:
        raise SettingsError(
            "no data store configured",
            hint="set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or DATABASE_URL (sqlite:///leads.db, postgresql://…)",
        )
    waits = Waits(
        connect_s=settings.db_connect_timeout_s,
        statement_s=settings.db_statement_timeout_s,
        lock_s=settings.db_lock_timeout_s,
    )
    return SqlStore(settings.require_database(), names=settings.names(), waits=waits)


def open_training_source(settings: Settings) -> TrainingSource:
    """The store training reads, which must be SQL: training reads every user and event. Not connected yet."""
    store = open_store(settings)
    if not isinstance(store, SqlStore):
        store.close()
        raise StoreError(
            "training reads every event, which the REST API is not made for",
            hint="train with DATABASE_URL set to a direct connection string (Supabase: Connect → Session pooler)",
        )
    return store


def _require_temp_dir() -> None:
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


def job_options(settings: Settings) -> JobOptions:
    """The batch loop's options, from settings (the CLI's edge)."""
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


def _resolve_and_load(settings: Settings, catalog: FeatureCatalog) -> tuple[ResolvedVersion, LoadedModel]:
    """2. Resolve once, load once; the version is pinned for the whole run."""
    registry = _registry(settings)
    try:
        t0 = time.perf_counter()
        registry.ping()
        resolved = registry.resolve(pin=settings.model_version)
        resolve_s = time.perf_counter() - t0
        model = registry.load(
            resolved,
            allow_pickle=settings.allow_pickle,
            trusted_types=(*DEFAULT_TRUSTED_TYPES, *settings.skops_trusted_types),
        )
        catalog.check(model.input_names)
    except (NoProductionVersion, UnknownFeatureError) as exc:
        raise ModelError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None)) from exc
    except RegistryUnavailable as exc:
        raise ServiceUnavailable(exc.message, hint=exc.hint) from exc
    except RegistryError as exc:
        raise ModelError(exc.message, hint=exc.hint) from exc
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


def _open_run(
    tracker: Tracker,
    settings: Settings,
    resolved: ResolvedVersion,
    model: LoadedModel,
    *,
    store_kind: str,
    store_id: str,
    now: datetime,
) -> None:
    """The run's MLflow record, before anything is written: no record, no scoring."""
    tags = {
        "model_name": resolved.name,
        "model_version": resolved.version,
        "model_identity": resolved.identity,
        "model_resolved_by": resolved.how,
        "model_id": resolved.model_id or "",
        "model_run_id": resolved.run_id or "",
        "store": store_kind,
        "store_id": store_id,  # which database (a hash of its redacted address): orphans are closed per store
        "select": settings.select,
        "dry_run": str(settings.dry_run).lower(),
    }
    if settings.git_commit:
        tags["git_commit"] = settings.git_commit
    try:
        tracker.start(
            # A name a person tells apart in the runs table: version, then the minute (UTC).
            run_name=f"score v{resolved.version} · {now:%Y-%m-%d %H:%M} UTC"
            + (" · dry run" if settings.dry_run else ""),
            tags=tags,
            params={
                k: _as_typed(v)
                for k, v in {
                    "batch_size": settings.batch_size,
                    "select": settings.select,
                    "limit": settings.limit,
                    "dry_run": settings.dry_run,
                    "feature_count": len(model.input_names),
                    "score_tolerance": settings.score_tolerance,
                    "population": settings.population,
                    "history": settings.history,
                }.items()
            },
            model_id=resolved.model_id,
        )
    except Exception as exc:
        raise ServiceUnavailable(
            f"could not open the MLflow run: {type(exc).__name__}: {redact(str(exc)).splitlines()[0][:300]}",
            hint="check the MLflow server, and that MLFLOW_TRACKING_USERNAME may create runs in "
            f"the experiment {settings.scoring_experiment!r}",
        ) from exc


def _as_typed(value: Any) -> str:
    """A parameter as a person types it: ``false`` not ``False``, empty for unset (not ``None``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _drift_and_tiers(
    summary: RunSummary, settings: Settings, resolved: ResolvedVersion, tracker: Tracker
) -> dict[str, float]:
    """PSI against the training holdout and the previous run; share of users per tier."""
    stats = summary.distribution
    hot = stats.share_at_least(settings.hot_threshold)
    warm = stats.share_at_least(settings.warm_threshold) - hot
    out = {"tier_hot_share": hot, "tier_warm_share": warm, "tier_cold_share": (1.0 - hot - warm) if stats.count else 0}
    reference = resolved.reference_deciles()
    if reference and stats.count:
        out["score_psi_reference"] = stats.psi(reference, resolved.reference_shares())
    previous = tracker.previous_deciles()
    if previous and stats.count:
        out["score_psi_previous"] = stats.psi(previous)
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
    settings: Settings, user_id: str, *, store: ScoringSource | None = None, catalog: FeatureCatalog | None = None
) -> Explanation:
    """Score one user now with the production model (nothing is written) and say why.

    >>> explain_user(load_settings(), "1947").reasons[0].text
    '8 pricing views in the last 7 days'
    """
    catalog = catalog or FeatureCatalog()
    owned = contextlib.ExitStack()  # closes the store only if this call opened it
    if store is None:
        store = owned.enter_context(open_store(settings))
    try:
        store.check(scoring=False)
        resolved, model = _resolve_and_load(settings, catalog)
        page = store.find_users([user_id])
        if not len(page):
            raise SettingsError(
                f"no user with {settings.user_id_column} = {user_id!r} in {settings.users_table}",
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


@dataclass(frozen=True, kw_only=True)
class TrainOutcome:
    version: ResolvedVersion
    result: TrainResult
    event_types: list[str]
    users: int
    promoted: bool


def build_training_set(
    store: TrainingSource,
    *,
    as_of: datetime,
    horizon_days: int,
    event_types: list[str],
    catalog: FeatureCatalog,
    batch_size: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Point-in-time features (events strictly before ``as_of``, a UTC midnight) and labels (converted in
    the horizon).

    Users who converted before ``as_of`` are left out: they are no longer leads. So are users whose first
    event comes after ``as_of``: they were not leads yet. The training set, its holdout and so the
    reference deciles then describe what a scoring run scores: the open leads of the day.
    """
    names = catalog.feature_names(event_types=event_types)
    since = catalog.since(as_of)
    horizon_end = pd.Timestamp(as_of + timedelta(days=horizon_days))
    cutoff = pd.Timestamp(as_of)
    frames: list[pd.DataFrame] = []
    labels: list[np.ndarray] = []
    after = None
    while True:
        page = store.labelled_users(after=after, limit=batch_size)
        if not len(page):
            break
        after = page.user_ids[-1]
        conv = page.converted_at if page.converted_at is not None else pd.Series([pd.NaT] * len(page))
        conv = pd.to_datetime(conv, utc=True).reset_index(drop=True)
        eligible = (conv.isna() | (conv >= cutoff)).to_numpy()
        vids = [v for v, ok in zip(page.visitor_ids, eligible, strict=True) if ok]
        if not vids:
            continue
        # Read through the horizon: features only see days before the cutoff (a UTC midnight), and a
        # visitor whose first event comes after it was not a lead yet (it signed up later). Left in, such
        # users made a third of the synthetic holdout zero-activity rows that no scoring run sees, and the
        # reference deciles (hence drift) described another population than the open leads scored.
        read = store.read_events(vids, since=since, as_of=horizon_end.to_pydatetime())
        grain = read.grain
        seen = np.zeros(len(grain.visitors), dtype=bool)
        seen[grain.visitor[grain.day < day_number(as_of.date())]] = True
        later = {v for v, ok in zip(grain.visitors, seen, strict=True) if not ok}
        present = np.array([v is None or v not in later for v in vids], dtype=bool)
        features = catalog.features(grain, visitor_ids=vids, as_of=as_of, names=names)
        frames.append(features[present].reset_index(drop=True))
        labels.append((conv[eligible] < horizon_end).fillna(False).to_numpy(dtype=bool)[present])
    if not frames:
        return pd.DataFrame(columns=names, dtype="float64"), np.zeros(0, dtype=np.int64)
    return pd.concat(frames, ignore_index=True), np.concatenate(labels).astype(np.int64)


def train_model(
    settings: Settings,
    *,
    as_of: datetime | None = None,
    horizon_days: int = 30,
    top_event_types: int = 12,
    promote: bool = False,
    seed: int = 0,
    store: TrainingSource | None = None,
    artifact_location: str | None = None,
    catalog: FeatureCatalog | None = None,
) -> TrainOutcome:
    """Train on the configured database and register a new version (promote only when asked)."""
    if horizon_days <= 0:
        raise SettingsError("--horizon-days must be positive")
    catalog = catalog or FeatureCatalog()
    # A cutoff is a UTC midnight, so "before the cutoff" is whole days for the features and the label alike.
    as_of = (
        (as_of or (datetime.now(UTC) - timedelta(days=horizon_days)))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )
    if as_of + timedelta(days=horizon_days) > datetime.now(UTC):
        raise SettingsError(
            f"--as-of {as_of:%Y-%m-%d} plus {horizon_days} days ends in the future, so labels are incomplete",
            hint="pick an --as-of at least --horizon-days ago",
        )
    _require_temp_dir()
    owned = contextlib.ExitStack()  # closes the store only if this call opened it
    if store is None:
        store = owned.enter_context(open_training_source(settings))
    registry = _registry(settings)
    try:
        store.check(scoring=False, training=True)
        event_types = store.top_event_types(since=catalog.since(as_of), as_of=as_of, limit=top_event_types)
        features, labels = build_training_set(
            store,
            as_of=as_of,
            horizon_days=horizon_days,
            event_types=event_types,
            catalog=catalog,
            batch_size=max(settings.batch_size, 5_000),
        )
    finally:
        owned.close()
    log.info("training_set", users=len(labels), positives=int(labels.sum()), event_types=len(event_types))
    result = fit_and_evaluate(features, labels, seed=seed)
    # The holdout counted on the bins a scoring run counts its scores on: what drift compares with.
    holdout = ScoreStats()
    holdout.add(result.holdout_scores)
    reference_shares = holdout.shares_through(result.reference_deciles)
    version = registry.register(
        result.pipeline,
        example=features,
        experiment=settings.training_experiment,
        metrics=result.metrics,
        params={
            "as_of": as_of.isoformat(),
            "horizon_days": horizon_days,
            "training_window": f"{catalog.since(as_of):%Y-%m-%d} to {as_of:%Y-%m-%d}",
            "seed": seed,
            "top_event_types": top_event_types,
            "users": len(labels),
            "n_train": result.n_train,
            "n_holdout": result.n_holdout,
            "features": len(features.columns),
        },
        version_tags={
            TAG_REFERENCE: json.dumps([round(x, 6) for x in result.reference_deciles]),
            TAG_REFERENCE_SHARES: json.dumps([round(x, 6) for x in reference_shares]),
            TAG_EVENT_TYPES: json.dumps(event_types),
            "reliability": json.dumps(
                [{k: round(v, 4) for k, v in row.items()} for row in result.reliability], separators=(",", ":")
            ),
            "as_of": as_of.isoformat(),
            "horizon_days": str(horizon_days),
        },
        run_name=f"train as of {as_of:%Y-%m-%d} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        description=_version_description(result, as_of=as_of, horizon_days=horizon_days, seed=seed, users=len(labels)),
        experiment_description="Training runs of lead-scorer (`lead-scorer train`): point-in-time features, a "
        "holdout evaluation, one registered version of the lead-scoring pipeline per run.",
        artifact_location=artifact_location,
    )
    log.info("registered", model=version.name, version=version.version, **result.metrics)
    if promote:
        try:
            registry.promote(
                version.version,
                allow_pickle=settings.allow_pickle,
                trusted_types=(*DEFAULT_TRUSTED_TYPES, *settings.skops_trusted_types),
            )
        except PromotionRefused as exc:
            raise PromotionRefused(
                f"registered version {version.version}, but did not promote it: {exc.message}",
                hint=f"promote it anyway with `lead-scorer registry promote {version.version} --force`",
            ) from exc
    return TrainOutcome(version=version, result=result, event_types=event_types, users=len(labels), promoted=promote)


def _version_description(result: TrainResult, *, as_of: datetime, horizon_days: int, seed: int, users: int) -> str:
    """A model version's description: how it was trained, and its holdout metrics in words."""
    m = result.metrics
    positives = round(m.get("positive_rate", 0.0) * users)
    return (
        f"Trained on {users:,} leads as of {as_of:%Y-%m-%d} (features from the 180 days before; label: converted "
        f"within {horizon_days} days after; {positives:,} did), seed {seed}.\n\n"
        f"On a holdout of {result.n_holdout:,} leads: ROC AUC {m['roc_auc']:.3f} (a lead that converted scores above "
        f"one that did not {m['roc_auc']:.0%} of the time); the top tenth of scores converted "
        f"{m['top_decile_lift']:.1f} times as often as average, and the top fifth held {m['top20_capture']:.0%} of the "
        f"conversions; calibration error {m.get('ece', float('nan')):.3f} (predicted vs observed rate, by decile)."
    )


def import_joblib(
    settings: Settings,
    path: Path,
    *,
    trust: bool = False,
    catalog: FeatureCatalog | None = None,
    artifact_location: str | None = None,
) -> ResolvedVersion:
    """Register a legacy joblib pipeline (like the original ``lead_scoring_pipeline_v1.joblib``) as a new
    version, re-saved in the skops format. Loading a pickle runs its code, so ``trust`` must be given."""
    if not trust:
        raise SettingsError(
            f"refusing to load {path.name}: loading a joblib/pickle file runs any code it contains",
            hint="pass --trust only for a file you made yourself or got from someone you trust",
        )
    if not path.is_file():
        raise SettingsError(f"{path} is not a file")
    import joblib
    import skops.io as sio

    catalog = catalog or FeatureCatalog()
    pipeline = joblib.load(path)
    if not hasattr(pipeline, "predict_proba"):
        raise ModelError(f"{path.name} holds a {type(pipeline).__name__}, which has no predict_proba")
    names = [str(n) for n in getattr(pipeline, "feature_names_in_", [])]
    if not names:
        raise ModelError(
            f"{path.name} does not record its feature names, so the catalog cannot feed it",
            hint="fit the pipeline on a pandas DataFrame whose columns are catalog feature names",
        )
    try:
        catalog.check(names)
    except UnknownFeatureError as exc:
        raise ModelError(str(exc)) from exc
    example = pd.DataFrame(np.zeros((5, len(names))), columns=names)
    untrusted = sio.get_untrusted_types(data=sio.dumps(pipeline))
    version = _registry(settings).register(
        pipeline,
        example=example,
        experiment=settings.training_experiment,
        metrics={},
        params={"imported_from": path.name},
        version_tags={"imported_from": path.name, TAG_TRUSTED_TYPES: json.dumps(untrusted)},
        run_name=f"import-{path.stem}",
        artifact_location=artifact_location,
        skops_trusted_types=untrusted or None,
    )
    log.info("imported", model=version.name, version=version.version, features=len(names), trusted_types=untrusted)
    return version
