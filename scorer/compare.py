"""Two versions on the same live leads: the paired ROC AUC difference on the cohorts honest for both, a verdict,
and what the daily run's auto-promotion does with it. `scorer.promotion` holds the entry points
(`lead-scorer registry compare`, the check `registry promote` runs); docs/champion-challenger.md says it in words.

The cohorts are `scorer.cohorts`' (training's rule), on days after **both** versions' training windows (the
later first honest day) whose horizon has passed, labelled over version A's horizon (production's: the label
the product is judged on). Both versions score the same leads from features computed once.

Pooling: the cohorts' leads are stacked and DeLong's paired test (`models.delong_paired`) runs on the stack, so
a lead open on several cohort days counts once per day, as `lead-scorer evaluate`'s pooled figure does; the
interval is somewhat narrower than independent leads would give. The verdict needs at least ``min_conversions``
positives in the stack (``LEAD_SCORER_MIN_CONVERSIONS``, default 100): fewer, and it is ``not_enough_data``
whatever the interval says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import structlog

from models import FeatureCatalog, PairedAuc, delong_paired
from registry import (
    METRIC_TAG_PREFIX,
    LiveEvidence,
    LoadedModel,
    LoadPolicy,
    Registry,
    ResolvedVersion,
    TrainingWindow,
    Verdict,
    redact,
    training_window,
)
from scorer.cohorts import CohortScores, midnight, score_cohorts
from scorer.live import due_day, sample_rate
from scorer.stores import SqlStore, TrainingSource
from scorer.stores.base import Selector

__all__ = [
    "AUTO_ACTOR",
    "COMPARE_LINE_PREFIX",
    "AutoPromotion",
    "Comparison",
    "annotate_comparison",
    "compare_pair",
    "pair_days",
    "pair_window",
    "pooled_pair",
    "run_auto_promotion",
    "verdict_of",
]

log = structlog.get_logger("lead_scorer")

#: The version description's comparison paragraph starts so; the next comparison replaces it.
COMPARE_LINE_PREFIX = "Live comparison with version"
#: Who the daily run's promotions are recorded as (``promoted_by``).
AUTO_ACTOR = "lead-scorer auto-promotion"
#: On the challenger: the newest cohort day auto-promotion compared, and against which production version.
TAG_AUTO_AS_OF = "auto_promotion_as_of"
TAG_AUTO_AGAINST = "auto_promotion_against"


def pair_window(a: ResolvedVersion, b: ResolvedVersion) -> TrainingWindow:
    """The cohorts honest for both versions: from the later of their first honest days, labelled over ``a``'s
    horizon.

    >>> from datetime import UTC
    >>> def v(n, as_of, h):
    ...     return ResolvedVersion(name="m", version=n, how="pin", run_id=None, model_id=None, source="",
    ...                            tags={"as_of": as_of, "horizon_days": h})
    >>> w = pair_window(v("1", "2026-06-01T00:00:00+00:00", "30"), v("2", "2026-07-01T00:00:00+00:00", "14"))
    >>> w.first_honest_day, w.horizon_days
    (datetime.date(2026, 7, 15), 30)
    """
    wa, wb = training_window(a), training_window(b)
    first = max(wa.first_honest_day, wb.first_honest_day)
    return TrainingWindow(
        as_of=midnight(first) - timedelta(days=wa.horizon_days), horizon_days=wa.horizon_days, source="both"
    )


def pair_days(
    window: TrainingWindow, *, now: datetime, end: date | None = None, every: int = 7, span_days: int = 90
) -> list[date]:
    """Every ``every`` days back from ``end`` (default: the last matured day) over the last ``span_days`` honest
    days, oldest first; empty when no honest cohort has matured.

    >>> from datetime import UTC
    >>> w = TrainingWindow(as_of=datetime(2026, 6, 1, tzinfo=UTC), horizon_days=30, source="both")
    >>> [f"{d:%m-%d}" for d in pair_days(w, now=datetime(2026, 8, 20, tzinfo=UTC))]
    ['07-07', '07-14', '07-21']
    >>> pair_days(w, now=datetime(2026, 7, 30, tzinfo=UTC))
    []
    """
    last = min(end, window.last_matured_day(now)) if end else window.last_matured_day(now)
    first = window.first_honest_day
    if last < first:
        return []
    floor = max(first, last - timedelta(days=span_days))
    return sorted(last - timedelta(days=k) for k in range(0, (last - floor).days + 1, every))


def verdict_of(paired: PairedAuc | None, *, positives: int, min_conversions: int) -> Verdict:
    """``b_better`` when the 95 % interval of ``auc(b) - auc(a)`` lies entirely above 0, ``a_better`` entirely
    below, ``indistinguishable`` when it holds 0; ``not_enough_data`` with fewer than ``min_conversions``
    positives (or no interval).

    >>> p = PairedAuc(auc_a=0.8, auc_b=0.7, diff=-0.1, variance=0.001, lo=-0.16, hi=-0.04)
    >>> verdict_of(p, positives=120, min_conversions=100), verdict_of(p, positives=99, min_conversions=100)
    ('a_better', 'not_enough_data')
    """
    if paired is None or paired.lo is None or paired.hi is None or positives < min_conversions:
        return "not_enough_data"
    if paired.hi < 0:
        return "a_better"
    if paired.lo > 0:
        return "b_better"
    return "indistinguishable"


def _holdout(v: ResolvedVersion) -> dict[str, float]:
    return {k.removeprefix(METRIC_TAG_PREFIX): float(x) for k, x in v.tags.items() if k.startswith(METRIC_TAG_PREFIX)}


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "\N{MINUS SIGN}")


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Versions ``a`` and ``b`` on the same honest cohorts: stacked leads ``n``, ``positives``, the paired
    DeLong figures (``diff = auc(b) - auc(a)``) and the ``verdict``; ``shadow``: the latest run's agreement."""

    a: ResolvedVersion
    b: ResolvedVersion
    window: TrainingWindow
    days: list[date]
    n: int
    positives: int
    paired: PairedAuc | None
    verdict: Verdict
    min_conversions: int
    sample: int = 1
    now: datetime
    shadow: dict[str, Any] | None = None

    def live_json(self) -> dict[str, Any]:
        p = self.paired
        return {
            "cohorts": len(self.days),
            "n": self.n,
            "positives": self.positives,
            "roc_auc_a": p.auc_a if p else None,
            "roc_auc_b": p.auc_b if p else None,
            "diff": p.diff if p else None,
            "diff_ci": [p.lo, p.hi] if p is not None and p.lo is not None else None,
            "first_honest_day": f"{self.window.first_honest_day:%Y-%m-%d}",
            "horizon_days": self.window.horizon_days,
            "from": f"{self.days[0]:%Y-%m-%d}" if self.days else None,
            "to": f"{self.days[-1]:%Y-%m-%d}" if self.days else None,
            "min_conversions": self.min_conversions,
            "sample_one_in": self.sample,
            "method": "paired DeLong on the cohorts' leads stacked (a lead counts once per cohort day)",
        }

    def as_json(self) -> dict[str, Any]:
        """``{"a": {"version", "holdout", …}, "b": {…}, "live": {…}, "shadow": {…} | None, "verdict", "advice"}``."""

        def side(v: ResolvedVersion) -> dict[str, Any]:
            w = training_window(v)
            return {
                "version": v.version,
                "holdout": _holdout(v),
                "first_honest_day": f"{w.first_honest_day:%Y-%m-%d}",
                "horizon_days": w.horizon_days,
                "training_window_source": w.source,
            }

        return {
            "a": side(self.a),
            "b": side(self.b),
            "live": self.live_json(),
            "shadow": self.shadow,
            "verdict": self.verdict,
            "advice": self.advice(),
        }

    def summary(self) -> str:
        """The figures in words, for a refusal, a version page and a run's description."""
        a, b, p = self.a.version, self.b.version, self.paired
        span = (
            f"{len(self.days)} cohort(s) from {self.days[0]:%Y-%m-%d} to {self.days[-1]:%Y-%m-%d}"
            if self.days
            else "no cohort"
        )
        counted = f"{self.n:,} leads, {self.positives:,} converted"
        if self.sample > 1:
            counted += f"; a sample: about one user in {self.sample}"
        if p is None:
            return f"{span} ({counted}): no ROC AUC (a class is missing)"
        ci = f" [{_signed(p.lo)}, {_signed(p.hi)}]" if p.lo is not None and p.hi is not None else ""
        return (
            f"ROC AUC {p.auc_b:.3f} (v{b}) vs {p.auc_a:.3f} (v{a}), difference {_signed(p.diff)}{ci} "
            f"(95 %, paired DeLong) on {span} ({counted})"
        )

    def advice(self) -> str:
        a, b = self.a.version, self.b.version
        if self.verdict == "b_better":
            return f"version {b} ranks leads better: promote it (`lead-scorer registry promote {b}`)"
        if self.verdict == "a_better":
            challenger = self.b.how == "challenger"
            clear = "; clear the challenger (`lead-scorer registry challenge --clear`)" if challenger else ""
            return (
                f"version {a} ranks leads better: keep it; `registry promote {b}` is refused (exit 7) while "
                f"{a} is production{clear}"
            )
        if self.verdict == "indistinguishable":
            return "no significant difference: keep production, or wait for more cohorts to mature and compare again"
        if not self.days:
            first = self.window.first_honest_day
            ready = first + timedelta(days=self.window.horizon_days)
            return (
                f"no cohort after both versions' training has matured: the first is {first:%Y-%m-%d}, complete on "
                f"{ready:%Y-%m-%d}; until then `registry promote` follows the holdout figures"
            )
        return (
            f"{self.positives:,} conversions in these cohorts, fewer than the {self.min_conversions:,} a verdict "
            "needs (LEAD_SCORER_MIN_CONVERSIONS): wait for more cohorts to mature; `registry promote` follows the "
            "holdout figures until then"
        )

    def evidence(self) -> LiveEvidence:
        """What `Registry.promote` takes from its ``live_check``."""
        return LiveEvidence(verdict=self.verdict, summary=self.summary())

    def line(self) -> str:
        """The version page's paragraph (on ``b``), replaced by the next comparison."""
        words = {
            "a_better": f"version {self.a.version} ranks leads significantly better",
            "b_better": "this version ranks leads significantly better",
            "indistinguishable": "no significant difference",
            "not_enough_data": "not enough data for a verdict",
        }
        return (
            f"{COMPARE_LINE_PREFIX} {self.a.version}, on {self.now:%Y-%m-%d}: {self.summary()}; {words[self.verdict]}."
        )


def pooled_pair(cohorts: Sequence[CohortScores], *, a: str = "a", b: str = "b") -> tuple[int, int, PairedAuc | None]:
    """The cohorts' leads stacked (a lead open on several days counts once per day): their number, the
    positives among them, and DeLong's paired difference of scores ``b`` minus ``a`` on the stack."""
    if not cohorts:
        return 0, 0, None
    y = np.concatenate([c.labels for c in cohorts])
    sa = np.concatenate([c.scores[a] for c in cohorts])
    sb = np.concatenate([c.scores[b] for c in cohorts])
    return len(y), int(y.sum()), delong_paired(y, sa, sb) if len(y) else None


def compare_pair(
    store: TrainingSource,
    *,
    a: LoadedModel,
    b: LoadedModel,
    now: datetime,
    catalog: FeatureCatalog,
    min_conversions: int = 100,
    end: date | None = None,
    every: int = 7,
    batch_size: int = 5_000,
    sample: int = 1,
) -> Comparison:
    """Both loaded versions on the cohorts honest for both (`pair_window`, `pair_days`), one read of the events
    for all of them; the stacked leads' paired DeLong difference and the verdict.

    >>> out = compare_pair(store, a=production, b=challenger, now=now, catalog=FeatureCatalog())  # doctest: +SKIP
    >>> out.verdict, out.paired.diff, (out.paired.lo, out.paired.hi)  # doctest: +SKIP
    ('a_better', -0.62, (-0.66, -0.58))
    """
    window = pair_window(a.resolved, b.resolved)
    days = pair_days(window, now=now, end=end, every=every)
    cohorts = []
    if days:
        cohorts = score_cohorts(
            store,
            days=days,
            horizon_days=window.horizon_days,
            models={"a": a, "b": b},
            catalog=catalog,
            batch_size=batch_size,
            sample=sample,
        )
    n, positives, paired = pooled_pair(cohorts)
    return Comparison(
        a=a.resolved,
        b=b.resolved,
        window=window,
        days=days,
        n=n,
        positives=positives,
        paired=paired,
        verdict=verdict_of(paired, positives=positives, min_conversions=min_conversions),
        min_conversions=min_conversions,
        sample=sample,
        now=now,
    )


def annotate_comparison(registry: Registry, out: Comparison, *, tags: dict[str, str] | None = None) -> None:
    """The comparison on ``b``'s version page: tags ``compare_*`` and one paragraph, replacing the last one."""
    if not out.days:
        return
    p = out.paired
    recorded = {
        "compare_against": out.a.version,
        "compare_as_of": f"{out.days[-1]:%Y-%m-%d}",
        "compare_verdict": out.verdict,
        "compare_n": str(out.n),
        "compare_positives": str(out.positives),
    }
    if p is not None:
        recorded["compare_diff"] = f"{p.diff:.6f}"
        ci = [round(p.lo, 6), round(p.hi, 6)] if p.lo is not None and p.hi is not None else None
        recorded["compare_diff_ci"] = json.dumps(ci)
    registry.annotate(out.b.version, tags=recorded | (tags or {}), line=out.line(), replace_prefix=COMPARE_LINE_PREFIX)


@dataclass(frozen=True, kw_only=True)
class AutoPromotion:
    """What the daily run's auto-promotion did: ``compare/`` metrics, a tag and a line for the run."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    line: str = ""
    promoted: bool = False


def run_auto_promotion(
    store: Any,
    *,
    registry: Registry,
    production: LoadedModel,
    challenger: LoadedModel | None,
    now: datetime,
    catalog: FeatureCatalog,
    policy: LoadPolicy,
    every: int = 7,
    min_conversions: int = 100,
    max_users: int = 10_000,
    max_share: float = 0.05,
    batch_size: int = 5_000,
) -> AutoPromotion | None:
    """The daily run's auto-promotion (``LEAD_SCORER_AUTO_PROMOTE``), never raising: when a cohort of the pair's
    grid (``first honest day + k·every``) has matured since the challenger was last compared with this
    production, compare them (on the live check's sample, `scorer.live.sample_rate`) and promote
    the challenger when it is significantly better with enough conversions, clearing the challenger alias. None
    when nothing is due (or no challenger loaded)."""
    if challenger is None:
        return None
    c = challenger.resolved
    try:
        window = pair_window(production.resolved, c)
        against = c.tags.get(TAG_AUTO_AGAINST)
        recorded = c.tags.get(TAG_AUTO_AS_OF) if against == production.resolved.version else None
        last = date.fromisoformat(recorded) if recorded else None
        day = due_day(window, now=now, every=every, last_evaluated=last)
        if day is None:
            return None
        if not isinstance(store, SqlStore):
            return AutoPromotion(
                tags={"auto_promotion": "skipped"},
                line=f"Auto-promotion skipped: comparing challenger v{c.version} with production reads every event "
                "of past days, which the REST API is not made for; run `lead-scorer registry compare` with "
                "DATABASE_URL set to a direct SQL connection string.",
            )
        users = store.count_users(Selector(select="all", leads_only=False))
        sample = sample_rate(users, max_users=max_users, max_share=max_share)
        out = compare_pair(
            store,
            a=production,
            b=challenger,
            now=now,
            catalog=catalog,
            min_conversions=min_conversions,
            end=day,
            every=every,
            batch_size=batch_size,
            sample=sample,
        )
        annotate_comparison(
            registry, out, tags={TAG_AUTO_AS_OF: f"{day:%Y-%m-%d}", TAG_AUTO_AGAINST: production.resolved.version}
        )
        metrics: dict[str, float] = {
            "compare/cohorts": len(out.days),
            "compare/n": out.n,
            "compare/positives": out.positives,
            "compare/sample_one_in": sample,
        }
        p = out.paired
        if p is not None:
            metrics |= {"compare/roc_auc_production": p.auc_a, "compare/roc_auc_challenger": p.auc_b}
            metrics["compare/diff"] = p.diff
            if p.lo is not None and p.hi is not None:
                metrics |= {"compare/diff_lo": p.lo, "compare/diff_hi": p.hi}
        if out.verdict != "b_better":
            metrics["compare/promoted"] = 0.0
            return AutoPromotion(
                metrics=metrics,
                tags={"auto_promotion": out.verdict},
                line=f"Auto-promotion: challenger v{c.version} stays challenger, production v"
                f"{production.resolved.version} stays ({out.verdict.replace('_', ' ')}): {out.summary()}.",
            )
        now_production = registry.resolve().version
        if now_production != production.resolved.version:  # moved during the run, or the run was pinned
            return AutoPromotion(
                metrics=metrics | {"compare/promoted": 0.0},
                tags={"auto_promotion": "production_moved"},
                line=f"Auto-promotion: challenger v{c.version} is better than v{production.resolved.version}, which "
                f"this run scored with, but production is now v{now_production}; nothing was promoted: "
                f"{out.summary()}.",
            )
        registry.promote(
            c.version,
            actor=AUTO_ACTOR,
            policy=policy,
            check_inputs=catalog.check,
            live_check=lambda _candidate, _current: out.evidence(),
        )
        still = registry.resolve_challenger()
        if still is not None and still.version == c.version:  # a challenger set during the run stays
            registry.clear_challenger()
        metrics["compare/promoted"] = 1.0
        log.info("auto_promoted", version=c.version, replacing=production.resolved.version, diff=p.diff if p else None)
        return AutoPromotion(
            metrics=metrics,
            tags={"auto_promotion": "promoted", "auto_promoted_version": c.version},
            line=f"**Auto-promoted** challenger v{c.version} to production, replacing v{production.resolved.version}"
            f" from the next run (by {AUTO_ACTOR}): {out.summary()}. The challenger alias is cleared.",
            promoted=True,
        )
    except Exception as exc:  # the scores are written: a failed comparison costs none of them
        error = redact(f"{type(exc).__name__}: {exc}")[:300]
        log.error("auto_promotion_failed", error=error)
        return AutoPromotion(
            metrics={"compare/failed": 1.0},
            tags={"auto_promotion": "failed"},
            line=f"**Auto-promotion failed** ({error}); nothing was promoted, and the scores are written.",
        )
