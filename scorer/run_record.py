"""One scoring run's MLflow record, the same for both engines (`scorer.app.run_scoring` and
`scorer.spark.run_spark`): `RunRecord.open` starts it before anything is written (tags, parameters, the runs
a dead process left RUNNING closed), `RunRecord.finish` ends it with the run's status, totals, distribution,
drift, tiers, failed users, name and description, `RunRecord.fail` when the run raised.

    >>> from scorer.job import RunSummary
    >>> run_status(RunSummary(model_version="2", users_failed=1))
    'FAILED'
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from lead_errors import ServiceUnavailable
from registry import LoadedModel, ResolvedVersion, redact
from scorer.job import JobOptions, RunSummary
from scorer.live import LiveCheck
from scorer.shadow import Shadow
from scorer.tracking import TAG_SCORE_SHARES, MlflowTracker, Status, Tracker, TrackingError

__all__ = [
    "RecordOptions",
    "RunRecord",
    "baseline_tags",
    "describe_run",
    "drift_and_tiers",
    "run_name",
    "run_outcome",
    "run_status",
    "scoring_tracker",
    "seconds",
]

log = structlog.get_logger("lead_scorer")


def run_status(summary: RunSummary) -> Status:
    """KILLED when a stop request ended the run, FAILED when a batch, a user or the store failed, else FINISHED."""
    if summary.stopped:
        return "KILLED"
    return "FAILED" if summary.failed_batches or summary.users_failed or summary.store_lost else "FINISHED"


@dataclass(frozen=True, kw_only=True)
class RecordOptions:
    """What a scoring run's record is told by the run's options (`scorer.app.RunOptions.record`)."""

    job: JobOptions = field(default_factory=JobOptions)
    experiment: str = "lead-scorer/scoring"
    git_commit: str | None = None
    #: Score tiers: hot at or above ``hot``, warm at or above ``warm``.
    hot: float = 0.5
    warm: float = 0.2


@dataclass(kw_only=True)
class RunRecord:
    """An open scoring run's record: what `finish` and `fail` need to end it as either engine's run ends."""

    tracker: Tracker
    resolved: ResolvedVersion
    started: datetime
    options: RecordOptions
    #: Named in the ``run_finished`` log line (None: the single-machine run, whose line has no engine).
    engine: str | None = None

    @classmethod
    def open(
        cls,
        tracker: Tracker,
        resolved: ResolvedVersion,
        model: LoadedModel,
        *,
        options: RecordOptions,
        store_kind: str,
        store_id: str,
        now: datetime,
        store_session: str | None = None,
        challenger: Shadow | None = None,
        tags: dict[str, str] | None = None,
        close_orphans: bool = True,
        orphans_before_ms: int | None = None,
        live_sessions: Callable[[], set[str] | None] | None = None,
        engine: str | None = None,
    ) -> RunRecord:
        """Start the run's MLflow record, before anything is written (no record, no scoring), then close the
        runs of this model on this store left RUNNING by a process that died (``close_orphans``; only those
        started before ``orphans_before_ms`` when it is set; not those whose ``store_session`` is among
        ``live_sessions()``: their process is still connected, it lost its run lock and stops at its next write).
        ``tags``: the engine's own, beside the tags every scoring run has.

        A real call: ``RunRecord.open(scoring_tracker(tracking_uri=uri, experiment="lead-scorer/scoring"),
        resolved, model, options=RecordOptions(), store_kind="sql", store_id="3f2a…", now=datetime.now(UTC))``.
        """
        job, experiment = options.job, options.experiment
        common = {
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
            common["git_commit"] = options.git_commit
        if challenger is not None and challenger.resolved is not None:
            common["challenger_version"] = challenger.resolved.version
            common["challenger_identity"] = challenger.identity
        if store_session:
            common["store_session"] = store_session  # whether its process is alive (`Tracker.close_orphans`)
        try:
            tracker.start(
                # Renamed with the run's outcome when it ends (`run_name`).
                run_name=run_name(resolved.version, now, dry_run=job.dry_run),
                tags=common | (tags or {}),
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
                f"the experiment {experiment!r}",
            ) from exc
        if close_orphans:
            tracker.close_orphans(
                tags={"model_name": resolved.name, "store_id": store_id, "dry_run": "false"},
                started_before_ms=orphans_before_ms,
                # A run whose lock session died (terminated, a restart) may still be alive: not an orphan.
                live_sessions=live_sessions() if live_sessions is not None else None,
            )
        return cls(tracker=tracker, resolved=resolved, started=now, options=options, engine=engine)

    def fail(self, exc: BaseException) -> None:
        """End the run FAILED, named after ``exc``'s type, because the run raised it (the caller re-raises)."""
        with contextlib.suppress(TrackingError):
            self.tracker.finish(
                metrics={},
                artifacts={},
                status="FAILED",
                run_name=self.name(f"FAILED: {type(exc).__name__}"),
            )

    def name(self, outcome: str) -> str:
        return run_name(self.resolved.version, self.started, dry_run=self.options.job.dry_run, outcome=outcome)

    def finish(
        self,
        summary: RunSummary,
        *,
        leads_only: bool,
        live: LiveCheck | None = None,
        shadow: Shadow | None = None,
        notes: Sequence[str] = (),
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Status:
        """6. End the run: its status (`run_status`), totals, distribution, drift, tiers, the failed users
        (``failed_users.json``), the challenger's figures, the live check, its name and description.
        ``leads_only``: the population the run scored (open leads, or everyone). ``notes``: paragraphs added
        at the end of the description; ``metrics``, ``tags``: figures and tags of a step after scoring (the
        auto-promotion's). A record that cannot be saved sets ``summary.tracking_lost`` (exit 5)."""
        resolved, tracker = self.resolved, self.tracker
        hot, warm = self.options.hot, self.options.warm
        status = run_status(summary)
        extra = dict(metrics or {})
        metrics = summary.metrics() | drift_and_tiers(summary, resolved, tracker, hot=hot, warm=warm)
        if live is not None:
            metrics |= live.metrics
        dist = summary.distribution
        who = "open leads" if leads_only else "users"
        artifacts: dict[str, Any] = {
            "score_histogram.json": dist.coarse_histogram() | {"count": dist.count},
            "run_summary.json": metrics | {"dropped": summary.dropped, "model_version": resolved.version},
        }
        if summary.failed_users:
            # Who failed and why (the database's message, never the row's data), for the operator to look at.
            artifacts["failed_users.json"] = summary.failed_users[:10_000]
        artifacts["score_histogram.svg"] = dist.histogram_svg(
            title=f"model v{resolved.version}: {dist.count:,} {who} ({summary.users_changed:,} written in this run)",
            marks={"warm": warm, "hot": hot},
        )
        engine = {"engine": self.engine} if self.engine else {}
        log.info("run_finished", **engine, status=status, **{k: round(v, 4) for k, v in metrics.items()})
        note = describe_run(summary, metrics, resolved, leads_only=leads_only, status=status)
        if shadow is not None:
            # After the description's figures: the challenger's own are not the run's totals.
            challenger = shadow.metrics(hot=hot, warm=warm)
            metrics |= challenger
            artifacts |= shadow.artifacts()
            note += "\n\n" + shadow.describe(challenger)
        if live is not None:
            note += "\n\n" + (live.line or f"**The live evaluation failed** ({live.error}); the scores are written.")
        metrics |= extra
        for paragraph in notes:
            note += "\n\n" + paragraph
        try:
            tracker.finish(
                metrics=metrics,
                artifacts=artifacts,
                status=status,
                note=note,
                run_name=self.name(run_outcome(summary, status=status)),
                tags=baseline_tags(summary) | dict(tags or {}),
            )
        except TrackingError as exc:
            # The scores are written; only the record is lost. The run_finished line above is the record.
            summary.tracking_lost = True
            log.error("run_record_lost", error=str(exc), hint="the run_finished log line holds the run's summary")
        return status


def scoring_tracker(
    *, tracking_uri: str, experiment: str, run_id: str | None = None, artifact_location: str | None = None
) -> MlflowTracker:
    """The MLflow record of a scoring run (`lead-scorer run` and `lead-scorer spark run` alike); ``run_id``
    adopts a run ``mlflow run`` created."""
    return MlflowTracker(
        tracking_uri=tracking_uri,
        experiment=experiment,
        artifact_location=artifact_location,
        run_id=run_id,
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

    >>> from datetime import UTC
    >>> run_name("2", datetime(2026, 12, 6, 0, 6, 26, tzinfo=UTC), outcome="3,908 written")
    'score v2 · 2026-12-06 00:06:26 UTC · 3,908 written'
    """
    return f"score v{version} · {started:%Y-%m-%d %H:%M:%S} UTC" + (" · dry run" if dry_run else "") + f" · {outcome}"


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
