"""Calibration: do the scores mean what they say? Reliability tables, ECE, and what training reports."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.model_selection import train_test_split

from models import expected_calibration_error, fit_and_evaluate, reliability_table
from tests.test_reasons import synthetic_training_set


def test_reliability_table_and_ece_by_hand():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.125, 0.375, 0.625, 0.875])
    assert reliability_table(y, p, bins=2) == [
        {"bin": 0, "count": 2, "mean_predicted": 0.25, "observed_rate": 0.5},
        {"bin": 1, "count": 2, "mean_predicted": 0.75, "observed_rate": 1.0},
    ]
    assert expected_calibration_error(y, p, bins=2) == 0.25


def test_scores_that_match_the_observed_rates_have_no_calibration_error():
    # Ten groups of 20 leads scored (2i+1)/20, of whom exactly 2i+1 converted.
    p = np.repeat((2 * np.arange(10) + 1) / 20, 20)
    y = np.concatenate([np.r_[np.ones(2 * i + 1), np.zeros(19 - 2 * i)] for i in range(10)])
    order = np.random.default_rng(1).permutation(len(p))
    table = reliability_table(y[order], p[order])
    assert [row["count"] for row in table] == [20] * 10
    assert [row["bin"] for row in table] == list(range(10))
    for row in table:
        assert row["observed_rate"] == pytest.approx(row["mean_predicted"], abs=1e-12)
    assert expected_calibration_error(y[order], p[order]) == pytest.approx(0.0, abs=1e-12)


def test_a_score_that_is_three_times_too_high():
    # Scores around 0.3 where one lead in ten converts, in every decile.
    p = np.linspace(0.25, 0.35, 100)
    y = np.tile(np.r_[1, np.zeros(9)], 10)
    table = reliability_table(y, p)
    assert [row["observed_rate"] for row in table] == [0.1] * 10
    assert all(row["mean_predicted"] > 0.25 for row in table)
    assert expected_calibration_error(y, p) == pytest.approx(0.2)


def test_tied_scores_share_one_bin_whatever_the_row_order():
    # 40 leads with no activity share one score: they are one group, not split across deciles by row order.
    p = np.r_[np.linspace(0.01, 0.03, 30), np.full(40, 0.05), np.linspace(0.1, 0.9, 30)]
    y = np.r_[np.zeros(30), np.tile([1, 0, 0, 0], 10), np.ones(30)]
    table = reliability_table(y, p)
    assert sum(row["count"] for row in table) == 100 and len(table) < 10
    tied = [row for row in table if row["mean_predicted"] == pytest.approx(0.05)]
    assert len(tied) == 1 and tied[0]["count"] == 40 and tied[0]["observed_rate"] == 0.25
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(100)
        assert reliability_table(y[order], p[order]) == [pytest.approx(row) for row in table]
        assert expected_calibration_error(y[order], p[order]) == pytest.approx(expected_calibration_error(y, p))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        reliability_table(np.array([0, 1, 1]), np.array([0.1, 0.2]))
    assert reliability_table(np.array([]), np.array([])) == []
    with pytest.raises(ValueError, match="no scores"):
        expected_calibration_error(np.array([]), np.array([]))


@pytest.fixture(scope="module")
def training():
    features, labels = synthetic_training_set(users=2000, seed=3)
    return features, labels, fit_and_evaluate(features, labels, seed=3)


def test_training_reports_calibration_on_the_holdout(training):
    features, labels, result = training
    table = result.reliability
    assert 1 <= len(table) <= 10 and sum(row["count"] for row in table) == result.n_holdout
    assert [row["bin"] for row in table] == sorted({row["bin"] for row in table})
    predicted = [row["mean_predicted"] for row in table]
    assert predicted == sorted(predicted) and len(set(predicted)) == len(predicted)
    weighted = sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table)
    assert result.metrics["ece"] == pytest.approx(weighted / result.n_holdout)

    # The same holdout, scored again: the metrics describe exactly those leads.
    _, x_hold, _, y_hold = train_test_split(
        features.astype(np.float64), labels, test_size=0.25, random_state=3, stratify=labels
    )
    p = result.pipeline.predict_proba(x_hold)[:, 1]
    assert len(p) == result.n_holdout
    assert result.metrics["ece"] == pytest.approx(expected_calibration_error(y_hold, p))
    assert result.metrics["share_at_0_or_1"] == pytest.approx(np.mean((p < 0.0005) | (p >= 0.9995)))

    # What a reader of the scores notices: they are within a few points of the observed rates, and
    # nobody is shown as a sure thing either way.
    assert result.metrics["ece"] < 0.05
    assert result.metrics["share_at_0_or_1"] == 0.0
    assert result.metrics["roc_auc"] > 0.75


def test_the_trained_pipeline_is_linear_and_loads_with_default_trusted_types(training):
    features, _, result = training
    assert [name for name, _ in result.pipeline.steps] == ["log1p", "scale", "model"]
    assert result.pipeline[-1].coef_.shape == (1, features.shape[1])
    assert sio.get_untrusted_types(data=sio.dumps(result.pipeline)) == []


def test_a_tiny_training_set_still_trains():
    features, labels = synthetic_training_set(users=300, seed=2)
    keep = np.r_[np.flatnonzero(labels == 1)[:6], np.flatnonzero(labels == 0)[:54]]
    result = fit_and_evaluate(features.iloc[keep].reset_index(drop=True), labels[keep])
    assert result.n_holdout == 15 and 0.0 <= result.metrics["ece"] <= 1.0
    assert sum(row["count"] for row in result.reliability) == 15
