"""Live figures of a version on its honest cohorts, below the entry points: what `lead-scorer evaluate`
(`scorer.evaluation`) and the daily run (`scorer.app.run_scoring`, after scoring) both use.

A cohort is a day ``T`` and the version's horizon ``H`` (`scorer.cohorts` holds the rule training shares); it
counts for a version only when ``T`` is at or after the version's first honest day (`registry.TrainingWindow`)
and has matured (``T + H`` has passed). docs/live-performance.md says it all in words.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from lead_errors import SettingsError
from models import FeatureCatalog
from registry import (
    METRIC_TAG_PREFIX,
    TAG_AS_OF,
    LoadedModel,
    Registry,
    ResolvedVersion,
    TrainingWindow,
    training_window,
)
from scorer.cohorts import CohortScores, score_cohorts
from scorer.stores import TrainingSource

__all__ = [
    "LIVE_LINE_PREFIX",
    "MIN_SAMPLE",
    "Evaluation",
    "LiveCheck",
    "annotate_version",
    "cohort_days",
    "due_day",
    "evaluate_matured",
    "holdout_auc",
    "live_due",
    "live_line",
    "measure_cohorts",
    "sample_rate",
]

#: The version description's live paragraph starts so; a new evaluation replaces it.
LIVE_LINE_PREFIX = "Live on leads open on"
#: What `lead-scorer evaluate` keeps of a cohort in its table and JSON (the spec's keys, then the rest); each
#: figure with its interval.
_KEYS = ("n", "positives", "roc_auc", "roc_auc_ci", "top_decile_lift", "top_decile_lift_ci", "ece", "ece_ci")


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """One version's figures on its cohorts: one dict per cohort (`models.metrics.classification_metrics`
    plus ``as_of``, and ``served`` when the history table exists) and the same figures pooled over them."""

    version: ResolvedVersion
    window: TrainingWindow
    holdout_auc: float | None
    cohorts: list[dict[str, Any]]
    pooled: dict[str, Any]
    run_id: str | None = None

    def latest(self) -> dict[str, Any] | None:
        """The newest cohort that has an AUC (the version's "live" figure), or None."""
        return next((c for c in reversed(self.cohorts) if c["roc_auc"] is not None), None)

    def as_json(self) -> dict[str, Any]:
        """``{"version", "horizon_days", "holdout": {"roc_auc"}, "cohorts": [...], "pooled": {...}}``."""
        return {
            "version": self.version.version,
            "horizon_days": self.window.horizon_days,
            "first_honest_day": f"{self.window.first_honest_day:%Y-%m-%d}",
            "holdout": {"roc_auc": self.holdout_auc},
            "cohorts": self.cohorts,
            "pooled": self.pooled,
            "run_id": self.run_id,
        }


def cohort_days(
    window: TrainingWindow,
    *,
    now: datetime,
    start: date | None = None,
    end: date | None = None,
    every: int = 7,
    span_days: int = 90,
    version: str = "?",
) -> list[date]:
    """The cohort days to evaluate: every ``every`` days from ``start`` (when given) or back from ``end``
    (default: the last matured day) over the last ``span_days`` honest days. A ``start`` before the first
    honest day, or an ``end`` whose horizon has not passed, is refused with the day to use.

    >>> from datetime import UTC
    >>> w = TrainingWindow(as_of=datetime(2026, 6, 1, tzinfo=UTC), horizon_days=30, source="trained")
    >>> [f"{d:%m-%d}" for d in cohort_days(w, now=datetime(2026, 9, 1, 8, tzinfo=UTC), every=14)]
    ['07-05', '07-19', '08-02']
    """
    if every < 1:
        raise SettingsError(f"--every must be at least 1 day, not {every}")
    last = window.last_matured_day(now)
    first = window.first_honest_day
    if end is not None and end > last:
        raise SettingsError(
            f"the cohort of {end:%Y-%m-%d} has not matured: its {window.horizon_days}-day horizon ends on "
            f"{end + timedelta(days=window.horizon_days):%Y-%m-%d}",
            hint=f"pass --to {last:%Y-%m-%d} or earlier",
        )
    if start is not None:
        window.require_honest(start, version=version)
    end = end or last
    if end < first:
        raise SettingsError(
            f"no honest cohort of version {version} has matured yet: the first is {first:%Y-%m-%d}, and its "
            f"labels are complete on {first + timedelta(days=window.horizon_days):%Y-%m-%d}",
            hint="evaluate an older version (--version), or wait",
        )
    if start is not None:
        if start > end:
            raise SettingsError(f"--from {start:%Y-%m-%d} is after --to {end:%Y-%m-%d}")
        return [start + timedelta(days=k) for k in range(0, (end - start).days + 1, every)]
    floor = max(first, end - timedelta(days=span_days))
    return sorted(end - timedelta(days=k) for k in range(0, (end - floor).days + 1, every))


def _served(store: TrainingSource, cohort: CohortScores, *, model: str, sample: int) -> dict[str, Any] | None:
    """The figures of the scores the product actually showed at ``T`` (last history row at or before it)."""
    if not getattr(store, "has_history", False):
        return None
    served = store.served_scores(at=cohort.as_of, model=model, user_ids=cohort.user_ids if sample > 1 else None)
    idx = [i for i, uid in enumerate(cohort.user_ids) if uid in served]
    scores = np.array([served[cohort.user_ids[i]] for i in idx], dtype=np.float64)
    from models import classification_metrics

    m = classification_metrics(cohort.labels[idx], scores)
    return {k: m[k] for k in (*_KEYS, "reason")} | {"coverage": len(idx) / len(cohort.user_ids) if idx else 0.0}


def measure_cohorts(
    store: TrainingSource,
    *,
    version: ResolvedVersion,
    model: LoadedModel,
    days: list[date],
    horizon_days: int,
    catalog: FeatureCatalog,
    batch_size: int = 5_000,
    sample: int = 1,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each cohort's figures (oldest first) and the pooled ones, for one loaded version.

    Pooled figures treat every (lead, day) pair as one observation: a lead open on several cohort days counts
    in each, so the pooled interval is somewhat narrower than independent leads would give."""
    from models import classification_metrics

    scored = score_cohorts(
        store,
        days=days,
        horizon_days=horizon_days,
        models={version.version: model},
        catalog=catalog,
        batch_size=batch_size,
        sample=sample,
    )
    cohorts = []
    for c in scored:
        m = classification_metrics(c.labels, c.scores[version.version])
        row = {"as_of": f"{c.as_of:%Y-%m-%d}", **m}
        served = _served(store, c, model=version.identity, sample=sample)
        if served is not None:
            row["served"] = served
        cohorts.append(row)
    y = np.concatenate([c.labels for c in scored]) if scored else np.zeros(0)
    p = np.concatenate([c.scores[version.version] for c in scored]) if scored else np.zeros(0)
    pooled = classification_metrics(y, p) | {"cohorts": len(scored)}
    return cohorts, pooled


def holdout_auc(version: ResolvedVersion) -> float | None:
    """The version's holdout ROC AUC (its ``holdout_roc_auc`` tag), None for an import."""
    raw = version.tags.get(f"{METRIC_TAG_PREFIX}roc_auc")
    return float(raw) if raw else None


def live_line(version: ResolvedVersion, window: TrainingWindow, cohort: dict[str, Any]) -> str:
    """The version description's live paragraph, e.g. "Live on leads open on 2026-11-05, 30 days on: ROC AUC
    0.81 [0.78-0.84] vs 0.86 on holdout (12,345 leads, 321 converted)."."""
    ci = cohort["roc_auc_ci"]
    interval = f" [{ci[0]:.2f}\N{EN DASH}{ci[1]:.2f}]" if ci else ""
    holdout = holdout_auc(version)
    versus = f" vs {holdout:.2f} on holdout" if holdout is not None else " (no holdout figure recorded)"
    return (
        f"{LIVE_LINE_PREFIX} {cohort['as_of']}, {window.horizon_days} days on: ROC AUC {cohort['roc_auc']:.2f}"
        f"{interval}{versus} ({cohort['n']:,} leads, {cohort['positives']:,} converted)."
    )


def annotate_version(registry: Registry, out: Evaluation) -> None:
    """The latest live figures on the version (tags and a description line), unless it holds newer ones."""
    latest = out.latest()
    if latest is None:
        return
    recorded = out.version.tags.get("live_as_of")
    if recorded and recorded > latest["as_of"]:
        return  # an evaluation of older cohorts does not replace newer live figures
    ci = latest["roc_auc_ci"]
    registry.annotate(
        out.version.version,
        tags={
            "live_roc_auc": f"{latest['roc_auc']:.6f}",
            "live_roc_auc_ci": json.dumps([round(x, 6) for x in ci]) if ci else "null",
            "live_as_of": latest["as_of"],
            "live_n": str(latest["n"]),
            "live_positives": str(latest["positives"]),
        },
        line=live_line(out.version, out.window, latest),
        replace_prefix=LIVE_LINE_PREFIX,
    )


@dataclass(frozen=True, kw_only=True)
class LiveCheck:
    """What the daily run learned about production's newest matured cohort: ``live/`` metrics and a line for the
    run's description (``error`` instead when the evaluation failed)."""

    as_of: date | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    line: str = ""
    degraded: bool = False
    error: str | None = None


#: The daily check's smallest sample: fewer users give an AUC interval too wide to flag anything.
MIN_SAMPLE = 2_000


def sample_rate(users: int, *, max_users: int = 10_000, max_share: float = 0.05) -> int:
    """The k of the daily check's one-in-k sample of ``users``: about ``max_share`` of them (its cost is about
    that share of the scoring loop's, the same features for as many users), at most ``max_users``, and at
    least `MIN_SAMPLE` (1: everyone).

    >>> [sample_rate(n) for n in (1_500, 10_000, 100_000, 1_000_000)]
    [1, 5, 20, 100]
    """
    target = min(max_users, max(MIN_SAMPLE, max_share * users))
    return max(1, math.ceil(users / max(target, 1)))


def due_day(window: TrainingWindow, *, now: datetime, every: int, last_evaluated: date | None) -> date | None:
    """The cohort the daily run evaluates today, if any: the newest day of the grid ``first honest day +
    k·every`` that has matured and comes after the last one evaluated.

    >>> from datetime import UTC
    >>> w = TrainingWindow(as_of=datetime(2026, 6, 1, tzinfo=UTC), horizon_days=30, source="trained")
    >>> due_day(w, now=datetime(2026, 9, 1, tzinfo=UTC), every=7, last_evaluated=None)
    datetime.date(2026, 7, 29)
    >>> due_day(w, now=datetime(2026, 9, 1, tzinfo=UTC), every=7, last_evaluated=date(2026, 7, 29)) is None
    True
    """
    last = window.last_matured_day(now)
    first = window.first_honest_day
    if last < first or every < 1:
        return None
    day = first + timedelta(days=((last - first).days // every) * every)
    if last_evaluated is not None and day <= last_evaluated:
        return None
    return day


def live_due(version: ResolvedVersion, *, now: datetime, every: int) -> bool:
    """Whether the daily run has a cohort of ``version`` to evaluate today (`due_day`, from its tags); never for
    a version whose window is unknown (no tags and no registration time: built by hand, not registered)."""
    if TAG_AS_OF not in version.tags and version.created is None:
        return False
    recorded = version.tags.get("live_as_of")
    last = date.fromisoformat(recorded) if recorded else None
    return due_day(training_window(version), now=now, every=every, last_evaluated=last) is not None


def evaluate_matured(
    store: TrainingSource,
    *,
    registry: Registry,
    version: ResolvedVersion,
    model: LoadedModel,
    now: datetime,
    every: int = 7,
    auc_drop: float = 0.05,
    catalog: FeatureCatalog,
    batch_size: int = 5_000,
    users: int | None = None,
    max_users: int = 10_000,
    max_share: float = 0.05,
) -> LiveCheck | None:
    """The daily run's evaluation: production's newest matured cohort when one is due (`due_day`), at most one
    a day; the version's live figures are updated. None when nothing is due.

    With many ``users`` in the table, about one user in k is evaluated (`sample_rate`: at most ``max_users``
    and ``max_share`` of them), chosen by a hash of the key, so it is spread over the whole table; the check
    then adds a bounded share to the run's time. The line says so, and `lead-scorer evaluate` measures the
    whole cohort. Degraded: the
    live AUC's upper bound is below the holdout AUC minus ``auc_drop``."""
    window = training_window(version)
    recorded = version.tags.get("live_as_of")
    day = due_day(window, now=now, every=every, last_evaluated=date.fromisoformat(recorded) if recorded else None)
    if day is None:
        return None
    sample = sample_rate(users or 0, max_users=max_users, max_share=max_share)
    cohorts, _ = measure_cohorts(
        store,
        version=version,
        model=model,
        days=[day],
        horizon_days=window.horizon_days,
        catalog=catalog,
        batch_size=batch_size,
        sample=sample,
    )
    c = cohorts[0]
    metrics: dict[str, float] = {"live/n": c["n"], "live/positives": c["positives"], "live/sample_one_in": sample}
    holdout = holdout_auc(version)
    if c["roc_auc"] is None:
        line = f"Live check on leads open on {c['as_of']}: {c['n']:,} leads, {c['positives']:,} converted; "
        line += f"{c['reason']}."
        return LiveCheck(as_of=day, metrics=metrics, line=line)
    metrics["live/roc_auc"] = c["roc_auc"]
    if c["roc_auc_ci"]:
        metrics["live/roc_auc_lo"], metrics["live/roc_auc_hi"] = c["roc_auc_ci"]
    if c["top_decile_lift"] is not None:
        metrics["live/top_decile_lift"] = c["top_decile_lift"]
    if c["top_decile_lift_ci"]:
        metrics["live/top_decile_lift_lo"], metrics["live/top_decile_lift_hi"] = c["top_decile_lift_ci"]
    hi = c["roc_auc_ci"][1] if c["roc_auc_ci"] else c["roc_auc"]
    degraded = holdout is not None and hi < holdout - auc_drop
    metrics["live/degraded"] = float(degraded)
    out = Evaluation(version=version, window=window, holdout_auc=holdout, cohorts=cohorts, pooled={})
    annotate_version(registry, out)
    line = live_line(version, window, c)
    if sample > 1:
        line += f" A sample: about one user in {sample}; `lead-scorer evaluate` measures the whole cohort."
    if degraded:
        line += (
            f" **The model has degraded**: even the interval's upper bound is more than {auc_drop:.2f} below the "
            "holdout's. Retrain (`lead-scorer train`) and compare."
        )
    return LiveCheck(as_of=day, metrics=metrics, line=line, degraded=degraded)
