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

    @classmethod
    def from_histogram(cls, counts: np.ndarray) -> ScoreStats:
        """Stats of scores known only by their `BINS`-bin histogram (the population the database holds):
        moments from the bins' centres, extremes from the outermost non-empty bins, within 0.001."""
        hist = np.asarray(counts, dtype=np.int64)
        if len(hist) != BINS:
            raise ValueError(f"expected {BINS} bins, got {len(hist)}")
        out = cls(hist=hist.copy())
        total = int(hist.sum())
        if total:
            centres = (np.arange(BINS) + 0.5) / BINS
            out.count = total
            out.total = float((hist * centres).sum())
            out.total_sq = float((hist * centres**2).sum())
            filled = np.flatnonzero(hist)
            out.minimum = float(filled[0] / BINS)
            out.maximum = float((filled[-1] + 1) / BINS)
        return out

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

    def shares_through(self, edges: list[float]) -> list[float]:
        """For each edge, the share of scores in the histogram bins up to and including the one it falls in.

        What `psi` measures of today's scores at each reference edge; measured the same way on the training
        holdout, it is the reference's own share there (kept with the model version), so both sides of the
        index are counted on the same bins.
        """
        if not self.count:
            return [0.0] * len(edges)
        cum = np.cumsum(self.hist)
        return [float(cum[_top(e) - 1] / self.count) for e in edges]

    def psi(self, decile_edges: list[float], shares: list[float] | None = None) -> float:
        """Population stability index against a reference whose deciles are ``decile_edges``.

        ``shares`` are the reference's `shares_through` its own edges (the training holdout's, kept with
        the model version): what the reference really holds through each edge, counted on the bins today's
        scores are counted on. Nominal 10 % per decile are not that when an edge falls on a point mass (the
        leads with no activity, 10 to 16 % of them, share one score: the bin of the edge at it holds the
        whole mass) or when a 0.001-wide bin is a sizeable part of a decile (low scores are a few thousandths
        apart); then the same kind of data read as a drift of 0.04 to 0.92, depending on where the day's
        training put the edges. Without ``shares`` (a version trained before they were kept) the reference
        is taken to hold 10 % per decile.

        Edges in one histogram bin merge into one boundary (many leads with no activity share one score),
        as does a boundary below which the reference holds nothing more, instead of empty bins that would
        each add ~0.7 to the index.
        """
        if not self.count or len(decile_edges) != 9:
            return 0.0
        if shares is None or len(shares) != len(decile_edges):
            shares = [k / 10 for k in range(1, 10)]
        tops = [_top(edge) for edge in decile_edges]
        cum = np.cumsum(self.hist)
        cum_expected, cum_actual = [0.0], [0.0]
        for k, (top, share) in enumerate(zip(tops, shares, strict=True)):
            if k < 8 and tops[k + 1] <= top:
                continue  # in the same bin as the next edge: that one closes the merged bin
            if share - cum_expected[-1] < _EMPTY or share > 1.0 - _EMPTY:
                continue  # the reference holds nothing between the two: one bin
            cum_expected.append(float(share))
            cum_actual.append(float(cum[top - 1] / self.count))
        cum_expected.append(1.0)
        cum_actual.append(1.0)
        expected = np.diff(cum_expected)
        actual = np.clip(np.diff(cum_actual), 1e-4, None)
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

    def histogram_svg(self, *, title: str, bins: int = 20, marks: dict[str, float] | None = None) -> str:
        """The coarse histogram as a small SVG bar chart, which the MLflow UI shows as an image.

        Written by hand rather than with matplotlib: the image has no plotting library, and
        importing one cost the job more than a second.

        >>> stats = ScoreStats()
        >>> stats.add(np.array([0.1, 0.2, 0.9]))
        >>> svg = stats.histogram_svg(title="model v3: 3 users", marks={"hot": 0.8})
        >>> svg.startswith("<svg") and svg.count("<rect") == 1 + 20  # the background and one bar per bin
        True
        """
        counts = self.coarse_histogram(bins)["counts"]
        width, height, left, bottom, top = 600, 300, 60, 40, 30
        plot_w, plot_h = width - left - 20, height - top - bottom
        peak = max(max(counts), 1)
        bar_w = plot_w / bins
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{_xml(title)}</text>',
        ]
        for i, c in enumerate(counts):
            h = plot_h * int(c) / peak
            x = left + i * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                f'fill="#1f77b4"><title>{i / bins:.2f} to {(i + 1) / bins:.2f}: {int(c):,} users</title></rect>'
            )
        axis_y = top + plot_h
        parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="black"/>')
        parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="black"/>')
        for tick in range(0, 11, 2):
            x = left + plot_w * tick / 10
            parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{tick / 10:.1f}</text>')
        for label, at in (marks or {}).items():
            # A tier threshold, dashed across the bars, named at the top.
            x = left + plot_w * min(max(at, 0.0), 1.0)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#d62728" stroke-dasharray="4 3"/>'
            )
            parts.append(f'<text x="{x + 3:.1f}" y="{top + 12}" fill="#d62728">{_xml(label)} ≥ {at:g}</text>')
        parts.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak:,}</text>')
        parts.append(f'<text x="{left - 6}" y="{axis_y}" text-anchor="end">0</text>')
        parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">lead_score</text>')
        parts.append(
            f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {top + plot_h / 2})">users</text>'
        )
        parts.append("</svg>")
        return "\n".join(parts)


#: A reference share below this is no bin at all (a boundary below which nothing more lies merges upward).
_EMPTY = 1e-9


def _top(edge: float) -> int:
    """How many histogram bins an edge closes: those below it and the one it falls in."""
    return min(int(min(max(edge, 0.0), 1.0) * BINS) + 1, BINS)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
