"""The lead-scoring model: feature catalog, pipeline, training and evaluation, synthetic data.

The catalog is imported eagerly; training and the synthetic generator (scikit-learn, about a second and
a half of imports) only when first used, so the stores and ``lead-scorer --help`` stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models.catalog import (
    DAILY_COLUMNS,
    DailyGrain,
    FeatureCatalog,
    UnknownFeatureError,
    day_number,
    day_numbers,
    normalize_event_type,
    slugify,
)

if TYPE_CHECKING:
    from models.synthetic import SyntheticData, generate
    from models.training import TrainingError, TrainResult, decile_edges, fit_and_evaluate, make_pipeline

_LAZY = {
    "SyntheticData": "models.synthetic",
    "generate": "models.synthetic",
    "TrainingError": "models.training",
    "TrainResult": "models.training",
    "decile_edges": "models.training",
    "fit_and_evaluate": "models.training",
    "make_pipeline": "models.training",
}

__all__ = [
    "DAILY_COLUMNS",
    "DailyGrain",
    "FeatureCatalog",
    "SyntheticData",
    "TrainResult",
    "TrainingError",
    "UnknownFeatureError",
    "day_number",
    "day_numbers",
    "decile_edges",
    "fit_and_evaluate",
    "generate",
    "make_pipeline",
    "normalize_event_type",
    "slugify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
