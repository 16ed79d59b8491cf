"""Drift (PSI) against a training reference: the same distribution reads as no drift, wherever its deciles
fall on the histogram's 0.001-wide bins and however many leads share one score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.training import decile_edges
from scorer.app import baseline_tags
from scorer.job import RunSummary
from scorer.stats import ScoreStats
from scorer.tracking import TAG_SCORE_SHARES


def _leads(n: int, seed: int, *, no_activity: float = 0.12, at: float = 0.0325) -> np.ndarray:
    """Scores like the open leads': mostly a few hundredths, a long tail, and a point mass (every lead with no
    activity scores the same) a few thousandths wide of its neighbours' edges."""
    rng = np.random.default_rng(seed)
    scores = 1.0 / (1.0 + np.exp(-rng.normal(-3.3, 0.9, size=n)))
    scores[rng.random(n) < no_activity] = at
    return scores


def _stats(scores: np.ndarray) -> ScoreStats:
    stats = ScoreStats()
    stats.add(scores)
    return stats


def _reference(scores: np.ndarray) -> tuple[list[float], list[float]]:
    """What training keeps with a version: the holdout's deciles and its shares through them."""
    edges = decile_edges(scores)
    return edges, _stats(scores).shares_through(edges)


def test_the_same_distribution_is_no_drift_wherever_the_point_mass_falls():
    for at in (0.0305, 0.0321, 0.0325, 0.0329, 0.0366, 0.0395):  # 0.0325: two edges in its bin, 0.0321 to 0.0329
        edges, shares = _reference(_leads(20_000, 1, at=at))
        today = _stats(_leads(20_000, 2, at=at))
        assert today.psi(edges, shares) < 0.01, at
        # A tenfold smaller sample of the same: still far under the 0.2 the run warns at.
        assert _stats(_leads(2_000, 3, at=at)).psi(edges, shares) < 0.05, at


def test_an_edge_on_a_point_mass_holds_what_the_reference_holds_there_not_ten_percent():
    reference = _leads(20_000, 1, at=0.0325)
    edges, shares = _reference(reference)
    assert any(e == 0.0325 for e in edges)
    through = float(np.mean(reference < 0.033))
    assert next(s for e, s in zip(edges, shares, strict=True) if e == 0.0325) == through
    assert abs(through - round(through, 1)) > 0.02  # far from any decile's nominal share


def test_a_real_shift_is_drift():
    edges, shares = _reference(_leads(20_000, 1))
    busier = _leads(20_000, 2, no_activity=0.02)
    busier = 1.0 / (1.0 + np.exp(-(np.log(busier / (1 - busier)) + 1.0)))  # every lead's odds times e
    assert _stats(busier).psi(edges, shares) > 0.5


def test_a_version_without_shares_assumes_ten_percent_per_decile_and_merges_edges_of_one_bin():
    rng = np.random.default_rng(4)
    reference = rng.uniform(0.1, 0.9, size=50_000)
    edges = decile_edges(reference)
    today = _stats(rng.uniform(0.1, 0.9, size=50_000))
    assert today.psi(edges) < 0.01
    assert today.psi(edges) == today.psi(edges, None)
    # Two edges of one bin (0.5004 and 0.5006): one boundary, not an empty bin adding ~0.7.
    tied = [0.2, 0.3, 0.4, 0.5004, 0.5006, 0.6, 0.7, 0.8, 0.9]
    # Two scores per decile, the two deciles between 0.4 and 0.5006 together.
    same = np.repeat([0.15, 0.25, 0.35, 0.45, 0.5005, 0.55, 0.65, 0.75, 0.85, 0.95], 2)
    assert _stats(same).psi(tied) == 0.0


def test_a_population_that_did_not_move_is_no_drift_from_the_previous_run():
    """The previous run's baseline is its deciles and what its population held through each (its tag), so the
    same population reads 0. By hand, ten users: 0.1 (three), 0.5 (one) and 0.9 (six). The deciles are 0.1003,
    0.1007, 0.101 (bins 100, 100, 101), 0.501 and 0.9 five times; the population holds 30 %, 30 %, 30 %, 40 % and
    100 % through them: bins of 30 %, 10 % and 60 %, which identical scores fill the same, so 0. Nominal tenths
    expect 20 %, 10 %, 10 %, 50 %, 10 % where 30 %, 0, 10 %, 60 %, 0 are (an empty bin counted as 0.0001):
    0.1·ln 1.5 + 0.1·ln 1.2 + 2 · 0.0999·ln 1000 ≈ 1.44."""
    scores = np.array([0.1] * 3 + [0.5] + [0.9] * 6)
    summary = RunSummary(model_version="1", stats=_stats(scores))
    deciles = [round(summary.stats.quantile(p / 100), 4) for p in range(10, 100, 10)]
    shares = json.loads(baseline_tags(summary)[TAG_SCORE_SHARES])
    assert shares == [0.3, 0.3, 0.3, 0.4, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert _stats(scores).psi(deciles, shares) == 0.0
    # The nominal tenths it replaced read the same population as drift.
    assert _stats(scores).psi(deciles) == pytest.approx(
        0.1 * np.log(1.5) + 0.1 * np.log(1.2) + 2 * 0.0999 * np.log(1000), abs=1e-3
    )
    # A population that did move is still drift against the recorded shares.
    assert _stats(np.array([0.1] * 8 + [0.5, 0.9])).psi(deciles, shares) > 0.2
