"""The lead-scoring model: feature definitions (`models.features`) and catalog, pipeline, training and
evaluation, reasons, synthetic data.

The catalog and the reasons (numpy only) are imported eagerly; training and the synthetic generator
(scikit-learn, about a second and a half of imports) only when first used, so the stores and
``lead-scorer --help`` stay light.
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
from models.features import FEATURES, Feature, FeatureDefinitionError, Measure
from models.reasons import Reason, contributions, describe, top_reasons

if TYPE_CHECKING:
    from models.synthetic import SyntheticData, generate
    from models.training import (
        TrainingError,
        TrainResult,
        decile_edges,
        expected_calibration_error,
        fit_and_evaluate,
        make_pipeline,
        reliability_table,
    )

_LAZY = {
    "SyntheticData": "models.synthetic",
    "generate": "models.synthetic",
    "TrainingError": "models.training",
    "TrainResult": "models.training",
    "decile_edges": "models.training",
    "expected_calibration_error": "models.training",
    "fit_and_evaluate": "models.training",
    "make_pipeline": "models.training",
    "reliability_table": "models.training",
}

__all__ = [
    "DAILY_COLUMNS",
    "FEATURES",
    "DailyGrain",
    "Feature",
    "FeatureCatalog",
    "FeatureDefinitionError",
    "Measure",
    "Reason",
    "SyntheticData",
    "TrainResult",
    "TrainingError",
    "UnknownFeatureError",
    "contributions",
    "day_number",
    "day_numbers",
    "decile_edges",
    "describe",
    "expected_calibration_error",
    "fit_and_evaluate",
    "generate",
    "make_pipeline",
    "normalize_event_type",
    "reliability_table",
    "slugify",
    "top_reasons",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
