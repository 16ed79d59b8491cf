"""Score distribution in bounded memory: running moments plus a fixed 1,000-bin histogram.

A run over millions of users never keeps the scores themselves; quantiles come from the
histogram (resolution 0.001, plenty for a probability).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BINS", "ScoreStats"]

BINS = 1_000


@dataclass
class ScoreStats:
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, scores: np.ndarray) -> None:
        if len(scores) == 0:
            return
        s = np.asarray(scores, dtype=np.float64)
        self.count += len(s)
        self.total += float(s.sum())
        self.total_sq += float(np.square(s).sum())
        self.minimum = min(self.minimum, float(s.min()))
        self.maximum = max(self.maximum, float(s.max()))
        self.hist += np.bincount(np.minimum((s * BINS).astype(np.int64), BINS - 1), minlength=BINS)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        if not self.count:
            return 0.0
        return float(np.sqrt(max(self.total_sq / self.count - self.mean**2, 0.0)))

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bin where the cumulative count crosses ``q``."""
        if not self.count:
            return 0.0
        cum = np.cumsum(self.hist)
        target = q * self.count
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, BINS - 1)
        before = cum[i - 1] if i else 0
        inside = self.hist[i]
        frac = (target - before) / inside if inside else 0.0
        value = (i + frac) / BINS
        return float(min(max(value, self.minimum), self.maximum))

    def share_below(self, x: float) -> float:
        """Share of scores below ``x``, interpolated inside its histogram bin."""
        if not self.count:
            return 0.0
        pos = min(max(x, 0.0), 1.0) * BINS
        i = min(int(pos), BINS - 1)
        below = self.hist[:i].sum() + self.hist[i] * (pos - i)
        return float(below / self.count)

    def psi(self, decile_edges: list[float]) -> float:
        """Population stability index against a reference whose deciles are ``decile_edges`` (10 % each)."""
        if not self.count or len(decile_edges) != 9:
            return 0.0
        cum = [0.0, *(self.share_below(e) for e in decile_edges), 1.0]
        actual = np.clip(np.diff(cum), 1e-4, None)
        expected = np.full(10, 0.1)
        return float(np.sum((actual - expected) * np.log(actual / expected)))

    def share_at_least(self, threshold: float) -> float:
        if not self.count:
            return 0.0
        return float(self.hist[int(threshold * BINS) :].sum() / self.count)

    def summary(self) -> dict[str, float]:
        out = {
            "score_mean": self.mean,
            "score_std": self.std,
            "score_min": self.minimum if self.count else 0.0,
            "score_max": self.maximum if self.count else 0.0,
        }
        for p in range(10, 100, 10):
            out[f"score_p{p}"] = self.quantile(p / 100)
        return out

    def coarse_histogram(self, bins: int = 20) -> dict[str, list[float] | list[int]]:
        counts = self.hist.reshape(bins, BINS // bins).sum(axis=1)
        return {"edges": [i / bins for i in range(bins + 1)], "counts": [int(c) for c in counts]}
