"""The challenger in the daily run (docs/champion-challenger.md): the version under the challenger alias scores
the same leads from the same features as production, into the job's own table ``lead_score_shadow``, never
into users; what the run says about it lives under ``challenger/``.

A challenger that cannot load or fails to score is reported (the run's ``challenger/failed`` metric and its
description) and never stops production's scores: `load_challenger` and `Shadow.score` catch its failures.

>>> import numpy as np
>>> figures = compare_scores(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0.9, 0.6, 0.4, 0.1]), hot=0.5, warm=0.2)
>>> figures["rank_corr"], figures["top_decile_overlap"], figures["tier_change_share"]
(-1.0, 0.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import structlog
from scipy.stats import rankdata

from models.metrics import Z95, wilson_interval
from registry import LoadedModel, LoadPolicy, Registry, ResolvedVersion
from scorer.stats import ScoreStats
from scorer.stores.base import ScoringSource, ShadowWrite

__all__ = ["Shadow", "compare_scores", "load_challenger", "not_shadowed", "rank_corr_interval"]

log = structlog.get_logger("lead_scorer.shadow")

#: How many of the leads on which production and the challenger disagree most the run's artifact lists.
DISAGREEMENTS = 100


def rank_corr_interval(r: float, n: int) -> tuple[float, float]:
    r"""A 95 % interval for Spearman's rank correlation ``r`` over ``n`` leads: Fisher's z with Bonett and
    Wright's (2000) variance (1 + r²/2) / (n - 3), which holds its coverage for Spearman's coefficient up to
    \|rho\| = 0.9, where the plain 1 / (n - 3) is too narrow. A perfect correlation has no width.

    >>> [round(x, 3) for x in rank_corr_interval(0.5, 103)]
    [0.329, 0.639]
    """
    if n <= 3 or not math.isfinite(r):
        return -1.0, 1.0
    if abs(r) >= 1.0:
        return r, r
    z = math.atanh(r)
    half = Z95 * math.sqrt((1 + r * r / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def _tiers(scores: np.ndarray, *, hot: float, warm: float) -> np.ndarray:
    return np.where(scores >= hot, 2, np.where(scores >= warm, 1, 0))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest scores' positions, ties to the earlier lead (a stable order)."""
    return np.argsort(-scores, kind="stable")[:k]


def compare_scores(production: np.ndarray, challenger: np.ndarray, *, hot: float, warm: float) -> dict[str, float]:
    """Production's and the challenger's scores of the same leads, compared:

    - ``rank_corr``: Spearman's rank correlation (average ranks for ties), with its 95 % interval
      (`rank_corr_interval`); absent when either side is constant (it is undefined);
    - ``top_decile_overlap``: the share of production's top tenth (⌈n/10⌉ leads) that is in the challenger's
      top tenth, with Wilson's interval over those leads;
    - ``psi``: the population stability index of production's scores against the challenger's deciles
      (`ScoreStats.psi`, the drift index the run reports against training);
    - ``tier_change_share``: the share of leads whose tier (hot, warm, cold) the challenger would change, with
      Wilson's interval.
    """
    a = np.asarray(production, dtype=np.float64)
    b = np.asarray(challenger, dtype=np.float64)
    n = len(a)
    out: dict[str, float] = {"n": float(n)}
    if not n:
        return out
    if n >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
        r = float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])
        r = max(-1.0, min(1.0, r))
        lo, hi = rank_corr_interval(r, n)
        out |= {"rank_corr": r, "rank_corr_lo": lo, "rank_corr_hi": hi}
    k = math.ceil(n / 10)
    both = len(np.intersect1d(_top(a, k), _top(b, k)))
    lo, hi = wilson_interval(both, k)
    out |= {"top_decile_overlap": both / k, "top_decile_overlap_lo": lo, "top_decile_overlap_hi": hi}
    sa, sb = ScoreStats(), ScoreStats()
    sa.add(a)
    sb.add(b)
    deciles = [sb.quantile(q / 10) for q in range(1, 10)]
    out["psi"] = sa.psi(deciles, sb.shares_through(deciles))
    changed = int((_tiers(a, hot=hot, warm=warm) != _tiers(b, hot=hot, warm=warm)).sum())
    lo, hi = wilson_interval(changed, n)
    out |= {"tier_change_share": changed / n, "tier_change_share_lo": lo, "tier_change_share_hi": hi}
    return out


def load_challenger(
    registry: Registry, *, production: ResolvedVersion, policy: LoadPolicy, check_inputs: Callable[[list[str]], None]
) -> Shadow | None:
    """The run's challenger: None when no version carries the alias or it is production's own version; else a
    `Shadow`, loaded under the same ``policy`` as production, or holding why it could not be (never raised:
    production's run goes on)."""
    try:
        resolved = registry.resolve_challenger()
    except Exception as exc:  # the registry is production's too: reported, never in production's way
        log.error("challenger_unresolved", error=_line(exc), exc_info=exc)
        return Shadow(resolved=None, model=None, error=f"the challenger alias could not be read: {_line(exc)}")
    if resolved is None or resolved.version == production.version:
        return None
    try:
        model = registry.load(resolved, policy=policy)
        check_inputs(model.input_names)
    except Exception as exc:
        log.error("challenger_not_loaded", version=resolved.version, error=_line(exc), exc_info=exc)
        return Shadow(resolved=resolved, model=None, error=f"version {resolved.version} did not load: {_line(exc)}")
    log.info("challenger_loaded", version=resolved.version, features=len(model.input_names))
    return Shadow(resolved=resolved, model=model)


def not_shadowed(registry: Registry, *, production: ResolvedVersion, engine: str) -> str | None:
    """For a run that does not shadow-score (``lead-scorer spark run``): the description's line saying so when a
    challenger is set, so nobody reads its absence from the run as agreement. None when there is no challenger."""
    try:
        challenger = registry.resolve_challenger()
    except Exception as exc:  # only a sentence in the description depends on it
        log.warning("challenger_unresolved", error=_line(exc))
        return None
    if challenger is None or challenger.version == production.version:
        return None
    return (
        f"**Challenger v{challenger.version} was not shadow-scored**: {engine} runs score production only. "
        "The daily `lead-scorer run` shadow-scores it (docs/champion-challenger.md)."
    )


def _line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"[:300]


@dataclass(kw_only=True)
class Shadow:
    """One run's challenger: scores each batch beside production (`score`), keeps the rescored pairs
    (`add`), and says what it found (`metrics`, `artifacts`, `describe`)."""

    resolved: ResolvedVersion | None
    model: LoadedModel | None
    error: str | None = None  # why it did not load, or the first batch it failed to score
    #: The rescored leads' scores, per written batch (production's, the challenger's, the ids).
    _production: list[np.ndarray] = field(default_factory=list)
    _challenger: list[np.ndarray] = field(default_factory=list)
    _worst: list[tuple[float, str, float, float]] = field(default_factory=list)
    population: dict[str, float] | None = None
    kept: bool = True  # its scores went to the shadow table (False: the store has none)

    @property
    def active(self) -> bool:
        return self.model is not None and self.error is None

    @property
    def identity(self) -> str:
        return self.resolved.identity if self.resolved is not None else ""

    @property
    def input_names(self) -> list[str]:
        return list(self.model.input_names) if self.model is not None else []

    def score(
        self, user_ids: Sequence[Any], features: pd.DataFrame, *, check: Callable[[np.ndarray], np.ndarray]
    ) -> ShadowWrite | None:
        """The challenger's scores of a batch from production's features, checked as production's are; None
        once it has failed (the failure is kept, production's batch goes on)."""
        if not self.active or self.model is None:
            return None
        try:
            scores = check(self.model.predict_scores(features))
        except Exception as exc:
            self.drop(f"it failed to score: {_line(exc)}")
            log.error("challenger_failed", error=self.error, exc_info=exc)
            return None
        return ShadowWrite(model=self.identity, user_ids=list(user_ids), scores=scores)

    def drop(self, why: str) -> None:
        """Stop shadow-scoring for the rest of the run, keeping why (the run's description says it)."""
        version = self.resolved.version if self.resolved is not None else "?"
        self.error = f"version {version}: {why}"

    def add(self, write: ShadowWrite, production: np.ndarray) -> None:
        """A written batch: its production and challenger scores join the run's comparison."""
        b = np.asarray(write.scores, dtype=np.float64)
        self._production.append(production)
        self._challenger.append(b)
        gap = np.abs(production - b)
        keep = np.argsort(-gap, kind="stable")[:DISAGREEMENTS]
        self._worst += [(float(gap[i]), str(write.user_ids[i]), float(production[i]), float(b[i])) for i in keep]
        self._worst = sorted(self._worst, key=lambda w: -w[0])[:DISAGREEMENTS]

    def compare_population(
        self, store: ScoringSource, *, production: str, leads_only: bool, hot: float, warm: float
    ) -> None:
        """Every lead holding production's current score and this challenger's shadow score (not only today's
        rescored ones). A store that cannot say, or fails to, leaves the population figures out."""
        if not self.active or not self.kept:
            return
        try:
            pairs = store.shadow_pairs(production=production, challenger=self.identity, leads_only=leads_only)
        except Exception as exc:  # production's scores are written: no challenger figure is worth a failed run
            log.error("challenger_population_unread", error=_line(exc), exc_info=exc)
            return
        if pairs is not None:
            self.population = compare_scores(pairs.production, pairs.challenger, hot=hot, warm=warm)

    def metrics(self, *, hot: float, warm: float) -> dict[str, float]:
        """The run's ``challenger/`` metrics (rounded to 4 decimals, as the run's others)."""
        out: dict[str, float] = {"challenger/failed": 0.0 if self.active else 1.0}
        if self.resolved is not None:
            out["challenger/version"] = float(self.resolved.version)
        if self.active:
            a = np.concatenate(self._production) if self._production else np.empty(0)
            b = np.concatenate(self._challenger) if self._challenger else np.empty(0)
            out |= {f"challenger/{k}": v for k, v in compare_scores(a, b, hot=hot, warm=warm).items()}
            out |= {f"challenger/population_{k}": v for k, v in (self.population or {}).items()}
        return {k: round(v, 4) for k, v in out.items()}

    def artifacts(self) -> dict[str, Any]:
        """The leads on which the two disagree most: ids and both scores, never row data."""
        if not self.active:
            return {}
        return {
            "challenger_disagreements.json": [
                {"user_id": uid, "production": a, "challenger": b} for _, uid, a, b in self._worst
            ]
        }

    def describe(self, metrics: dict[str, float]) -> str:
        """The run description's line about the challenger."""
        version = f"v{self.resolved.version}" if self.resolved is not None else "(unknown version)"
        if self.model is None:
            return f"**Challenger {version} was not shadow-scored**: {self.error}. Production's scores are unaffected."
        if not self.active:
            return (
                f"**Challenger {version} stopped being shadow-scored mid-run**: {self.error}. Production's scores "
                "are unaffected; no comparison is reported for a part of the run."
            )
        n = int(metrics.get("challenger/n", 0))
        if not n:
            return f"Challenger {version}: no lead was rescored, so nothing was compared."
        line = f"Challenger {version} shadow-scored {n:,} leads (into lead_score_shadow, not users)"
        if "challenger/rank_corr" in metrics:
            line += (
                f": rank correlation with production {metrics['challenger/rank_corr']:.2f} "
                f"[{metrics['challenger/rank_corr_lo']:.2f}, {metrics['challenger/rank_corr_hi']:.2f}]"
            )
        line += (
            f", top-decile overlap {metrics['challenger/top_decile_overlap']:.0%}, "
            f"{metrics['challenger/tier_change_share']:.0%} would change tier, PSI {metrics['challenger/psi']:.2f}"
        )
        pop = metrics.get("challenger/population_rank_corr")
        if pop is not None:
            both = int(metrics["challenger/population_n"])
            line += f"; over {both:,} leads scored by both, rank correlation {pop:.2f}"
        if not self.kept:
            line += (
                ". Its scores were compared but not kept: the table lead_score_shadow is missing "
                "(apply `lead-scorer db migrate`, or paste `lead-scorer db sql`)"
            )
        return line + ". The leads they disagree on most: `challenger_disagreements.json`."
