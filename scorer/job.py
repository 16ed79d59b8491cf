"""The batch loop, steps 4 to 6 of the run (docs/architecture.md): `score_users` returns a `RunSummary`,
whose ``exit_code`` says how the run went (0, 1 some batches failed, 4 the store was lost, 5 the record)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog

from lead_errors import AuthError, ExitCode, SchemaError, ScoreValueError, StoreError, TransientError
from models import FeatureCatalog
from models.reasons import gives_reasons
from registry import LoadedModel
from scorer.logs import redact_text
from scorer.page import check_scores, score_page
from scorer.shadow import Shadow
from scorer.stats import BINS, ScoreStats
from scorer.stores.base import (
    EventRead,
    FeatureRequest,
    Freshness,
    ScoreWrite,
    ScoringSource,
    Selection,
    Selector,
    UserPage,
)
from scorer.tracking import NullTracker, Tracker

__all__ = [
    "BatchReport",
    "JobOptions",
    "RunSummary",
    "ScoreValueError",
    "batch_cap",
    "checkpoint_key",
    "freshness",
    "score_users",
    "selector_for",
]

log = structlog.get_logger("lead_scorer.job")


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    select: Selection = "stale"
    batch_size: int = 2_000
    limit: int | None = None
    dry_run: bool = False
    #: A rescored user whose score moved less than this (same model) is not rewritten.
    tolerance: float = 0.001
    #: Open leads only (no ``converted_at``, when the column exists): a customer keeps its last score.
    leads_only: bool = True
    #: Append every changed score to the history table, in the same transaction as the update.
    history: bool = False
    #: Write each changed score's top reasons (when the store has the column and the model gives them).
    reasons: bool = True


@dataclass(frozen=True, kw_only=True)
class BatchReport:
    step: int
    users: int
    scored: int
    events: int
    seconds: float
    error: str | None = None


@dataclass(kw_only=True)
class RunSummary:
    model_version: str
    batches: int = 0
    failed_batches: int = 0
    users_selected: int = 0
    users_scored: int = 0  # rescored: features read, score computed and checked
    users_changed: int = 0  # ... and written, because it moved by the tolerance or more (or was new)
    #: ... of those, how many are new or moved by the tolerance or more; the rest were rewritten only because
    #: another model version scored them last.
    users_moved: int = 0
    users_unchanged: int = 0  # ... and left as it was
    users_failed: int = 0
    users_vanished: int = 0  # deleted between selection and write
    events_read: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"null_type": 0, "null_time": 0, "future": 0})
    duration_s: float = 0.0
    stopped: bool = False
    tracking_lost: bool = False  # the MLflow run record could not be saved
    stats: ScoreStats = field(default_factory=ScoreStats)  # this run's scores
    #: Every current score of the population after the run (open leads by default), which is what the
    #: model's reference deciles describe; None when the store cannot tell.
    population: ScoreStats | None = None
    complete: bool = False  # every user was checked: the checkpoint says so
    store_lost: str | None = None  # the store stayed unreachable beyond its retries: the run stopped here
    #: Users whose own row failed (their batch was split down to them): id and cause, never the row's data.
    failed_users: list[dict[str, str]] = field(default_factory=list)
    #: The population the run selected: open leads only, or everyone (also when the store has no converted_at).
    leads_only: bool = True

    @property
    def clean(self) -> bool:
        """Nothing has failed yet: the checkpoint may still move."""
        return not self.failed_batches and not self.users_failed

    def add(self, done: _Done) -> None:
        self.users_scored += done.scored
        self.users_changed += done.changed
        self.users_moved += done.moved
        self.users_unchanged += done.unchanged
        self.users_vanished += done.vanished
        self.events_read += done.events
        self.stats.add(done.scores)
        for k, v in done.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v

    @property
    def exit_code(self) -> int:
        if self.store_lost:
            return ExitCode.UNREACHABLE
        if self.failed_batches or self.users_failed:
            return ExitCode.BATCHES_FAILED
        return ExitCode.TRACKING if self.tracking_lost else ExitCode.OK

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "users_selected": self.users_selected,
            "users_scored": self.users_scored,
            "users_rescored": self.users_scored,
            "users_changed": self.users_changed,
            "users_moved": self.users_moved,
            "users_unchanged": self.users_unchanged,
            "users_failed": self.users_failed,
            "users_vanished": self.users_vanished,
            "events_read": self.events_read,
            "duration_s": round(self.duration_s, 2),
            "users_per_s": round(self.users_scored / self.duration_s, 1) if self.duration_s > 0 else 0.0,
        }
        out |= {f"events_dropped_{k}": v for k, v in self.dropped.items()}
        # Scores to 4 decimals: the histogram behind them resolves 0.001, and the UI shows what it is given.
        return out | {k: round(v, 4) for k, v in self.distribution.summary().items()}

    @property
    def distribution(self) -> ScoreStats:
        """What the run's distribution, drift and tiers describe: the population, else this run's scores."""
        return self.population if self.population is not None else self.stats


def _first_line(exc: BaseException) -> str:
    """An error in one log-sized line, with no URL credentials (drivers quote the URL they called)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return redact_text(f"{type(exc).__name__}: {text}")[:300]


#: Peak RSS the job was measured at (benchmarks, PostgreSQL, 10k to 1M users): ~320 MiB for the interpreter,
#: the libraries and the model, plus ~12 KiB per user of a batch (the batch and the one read ahead).
_BASE_MIB = 320
_PER_USER_KIB = 12


def batch_cap(memory_mb: int) -> int:
    """The largest batch whose peak fits in ``memory_mb`` with a fifth to spare (allocator, fragmentation).

    >>> batch_cap(512)  # Render's starter plan
    7645
    """
    budget_mib = memory_mb * 0.8 - _BASE_MIB
    return max(100, int(budget_mib * 1024 / _PER_USER_KIB))


_Read = tuple[UserPage, EventRead | Exception]
#: Event reads per batch on a store that serves them at once (`max_in_flight`, PostgreSQL): one per connection.
_READ_SLICES = 2


def _read(
    store: ScoringSource,
    selector: Selector,
    after: Any | None,
    limit: int,
    since: datetime,
    as_of: datetime,
    slices: ThreadPoolExecutor | None,
    request: FeatureRequest,
) -> _Read:
    """One batch's key page and its events. A failed page read raises (fatal); a failed event read is
    returned in place of the events, so that batch is counted as failed and the loop goes on."""
    page = store.select_users(selector, after=after, limit=limit)
    if not len(page):
        return page, EventRead()
    try:
        if slices is None:
            return page, store.read_events(page.visitor_ids, since=since, as_of=as_of, features=request)
        # Halves of the batch's distinct visitors, read at once on two connections: the database
        # aggregates on two cores (110 instead of 165 ms per 2,000 users on PostgreSQL). Distinct, so
        # a visitor shared by two users is read once.
        visitors = sorted({v for v in page.visitor_ids if v is not None})
        parts = [visitors[i::_READ_SLICES] for i in range(_READ_SLICES)]
        reads = [
            slices.submit(store.read_events, part, since=since, as_of=as_of, features=request) for part in parts if part
        ]
        return page, EventRead.combine([r.result() for r in reads])
    except Exception as exc:
        return page, exc


@dataclass(kw_only=True)
class _Done:
    """What one batch (or a part of one) did."""

    scored: int = 0
    changed: int = 0
    moved: int = 0
    unchanged: int = 0
    vanished: int = 0
    events: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __iadd__(self, other: _Done) -> _Done:
        self.scored += other.scored
        self.changed += other.changed
        self.moved += other.moved
        self.unchanged += other.unchanged
        self.vanished += other.vanished
        self.events += other.events
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        self.scores = np.concatenate([self.scores, other.scores])
        return self


@dataclass(frozen=True, kw_only=True)
class _Batcher:
    """Step 5 for one page: features → scores → checked → reasons → one write of what changed."""

    store: ScoringSource
    model: LoadedModel
    catalog: FeatureCatalog
    options: JobOptions
    identity: str
    as_of: datetime
    since: datetime
    reasons: bool
    shadow: Shadow | None = None  # the challenger, scored from the same features (docs/champion-challenger.md)

    @functools.cached_property
    def request(self) -> FeatureRequest:
        """The model's inputs, which a store may compute where the events are (`ScoringSource.read_events`); made once
        per run, as it keys the store's generated statement. With a challenger, its inputs too: features once."""
        names = list(self.model.input_names)
        if self.shadow is not None and self.shadow.active:
            names += [c for c in self.shadow.input_names if c not in names]
        return FeatureRequest(catalog=self.catalog, names=names)

    def __call__(
        self, page: UserPage, read: EventRead, *, checkpoint_key: str | None, pending: Future[Any] | None
    ) -> _Done:
        features = read.features_for(self.request, visitor_ids=page.visitor_ids, as_of=self.as_of)
        scored = score_page(
            self.model,
            features,
            page,
            identity=self.identity,
            tolerance=self.options.tolerance,
            catalog=self.catalog,
            reasons=self.reasons and not self.options.dry_run,
        )
        scores, changed = scored.scores, scored.changed
        n_changed = int(changed.sum())
        vanished = 0
        shadow = None
        if self.shadow is not None:
            shadow = self.shadow.score(page.user_ids, features, check=check_scores)
            if shadow is not None and (self.options.dry_run or not self.store.has_shadow):
                self.shadow.kept = self.store.has_shadow  # compared here, written nowhere
                self.shadow.add(shadow, scores)
                shadow = None
        if not self.options.dry_run:
            ids = [uid for uid, c in zip(page.user_ids, changed, strict=True) if c]
            write = ScoreWrite(
                user_ids=ids,
                scores=scores[changed],
                model=self.identity,
                scored_at=self.as_of,
                reasons=scored.reasons,
                history=self.options.history,
                checkpoint_key=checkpoint_key,
                through=page.user_ids[-1],
                shadow=shadow,
            )
            if pending is not None and self.store.max_in_flight < 2:
                wait([pending])  # one request at a time on SQLite and REST
            if ids or checkpoint_key is not None or shadow is not None:
                vanished = len(ids) - self._write(write)
            if write.shadow is not None and self.shadow is not None and self.shadow.active:
                self.shadow.add(write.shadow, scores)
        return _Done(
            scored=len(page) - vanished,
            changed=n_changed - vanished,  # deleted between read and write: neither scored nor changed
            moved=max(scored.moved - vanished, 0),  # which of them vanished is not known: at most that many moved
            unchanged=len(page) - n_changed,
            vanished=vanished,
            events=read.events_read,
            dropped=dict(read.dropped),
            scores=scores,
        )

    def _write(self, write: ScoreWrite) -> int:
        """One write; if the database refuses it only with the challenger's scores in it, production's part is
        written again alone and the challenger is dropped for the rest of the run: it never costs a score."""
        try:
            return self.store.write_scores(write)
        except (AuthError, SchemaError, TransientError):
            raise
        except StoreError as exc:
            if write.shadow is None or self.shadow is None:
                raise
            alone = self.store.write_scores(replace(write, shadow=None))
            self.shadow.drop(f"its scores could not be written: {_first_line(exc)}")
            log.error("challenger_write_failed", error=_first_line(exc), exc_info=exc)
            return alone

    def isolate(
        self, page: UserPage, exc: Exception, *, pending: Future[Any] | None
    ) -> tuple[_Done, list[dict[str, str]]]:
        """A page that fails for a reason that is not passing, split in halves down to the users that fail:
        everyone else is read again, scored and written; the failing users are named with the cause."""
        if len(page) == 1:
            return _Done(), [{"user_id": str(page.user_ids[0]), "error": _first_line(exc)}]
        done, failed = _Done(), []
        middle = len(page) // 2
        for part in (page.part(0, middle), page.part(middle, len(page))):
            try:
                read = self.store.read_events(
                    part.visitor_ids, since=self.since, as_of=self.as_of, features=self.request
                )
                done += self(part, read, checkpoint_key=None, pending=pending)
            except (AuthError, SchemaError, TransientError):
                raise
            except (StoreError, ScoreValueError) as inner:
                more, why = self.isolate(part, inner, pending=pending)
                done += more
                failed += why
        return done, failed


def checkpoint_key(model: str, *, leads_only: bool) -> str:
    """The checkpoint row of one model over one population (a run over everyone checks customers too)."""
    return f"{model}|{'leads' if leads_only else 'everyone'}"


def freshness(
    store: ScoringSource, *, model: str, catalog: FeatureCatalog, as_of: datetime, leads_only: bool
) -> Freshness:
    """Step 4's rule for this run: the catalog says how far back an event matters, the store's checkpoint
    how far earlier runs of this model got."""
    key = checkpoint_key(model, leads_only=leads_only)
    return Freshness(
        model=model,
        as_of=as_of,
        day_start=catalog.day_start(as_of),
        reach=catalog.reach,
        checkpoint=store.read_checkpoint(key),
        key=key,
    )


def selector_for(
    store: ScoringSource, *, options: JobOptions, model: str, catalog: FeatureCatalog, as_of: datetime
) -> Selector:
    """Step 4, the one place a run's selection is made (`score_users`, and Spark's run for its population and
    checkpoint): the population the options ask for, if the store can tell leads from customers, and which
    of them are stale for ``model`` at ``as_of``."""
    leads_only = options.leads_only and store.has_converted
    fresh = freshness(store, model=model, catalog=catalog, as_of=as_of, leads_only=leads_only)
    return Selector(select=options.select, leads_only=leads_only, freshness=fresh)


def score_users(
    *,
    store: ScoringSource,
    model: LoadedModel,
    options: JobOptions,
    tracker: Tracker | None = None,
    catalog: FeatureCatalog | None = None,
    now: datetime | None = None,
    on_start: Callable[[int | None], None] | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shadow: Shadow | None = None,
) -> RunSummary:
    """Select the users (`selector_for`; ``on_start`` gets how many), score them batch by batch and write what
    changed, update-only; a ``shadow`` challenger scores the same users from the same features into the shadow
    table, in the same write. The summary says which population was selected (``leads_only``).

    A batch that fails (after the store's retries) is counted and skipped; the loop goes on.
    Missing schema or refused credentials stop the run. ``should_stop`` is checked between
    batches, so a stop request lets the current batch finish and be written.
    """
    catalog = catalog or FeatureCatalog()
    tracker = tracker or NullTracker()
    as_of = now or datetime.now(UTC)
    since = catalog.since(as_of)
    identity = model.resolved.identity
    selector = selector_for(store, options=options, model=identity, catalog=catalog, as_of=as_of)
    if on_start is not None:
        on_start(store.count_users(selector))
    summary = RunSummary(model_version=model.resolved.version, leads_only=selector.leads_only)
    # The checkpoint moves only for runs that check every selected user (not `unscored`, not a dry run) and
    # only over an unbroken prefix of written batches: a user past a failed batch is not known to be done.
    moves_checkpoint = options.select != "unscored" and not options.dry_run and selector.freshness is not None
    checkpoint = selector.freshness.key if selector.freshness is not None else None
    batcher = _Batcher(
        store=store,
        model=model,
        catalog=catalog,
        options=options,
        identity=identity,
        as_of=as_of,
        since=since,
        reasons=_writes_reasons(store, model, options),
        shadow=shadow,
    )
    started = time.perf_counter()
    step = 0

    # Batch n+1 is read (its key page, then its events) by one worker thread while batch n's features and
    # scores are computed, so the database works on the read while this process computes. On a store
    # that serves three requests at once (`max_in_flight`, PostgreSQL), that read is split in two event reads
    # on two connections, and the write of batch n runs beside it on a third. On the others (SQLite, REST)
    # the write waits for the read, so the store never has two requests in flight: a transient failure hits
    # the request it hits and SQLite never waits on its own reader.
    # Pages are disjoint key ranges (user_id > the last key), so reading ahead neither sees nor misses a
    # write. A stop request or a fatal error drops the batch read ahead: it is never written.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-scorer-read")
    # Two event reads and a write at once need three connections (`ScoringSource.max_in_flight`).
    concurrent = store.max_in_flight > _READ_SLICES
    slices = (
        ThreadPoolExecutor(max_workers=_READ_SLICES, thread_name_prefix="lead-scorer-events") if concurrent else None
    )
    limited = False

    def read_ahead(after: Any | None) -> Future[_Read] | None:
        nonlocal limited
        want = options.batch_size
        if options.limit is not None:
            want = min(want, options.limit - summary.users_selected)
        if want <= 0:
            limited = True
            return None
        return pool.submit(_read, store, selector, after, want, since, as_of, slices, batcher.request)

    pending = read_ahead(None)
    exhausted = False
    try:
        while pending is not None:
            if should_stop is not None and should_stop():
                summary.stopped = True
                log.warning("stop_requested", after_batches=step)
                break
            t0 = time.perf_counter()
            # 4. The next key page. Failing here ends the run: without it there is no next key.
            taken, pending = _take(pending, should_stop=should_stop, summary=summary, step=step), None
            if taken is None:
                break
            page, read = taken
            if not len(page):
                exhausted = True
                break
            step += 1
            summary.users_selected += len(page)
            pending = read_ahead(page.user_ids[-1])
            # 5. Events, complete → features → scores → checked → reasons → one write of what changed.
            checkpoint_key = checkpoint if moves_checkpoint and summary.clean else None
            done, error = _score_batch(
                batcher, page, read, checkpoint_key=checkpoint_key, pending=pending, summary=summary, step=step
            )
            summary.add(done)
            summary.batches = step
            _record(step, page, done, error, seconds=time.perf_counter() - t0, tracker=tracker, on_batch=on_batch)
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=True)
        if slices is not None:
            slices.shutdown(wait=True)

    # 6. Finish: a run that checked everyone says so in the checkpoint, then the population's distribution.
    if moves_checkpoint and exhausted and not limited and summary.clean and not summary.stopped:
        store.write_scores(
            ScoreWrite(
                user_ids=[], scores=[], model=identity, scored_at=as_of, checkpoint_key=checkpoint, complete=True
            )
        )
        summary.complete = True
    if not options.dry_run and not summary.store_lost:
        try:
            summary.population = _population(store, leads_only=selector.leads_only)
        except TransientError:
            if not summary.stopped:
                raise
            # A stop request that had to cancel the store refuses every later statement: the run ends now.
            log.warning("population_unknown", hint="the run was stopped; the distribution is this run's scores")
    summary.duration_s = time.perf_counter() - started
    return summary


def _writes_reasons(store: ScoringSource, model: LoadedModel, options: JobOptions) -> bool:
    """Reasons are written when asked, where the column exists, and when the model breaks its score down."""
    if not (options.reasons and store.has_reasons):
        return False
    if gives_reasons(model.pipeline, model.input_names):
        return True
    # Said once per run, not per batch: this model type has no per-feature contributions to name.
    log.warning(
        "reasons_unavailable",
        model=model.resolved.uri,
        hint="lead_score_reasons is left as it is; linear pipelines (what `lead-scorer train` makes) give reasons",
    )
    return False


def _population(store: ScoringSource, *, leads_only: bool) -> ScoreStats | None:
    """Every stored score's distribution (the store counts it), or None when the store cannot say."""
    counts = store.score_histogram(leads_only=leads_only, bins=BINS)
    if counts is None:
        log.warning("population_unknown", hint="the distribution and drift describe this run's scores only")
        return None
    return ScoreStats.from_histogram(counts)


def _take(
    pending: Future[_Read], *, should_stop: Callable[[], bool] | None, summary: RunSummary, step: int
) -> _Read | None:
    """Step 4: the batch read ahead, or None when the run ends here. The store has retried already, so a
    failed page read means the database is gone for longer than its retry budget: exit 4, totals kept (unless
    a stop request cancelled it, which is not a loss)."""
    try:
        return pending.result()
    except (AuthError, SchemaError):
        raise
    except Exception as exc:
        if should_stop is not None and should_stop():
            summary.stopped = True
            log.warning("stop_requested", after_batches=step)
        else:
            summary.store_lost = _first_line(exc)
            log.error("store_lost", after_batches=step, error=summary.store_lost, exc_info=exc)
        return None


def _score_batch(
    batcher: _Batcher,
    page: UserPage,
    read: EventRead | Exception,
    *,
    checkpoint_key: str | None,
    pending: Future[Any] | None,
    summary: RunSummary,
    step: int,
) -> tuple[_Done, str | None]:
    """Step 5 with its failures sorted: (what was done, the batch's error or None). Users that fail are
    counted in ``summary``; anything that is not the store's or a score's failure is a bug and propagates."""
    try:
        if isinstance(read, Exception):
            raise read
        return batcher(page, read, checkpoint_key=checkpoint_key, pending=pending), None
    except (AuthError, SchemaError):
        raise
    except TransientError as exc:
        # The database, not a row: the whole batch fails and the next run redoes it.
        summary.failed_batches += 1
        summary.users_failed += len(page)
        return _Done(), _first_line(exc)
    except (StoreError, ScoreValueError) as exc:
        # Something in this batch fails every time (a row the database rejects, a score that is not a
        # probability): split it down to the users that fail, write everyone else.
        done, failed = batcher.isolate(page, exc, pending=pending)
        summary.failed_users += failed
        summary.users_failed += len(failed)
        if not failed:
            return done, None
        log.error(
            "users_failed",
            batch=step,
            users=[f["user_id"] for f in failed[:20]],
            count=len(failed),
            error=failed[0]["error"],
        )
        return done, f"{len(failed)} of {len(page)} users failed: {failed[0]['error']}"


def _record(
    step: int,
    page: UserPage,
    done: _Done,
    error: str | None,
    *,
    seconds: float,
    tracker: Tracker,
    on_batch: Callable[[BatchReport], None] | None,
) -> None:
    """A batch's line in the log, its metrics in the run, and the caller's callback (a progress bar)."""
    if error:
        log.error(
            "batch_failed",
            batch=step,
            users=len(page),
            first_user=str(page.user_ids[0]),
            last_user=str(page.user_ids[-1]),
            error=error,
        )
    else:
        log.info(
            "batch",
            batch=step,
            users=len(page),
            scored=done.scored,
            changed=done.changed,
            events=done.events,
            ms=round(seconds * 1000, 1),
        )
    tracker.log_batch(
        step=step,
        # Under "batch/", which the MLflow UI groups apart from the run's totals.
        metrics={
            "batch/users": len(page),
            "batch/scored": done.scored,
            "batch/changed": done.changed,
            "batch/events": done.events,
            "batch/seconds": round(seconds, 3),
            # Users, as the total users_failed counts them: "batch/failed 1" beside "failed_batches 0" read as a
            # contradiction when a batch's failing users were split out and everyone else written.
            "batch/users_failed": len(page) - done.scored - done.vanished,
        },
    )
    if on_batch is not None:
        on_batch(
            BatchReport(
                step=step, users=len(page), scored=done.scored, events=done.events, seconds=seconds, error=error
            )
        )
