"""The live metrics (`models.metrics`) against hand computations and the textbook definitions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.metrics import (
    Z95,
    average_precision,
    brier_interval,
    classification_metrics,
    delong,
    delong_paired,
    ece_interval,
    expected_calibration_error,
    pr_auc_interval,
    ranking_intervals,
    wilson_interval,
)

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


FIGURES = ("roc_auc", "pr_auc", "top_decile_lift", "top20_capture", "brier", "ece")


def test_an_interval_is_none_where_its_figure_is() -> None:
    # One class: no AUC, AP, lift or capture, so no interval of theirs; Brier and ECE exist and keep theirs.
    for y in (np.zeros(20), np.ones(20)):
        m = classification_metrics(y, np.linspace(0.05, 0.95, 20))
        for k in FIGURES:
            assert (m[k] is None) == (m[f"{k}_ci"] is None), k
        assert m["pr_auc_ci"] is None and m["top_decile_lift_ci"] is None and m["top20_capture_ci"] is None
        lo, hi = m["brier_ci"]
        assert lo <= m["brier"] <= hi
        assert m["ece_ci"] is not None
    empty = classification_metrics(np.zeros(0), np.zeros(0))
    assert all(empty[f"{k}_ci"] is None for k in FIGURES)
    one = classification_metrics(np.array([1]), np.array([0.3]))
    assert one["brier"] == pytest.approx(0.49) and one["brier_ci"] is None  # one lead: no spread to measure
    assert ranking_intervals(np.zeros(5), np.full(5, 0.2)) == {"top_decile_lift_ci": None, "top20_capture_ci": None}
    assert pr_auc_interval(1.0, positives=40) is None  # AP = 1: the logit is infinite
    assert pr_auc_interval(0.5, positives=0) is None


def test_wilson_by_hand() -> None:
    # z² = 3.8415. 1 of 1: centre (1 + z²/2) / (1 + z²) = 2.9207 / 4.8415 = 0.6033,
    #   half z √(0 + z²/4) / (1 + z²) = 1.96 · 0.98 / 4.8415 = 0.3967 → [0.2065, 1].
    # 1 of 3: centre (1/3 + z²/6) / (1 + z²/3) = 0.9736 / 2.2805 = 0.4269,
    #   half 1.96 √(2/27 + z²/36) / 2.2805 = 1.96 · 0.4252 / 2.2805 = 0.3654 → [0.0615, 0.7923].
    assert wilson_interval(1, 1) == (pytest.approx(0.2065, abs=1e-4), 1.0)
    assert wilson_interval(1, 3) == (pytest.approx(0.0615, abs=1e-4), pytest.approx(0.7923, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no trial: nothing known
    with pytest.raises(ValueError, match="3 successes in 2 trials"):
        wilson_interval(3, 2)


def test_lift_and_capture_intervals_by_hand() -> None:
    # 10 leads, 2 converted (base rate 0.2), ranked first and last.
    #   Top decile = the top 1 lead, converted: rate 1, lift 1 / 0.2 = 5; Wilson of 1/1 = [0.2065, 1]
    #   → lift interval [0.2065 / 0.2, 1 / 0.2] = [1.03, 5].
    #   Top fifth = the top 2 leads, 1 conversion of the 2: capture 0.5; Wilson of 1/2:
    #   centre (1/2 + z²/4) / (1 + z²/2) = 1/2, half 1.96 √(1/8 + z²/16) / 2.9207 = 0.4055 → [0.0945, 0.9055].
    y, p = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1]), np.linspace(1, 0, 10)
    got = ranking_intervals(y, p)
    lo, hi = got["top_decile_lift_ci"] or [0.0, 0.0]
    assert (lo, hi) == (pytest.approx(0.20655 / 0.2, abs=1e-3), pytest.approx(5.0))
    assert got["top20_capture_ci"] == [pytest.approx(0.0945, abs=1e-4), pytest.approx(0.9055, abs=1e-4)]


def test_pr_auc_interval_by_hand() -> None:
    # Y, A by distinct score: 0.9 (1 converted): precision 1, recall 1/3; 0.6 (1 converted, 1 not): 2/3 at 2/3;
    #   0.4 (converted): 3/4 at 1. AP = (1 + 2/3 + 3/4) / 3 = 29/36.
    # Logit interval over the 3 positives: logit(29/36) = ln(29/7) = 1.4214;
    #   se = 1 / √(3 · 29/36 · 7/36) = 36 / √609 = 1.4588; 1.4214 ± 1.96 · 1.4588 = [-1.4378, 4.2806]
    #   → expit: [0.1919, 0.9864].
    assert average_precision(Y, A) == pytest.approx(29 / 36)
    lo, hi = pr_auc_interval(29 / 36, positives=3) or (0.0, 0.0)
    assert lo == pytest.approx(1 / (1 + math.exp(-(math.log(29 / 7) - Z95 * 36 / math.sqrt(609)))), abs=1e-12)
    assert hi == pytest.approx(1 / (1 + math.exp(-(math.log(29 / 7) + Z95 * 36 / math.sqrt(609)))), abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.1919, 0.9864)


def test_brier_interval_by_hand() -> None:
    # Y, A: squared errors 0.01, 0.16, 0.36, 0.36, 0.09, 0.04, 0.01: sum 1.03, sum of squares 0.2947.
    #   mean 1.03/7 = 0.1471; variance (0.2947 - 1.03²/7) / 6 = 0.02386; se √(0.02386/7) = 0.05838
    #   → 0.1471 ± 1.96 · 0.05838 = [0.0327, 0.2616].
    variance = (0.2947 - 1.03**2 / 7) / 6
    lo, hi = brier_interval(Y, A) or (0.0, 0.0)
    assert lo == pytest.approx(1.03 / 7 - Z95 * math.sqrt(variance / 7), abs=1e-12)
    assert hi == pytest.approx(1.03 / 7 + Z95 * math.sqrt(variance / 7), abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.0327, 0.2616)


def test_ece_interval_by_hand() -> None:
    # Two bins of unequal size (a tie of 600 scores fills the lower half and more; `reliability_table` keeps a
    #   tie in one bin). Low: 600 leads at 0.25, 150 converted: gap 0 (calibrated), var(y - p) = 0.25 · 0.75 ·
    #   600/599, se = √(var / 600) = 0.01769. High: 200 leads at 0.75, all converted: gap 0.25, no spread, exact.
    # ECE = ¾ · 0 + ¼ · 0.25 = 0.0625. Drawn: ECE* = 0.0625 + ¾ |N(0, se²)|, whose 2.5 and 97.5 percentiles are
    #   0.0625 + ¾ se · [Φ⁻¹(0.5125), Φ⁻¹(0.9875)] = 0.0625 + ¾ se · [0.0313, 2.2414]: the draws lie above the
    #   figure by the plug-in's upward bias at a calibrated bin. The basic bootstrap reflects them about the
    #   figure, [2 · 0.0625 - q97.5, 2 · 0.0625 - q2.5] = 0.0625 - ¾ se · [2.2414, 0.0313] = [0.03276, 0.06208],
    #   which takes that bias off (the true ECE here is 0.0625, so it is an interval that covers it).
    y = np.r_[np.ones(150), np.zeros(450), np.ones(200)]
    p = np.r_[np.full(600, 0.25), np.full(200, 0.75)]
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.0625)
    se = math.sqrt(0.25 * 0.75 * 600 / 599 / 600)
    got = ece_interval(y, p, bins=2)
    assert got is not None
    lo, hi = ((x - 0.0625) / (0.75 * se) for x in got)  # in units of the folded normal: 2,000 draws, so ± a little
    assert lo == pytest.approx(-2.2414, abs=0.2)
    assert hi == pytest.approx(-0.0313, abs=0.015)
    assert ece_interval(y, p, bins=2) == got  # a fixed seed: the same cohort, the same interval
    # A bin of one lead has no spread of its own: it takes 1/4, the widest a 0/1 outcome has; no NaN.
    lo1, hi1 = ece_interval(np.array([1]), np.array([0.5]), bins=1) or (math.nan, math.nan)
    assert 0.0 <= lo1 < 0.5 < hi1 and math.isfinite(hi1)


def test_classification_metrics_carry_each_interval_beside_its_figure() -> None:
    m = classification_metrics(Y, A)
    # Lift 7/3 (see below): Wilson of the top lead's 1/1 over the base rate 3/7 → [0.2065 · 7/3, 7/3].
    assert m["top_decile_lift_ci"] == [pytest.approx(wilson_interval(1, 1)[0] * 7 / 3), pytest.approx(7 / 3)]
    assert m["top20_capture_ci"] == [pytest.approx(0.0615, abs=1e-4), pytest.approx(0.7923, abs=1e-4)]
    assert m["pr_auc_ci"] == [pytest.approx(x) for x in pr_auc_interval(29 / 36, positives=3) or ()]
    assert m["brier_ci"] == [pytest.approx(x) for x in brier_interval(Y, A) or ()]
    assert m["ece_ci"] == list(ece_interval(Y, A) or ())
    # On a cohort of thousands every figure lies inside its interval, and the intervals are narrow.
    rng = np.random.default_rng(5)
    y = (rng.random(5_000) < 0.1).astype(int)
    p = np.clip(0.1 + 0.1 * (y - 0.1) + 0.05 * rng.standard_normal(5_000), 0.001, 0.999)
    big = classification_metrics(y, p)
    for k in FIGURES:
        lo, hi = big[f"{k}_ci"]
        assert lo <= big[k] <= hi, k
        assert hi - lo < 0.25 * max(big[k], 0.1) + 0.02, k


def test_cohort_metrics_by_hand() -> None:
    m = classification_metrics(Y, A)
    # Top decile of 7 leads = the top 1 (0.9, converted): rate 1 against 3/7 → lift 7/3.
    # Top 20 % = the top 1 as well: 1 of 3 conversions.
    assert m["top_decile_lift"] == pytest.approx(7 / 3)
    assert m["top20_capture"] == pytest.approx(1 / 3)
    # Brier: mean of (p - y)²: (0.01 + 0.16 + 0.36 + 0.36 + 0.09 + 0.04 + 0.01) / 7 = 1.03 / 7.
    assert m["brier"] == pytest.approx(1.03 / 7)
    assert m["pr_auc"] == pytest.approx(average_precision_score(Y, A))


def test_the_coverage_benchmark_runs(tmp_path: Path) -> None:
    # `python -m benchmarks.coverage` backs docs/live-performance.md's coverage table: it cannot rot.
    from benchmarks.coverage import main

    out = tmp_path / "coverage.json"
    main(["--sizes", "500", "--cohorts", "4", "--population", "20000", "--cost-size", "2000", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["sizes"]["500"]) == set(FIGURES)
    assert all(0.0 <= v["coverage"] <= 1.0 for v in result["sizes"]["500"].values())
    assert result["cost"]["size"] == 2000
