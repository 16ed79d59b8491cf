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

    def share_below(self, x: float) -> float:
        """Share of scores below ``x``, interpolated inside its histogram bin."""
        if not self.count:
            return 0.0
        pos = min(max(x, 0.0), 1.0) * BINS
        i = min(int(pos), BINS - 1)
        below = self.hist[:i].sum() + self.hist[i] * (pos - i)
        return float(below / self.count)

    def psi(self, decile_edges: list[float]) -> float:
        """Population stability index against a reference whose deciles are ``decile_edges`` (10 % each).

        Equal edges mean the reference has a point mass there (many leads with no activity share one
        score): their deciles merge into one bin holding all of it, instead of empty bins that would each
        add ~0.7 to the index. An edge counts the whole 0.001-wide histogram bin it falls in.
        """
        if not self.count or len(decile_edges) != 9:
            return 0.0
        cum_expected, cum_actual = [0.0], [0.0]
        for k, edge in enumerate(decile_edges, start=1):
            if k < 9 and round(decile_edges[k], 6) <= round(edge, 6):
                continue  # tied with the next edge: that one closes the merged bin
            cum_expected.append(k / 10)
            top = min(int(min(max(edge, 0.0), 1.0) * BINS) + 1, BINS)
            cum_actual.append(float(self.hist[:top].sum() / self.count))
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

        >>> svg = stats.histogram_svg(title="model v3: 120,000 users")
        """
        counts = self.coarse_histogram(bins)["counts"]
        width, height, left, bottom, top = 600, 300, 60, 40, 30
        plot_w, plot_h = width - left - 20, height - top - bottom
        peak = max(max(counts), 1)  # type: ignore[type-var]
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


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
