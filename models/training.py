"""The lead-scoring pipeline, its fit on a holdout split, and the metrics a promotion is judged by.

>>> result = fit_and_evaluate(features, labels, seed=7)
>>> result.metrics["roc_auc"]
0.81
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

__all__ = ["TrainResult", "TrainingError", "decile_edges", "fit_and_evaluate", "make_pipeline"]


class TrainingError(ValueError):
    """The data cannot train a meaningful model (too few rows, a single class)."""


def make_pipeline(*, seed: int = 0) -> Pipeline:
    """Log-scaled counts → standardized → logistic regression; every step serializes with skops
    without extra trusted types, and ``predict_proba`` is fast enough for millions of rows."""
    return Pipeline(
        [
            ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=2000, random_state=seed)),
        ]
    )


def decile_edges(scores: np.ndarray) -> list[float]:
    """The 10th…90th percentiles of ``scores``: the reference distribution kept for drift checks."""
    return [float(x) for x in np.quantile(scores, np.linspace(0.1, 0.9, 9))]


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    pipeline: Pipeline
    metrics: dict[str, float]
    reference_deciles: list[float]
    n_train: int
    n_holdout: int
    feature_names: list[str] = field(default_factory=list)


def _ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
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


def fit_and_evaluate(
    features: pd.DataFrame,
    labels: np.ndarray,
    *,
    holdout_fraction: float = 0.25,
    seed: int = 0,
) -> TrainResult:
    """Fit on a stratified split and evaluate on the holdout (ROC AUC, PR AUC, Brier, lift, capture)."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) < 50:
        raise TrainingError(f"only {len(y)} eligible users; need at least 50 to train")
    positives = int(y.sum())
    if positives < 5 or positives > len(y) - 5:
        raise TrainingError(
            f"{positives} of {len(y)} users converted in the horizon; need both classes (≥ 5 each). "
            "Try another --as-of or a longer --horizon-days."
        )
    x = features.astype(np.float64)
    x_train, x_hold, y_train, y_hold = train_test_split(x, y, test_size=holdout_fraction, random_state=seed, stratify=y)
    pipeline = make_pipeline(seed=seed)
    pipeline.fit(x_train, y_train)
    p = pipeline.predict_proba(x_hold)[:, 1]
    metrics = {
        "roc_auc": float(roc_auc_score(y_hold, p)),
        "pr_auc": float(average_precision_score(y_hold, p)),
        "brier": float(brier_score_loss(y_hold, p)),
        **_ranking_metrics(y_hold, p),
        "positive_rate": float(y.mean()),
    }
    return TrainResult(
        pipeline=pipeline,
        metrics=metrics,
        reference_deciles=decile_edges(p),
        n_train=len(y_train),
        n_holdout=len(y_hold),
        feature_names=list(x.columns),
    )
