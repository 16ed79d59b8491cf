"""How well scores ranked and predicted who converted: ROC AUC with DeLong's interval (one AUC, or the paired
difference of two AUCs on the same leads), PR AUC, lift, capture, Brier, calibration. numpy and scipy only,
no store, no scikit-learn: training's holdout and live cohorts are measured by the same functions.

>>> y = np.array([1, 1, 1, 0, 0, 0, 0])
>>> p = np.array([0.9, 0.6, 0.4, 0.6, 0.3, 0.2, 0.1])
>>> auc = delong(y, p)
>>> round(auc.auc, 4), round(auc.variance, 6), round(auc.lo, 4), auc.hi
(0.875, 0.020833, 0.5921, 1.0)

Why DeLong and not a bootstrap: the AUC is a two-sample U-statistic, and DeLong, DeLong & Clarke-Pearson (1988)
give its variance in closed form from each lead's placement among the other class (its "structural
components"). Computed with midranks (Sun & Xu 2014) it is exact for tied scores (a tie counts one half, as
in the AUC itself), costs one sort, O(n log n), instead of a thousand resamples of a million leads, and gives
the same figure every time it is asked (a bootstrap's interval moves with its seed, which would make the
version's live tags wobble between two evaluations of the same cohort). The same components give the
covariance of two AUCs measured on the same leads, so the paired test of issue 23 is the same arithmetic.
The interval is the normal one, ``auc ± 1.96·se``, clipped to [0, 1] ([-1, 1] for a difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "Z95",
    "AucInterval",
    "PairedAuc",
    "average_precision",
    "classification_metrics",
    "delong",
    "delong_paired",
    "expected_calibration_error",
    "ranking_metrics",
    "reliability_table",
]

#: The two-sided 95 % normal quantile.
Z95 = 1.959963984540054


@dataclass(frozen=True, kw_only=True)
class AucInterval:
    """One ROC AUC, its DeLong variance, and the 95 % interval (``lo``, ``hi``; None with fewer than two leads
    in a class, where the variance is not defined)."""

    auc: float
    variance: float | None
    lo: float | None
    hi: float | None


@dataclass(frozen=True, kw_only=True)
class PairedAuc:
    """Two ROC AUCs on the same leads and their difference ``diff = auc_b - auc_a`` with its DeLong variance
    (which subtracts twice their covariance) and 95 % interval."""

    auc_a: float
    auc_b: float
    diff: float
    variance: float | None
    lo: float | None
    hi: float | None


def _split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).ravel().astype(bool)
    return np.flatnonzero(y), np.flatnonzero(~y)


def _components(pos: np.ndarray, neg: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The AUC and DeLong's structural components: for each positive, the share of negatives it outranks
    (``v10``); for each negative, the share of positives that outrank it (``v01``). Ties count one half."""
    m, n = len(pos), len(neg)
    x, z = p[pos], p[neg]
    rank_all = rankdata(np.concatenate([x, z]))  # midranks: exact for ties
    rank_x, rank_z = rankdata(x), rankdata(z)
    v10 = (rank_all[:m] - rank_x) / n  # negatives below a positive (ties half) / n
    v01 = 1.0 - (rank_all[m:] - rank_z) / m  # positives above a negative (ties half) / m
    auc = float((rank_all[:m].sum() - m * (m + 1) / 2) / (m * n))
    return auc, v10, v01


def delong(y: np.ndarray, p: np.ndarray) -> AucInterval | None:
    """ROC AUC of scores ``p`` for labels ``y`` (1 = converted) with DeLong's variance and 95 % interval.

    None when a class is empty (no AUC exists); the interval is None with a single lead in a class.

    >>> delong(np.array([1, 0]), np.array([0.7, 0.2]))
    AucInterval(auc=1.0, variance=None, lo=None, hi=None)
    >>> delong(np.array([0, 0]), np.array([0.7, 0.2])) is None
    True
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    pos, neg = _split(y)
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return None
    auc, v10, v01 = _components(pos, neg, p)
    if m < 2 or n < 2:
        return AucInterval(auc=auc, variance=None, lo=None, hi=None)
    variance = float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
    half = Z95 * np.sqrt(variance)
    return AucInterval(auc=auc, variance=variance, lo=float(max(auc - half, 0.0)), hi=float(min(auc + half, 1.0)))


def delong_paired(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> PairedAuc | None:
    """DeLong's paired test: the difference ``auc(b) - auc(a)`` of two score vectors on the same leads (same
    order), with its variance ``var_a + var_b - 2 cov_ab`` and 95 % interval, clipped to [-1, 1].

    None when a class is empty; the interval is None with a single lead in a class.

    >>> y = np.array([1, 1, 0, 0])
    >>> d = delong_paired(y, np.array([0.9, 0.8, 0.2, 0.1]), np.array([0.1, 0.2, 0.8, 0.9]))
    >>> d.auc_a, d.auc_b, d.diff
    (1.0, 0.0, -1.0)
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ValueError(f"{len(a)} scores against {len(b)}: a paired test needs the same leads")
    pos, neg = _split(y)
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return None
    auc_a, v10a, v01a = _components(pos, neg, a)
    auc_b, v10b, v01b = _components(pos, neg, b)
    diff = auc_b - auc_a
    if m < 2 or n < 2:
        return PairedAuc(auc_a=auc_a, auc_b=auc_b, diff=diff, variance=None, lo=None, hi=None)
    s10 = np.cov(np.vstack([v10a, v10b]), ddof=1)
    s01 = np.cov(np.vstack([v01a, v01b]), ddof=1)
    contrast = np.array([-1.0, 1.0])
    variance = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    half = Z95 * np.sqrt(max(variance, 0.0))
    return PairedAuc(
        auc_a=auc_a,
        auc_b=auc_b,
        diff=diff,
        variance=variance,
        lo=float(max(diff - half, -1.0)),
        hi=float(min(diff + half, 1.0)),
    )


def average_precision(y: np.ndarray, p: np.ndarray) -> float | None:
    """PR AUC as average precision (scikit-learn's definition: precision at each distinct score, weighted by
    the recall it adds); None with no positive.

    >>> average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    0.8333333333333333
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    total = y.sum()
    if total == 0:
        return None
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # the last lead of each distinct score
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / total
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Top-decile lift (the conversion rate of the top tenth of scores over the average) and top-20 % capture
    (the share of all conversions in the top fifth). Rank ties are broken by row order.

    >>> ranking_metrics(np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1]), np.linspace(1, 0, 10))
    {'top_decile_lift': 5.0, 'top20_capture': 0.5}
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    order = np.argsort(-p, kind="stable")
    y_sorted = y[order]
    total = max(int(y.sum()), 1)
    top10 = y_sorted[: max(len(y) // 10, 1)]
    top20 = y_sorted[: max(len(y) // 5, 1)]
    base_rate = y.mean() if len(y) else 0.0
    return {
        "top_decile_lift": float(top10.mean() / base_rate) if base_rate > 0 else 0.0,
        "top20_capture": float(top20.sum() / total),
    }


def reliability_table(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> list[dict[str, float]]:
    """Predicted against observed conversion rate in equal-count bins of the score (deciles by default).

    Bin ``i`` holds the users ranked ``i/bins`` to ``(i+1)/bins`` by score. Users with the same score
    share one bin (the one their middle rank falls in), so the table does not depend on row order; a bin
    left empty that way (a tie larger than a bin, e.g. every zero-activity user) is omitted.

    >>> reliability_table(np.array([0, 1, 1, 1]), np.array([0.125, 0.375, 0.625, 0.875]), bins=2)
    [{'bin': 0, 'count': 2, 'mean_predicted': 0.25, 'observed_rate': 0.5},
     {'bin': 1, 'count': 2, 'mean_predicted': 0.75, 'observed_rate': 1.0}]
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    n = len(p)
    if n == 0:
        return []
    order = np.argsort(p, kind="stable")
    s = p[order]
    middle = (np.searchsorted(s, s, side="left") + np.searchsorted(s, s, side="right") - 1) // 2
    which = np.empty(n, dtype=np.int64)
    which[order] = middle * bins // n
    count = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, weights=p, minlength=bins)
    observed = np.bincount(which, weights=y, minlength=bins)
    return [
        {
            "bin": i,
            "count": int(count[i]),
            "mean_predicted": float(predicted[i] / count[i]),
            "observed_rate": float(observed[i] / count[i]),
        }
        for i in range(bins)
        if count[i]
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> float:
    """How far, on average over users, the score is from the observed rate: the count-weighted mean of
    ``|observed_rate - mean_predicted|`` over the bins of `reliability_table`.

    >>> expected_calibration_error(np.array([0, 1, 1, 1]), np.array([0.125, 0.375, 0.625, 0.875]), bins=2)
    0.25
    """
    table = reliability_table(y, p, bins=bins)
    if not table:
        raise ValueError("no scores to measure calibration on")
    total = sum(row["count"] for row in table)
    return float(sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table) / total)


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Every figure of one cohort (or of pooled cohorts): ``n``, ``positives``, ``roc_auc`` and
    ``roc_auc_ci`` (DeLong, 95 %), ``pr_auc``, ``top_decile_lift``, ``top20_capture``, ``brier``, ``ece`` and
    its ``reliability`` table. With no positive or no negative, the AUCs and lift are None and ``reason``
    says why; nothing raises on an empty or one-class cohort.

    >>> m = classification_metrics(np.array([1, 1, 1, 0, 0, 0, 0]), np.array([0.9, 0.6, 0.4, 0.6, 0.3, 0.2, 0.1]))
    >>> m["n"], m["positives"], m["roc_auc"], [round(x, 4) for x in m["roc_auc_ci"]]
    (7, 3, 0.875, [0.5921, 1.0])
    >>> classification_metrics(np.zeros(4), np.full(4, 0.1))["reason"]
    'no lead converted: an AUC needs both converted and unconverted leads'
    """
    y = np.asarray(y, dtype=np.int64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    n, positives = len(y), int(y.sum())
    out: dict[str, Any] = {
        "n": n,
        "positives": positives,
        "roc_auc": None,
        "roc_auc_ci": None,
        "pr_auc": None,
        "top_decile_lift": None,
        "top20_capture": None,
        "brier": float(np.mean((p - y) ** 2)) if n else None,
        "ece": expected_calibration_error(y, p) if n else None,
        "reliability": reliability_table(y, p),
        "reason": None,
    }
    if n == 0:
        out["reason"] = "no lead in the cohort"
        return out
    if positives == 0 or positives == n:
        what = "no lead converted" if positives == 0 else "every lead converted"
        out["reason"] = f"{what}: an AUC needs both converted and unconverted leads"
        return out
    auc = delong(y, p)
    assert auc is not None  # both classes are present
    out["roc_auc"] = auc.auc
    out["roc_auc_ci"] = None if auc.lo is None else [auc.lo, auc.hi]
    out["pr_auc"] = average_precision(y, p)
    out |= ranking_metrics(y, p)
    return out
