"""The live metrics (`models.metrics`) against hand computations and the textbook definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.metrics import Z95, average_precision, classification_metrics, delong, delong_paired

# 3 converted and 4 unconverted leads; the positive at 0.6 ties the negative at 0.6.
Y = np.array([1, 1, 1, 0, 0, 0, 0])
A = np.array([0.9, 0.6, 0.4, 0.6, 0.3, 0.2, 0.1])
B = np.array([0.5, 0.7, 0.2, 0.6, 0.1, 0.3, 0.4])


def test_delong_by_hand() -> None:
    # Pairs (positive, negative) the positive wins, a tie counting 1/2:
    #   0.9 beats all 4; 0.6 ties 0.6 and beats 0.3, 0.2, 0.1 (3.5); 0.4 beats 0.3, 0.2, 0.1 (3).
    #   AUC = (4 + 3.5 + 3) / 12 = 7/8.
    # DeLong's components: per positive, the share of negatives it beats: V10 = [1, 7/8, 3/4] (mean 7/8);
    #   per negative, the share of positives above it: V01 = [1/2, 1, 1, 1] (mean 7/8).
    # S10 = ((1/8)² + 0 + (1/8)²) / 2 = 1/64; S01 = ((3/8)² + 3 (1/8)²) / 3 = 1/16.
    # var = S10/3 + S01/4 = 1/192 + 3/192 = 1/48; se = 0.1443; 95 %: 7/8 ± 1.96 * 0.1443 = [0.592, 1.158] → hi 1.
    auc = delong(Y, A)
    assert auc is not None
    assert auc.auc == pytest.approx(7 / 8, abs=1e-12)
    assert auc.variance == pytest.approx(1 / 48, abs=1e-12)
    assert auc.lo == pytest.approx(7 / 8 - Z95 * math.sqrt(1 / 48), abs=1e-12)
    assert auc.hi == 1.0
    assert auc.auc == pytest.approx(roc_auc_score(Y, A))


def test_paired_delong_by_hand() -> None:
    # B: positives 0.5, 0.7, 0.2; negatives 0.6, 0.1, 0.3, 0.4.
    #   V10_b = [3/4, 1, 1/4] (AUC_b = 2/3); V01_b = [1/3, 1, 2/3, 2/3].
    #   S10_b = ((1/12)² + (1/3)² + (5/12)²) / 2 = 7/48;  S01_b = ((1/3)² + (1/3)²) / 3 = 2/27.
    #   var_b = 7/48/3 + 2/27/4 = 29/432.
    # Covariances with A's components: C10 = (1/8 · 1/12 + (-1/8)(-5/12)) / 2 = 1/32;
    #   C01 = ((-3/8)(-1/3) + 1/8 · 1/3) / 3 = 1/18;  cov = 1/32/3 + 1/18/4 = 7/288.
    # var(diff) = 1/48 + 29/432 - 2 · 7/288 = 17/432; diff = 2/3 - 7/8 = -5/24.
    d = delong_paired(Y, A, B)
    assert d is not None
    assert (d.auc_a, d.auc_b) == (pytest.approx(7 / 8), pytest.approx(2 / 3))
    assert d.diff == pytest.approx(-5 / 24, abs=1e-12)
    assert d.variance == pytest.approx(17 / 432, abs=1e-12)
    half = Z95 * math.sqrt(17 / 432)
    assert (d.lo, d.hi) == (pytest.approx(-5 / 24 - half), pytest.approx(-5 / 24 + half))
    assert d.lo < 0 < d.hi  # seven leads cannot tell these two apart


def test_paired_delong_of_reversed_scores() -> None:
    # 1 - A reverses every comparison (ties stay ties): AUC 1/8, components 1 - V, so cov = -var and
    # var(diff) = 4 var_a = 1/12; diff = 1/8 - 7/8 = -3/4, interval -3/4 ± 1.96 √(1/12) → [-1, -0.184].
    d = delong_paired(Y, A, 1 - A)
    assert d is not None
    assert d.auc_b == pytest.approx(1 / 8)
    assert d.diff == pytest.approx(-3 / 4)
    assert d.variance == pytest.approx(1 / 12)
    assert d.lo == -1.0
    assert d.hi == pytest.approx(-3 / 4 + Z95 * math.sqrt(1 / 12))


def _brute_force(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """DeLong from its definition, O(m n): the placement of every lead against every lead of the other class."""
    x, z = p[y == 1], p[y == 0]
    psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(v10.var(ddof=1) / len(x) + v01.var(ddof=1) / len(z))


def test_delong_matches_its_definition_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.round(rng.random(400) * 0.5 + 0.3 * y, 1)  # one decimal: ties everywhere
    auc, variance = _brute_force(y, p)
    got = delong(y, p)
    assert got is not None
    assert got.auc == pytest.approx(auc, abs=1e-12)
    assert got.variance == pytest.approx(variance, rel=1e-9)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_one_class_and_single_leads_are_reported_not_raised() -> None:
    assert delong(np.zeros(3), np.array([0.1, 0.2, 0.3])) is None
    single = delong(np.array([1, 0, 0]), np.array([0.9, 0.2, 0.3]))
    assert single is not None and single.auc == 1.0 and single.lo is None
    m = classification_metrics(np.ones(5), np.full(5, 0.4))
    assert (m["n"], m["positives"], m["roc_auc"], m["roc_auc_ci"]) == (5, 5, None, None)
    assert m["reason"].startswith("every lead converted")
    empty = classification_metrics(np.zeros(0), np.zeros(0))
    assert (empty["n"], empty["roc_auc"], empty["reason"]) == (0, None, "no lead in the cohort")


def test_cohort_metrics_by_hand() -> None:
    m = classification_metrics(Y, A)
    # Top decile of 7 leads = the top 1 (0.9, converted): rate 1 against 3/7 → lift 7/3.
    # Top 20 % = the top 1 as well: 1 of 3 conversions.
    assert m["top_decile_lift"] == pytest.approx(7 / 3)
    assert m["top20_capture"] == pytest.approx(1 / 3)
    # Brier: mean of (p - y)²: (0.01 + 0.16 + 0.36 + 0.36 + 0.09 + 0.04 + 0.01) / 7 = 1.03 / 7.
    assert m["brier"] == pytest.approx(1.03 / 7)
    assert m["pr_auc"] == pytest.approx(average_precision_score(Y, A))
