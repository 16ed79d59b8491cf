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
    from models.metrics import (
        AucInterval,
        PairedAuc,
        classification_metrics,
        delong,
        delong_paired,
        expected_calibration_error,
        reliability_table,
        wilson_interval,
    )
    from models.synthetic import SyntheticData, generate
    from models.training import (
        TrainingError,
        TrainResult,
        decile_edges,
        fit_and_evaluate,
        make_pipeline,
    )

_LAZY = {
    "SyntheticData": "models.synthetic",
    "generate": "models.synthetic",
    "TrainingError": "models.training",
    "TrainResult": "models.training",
    "decile_edges": "models.training",
    "expected_calibration_error": "models.metrics",
    "AucInterval": "models.metrics",
    "PairedAuc": "models.metrics",
    "classification_metrics": "models.metrics",
    "delong": "models.metrics",
    "delong_paired": "models.metrics",
    "fit_and_evaluate": "models.training",
    "make_pipeline": "models.training",
    "reliability_table": "models.metrics",
    "wilson_interval": "models.metrics",
}

__all__ = [
    "DAILY_COLUMNS",
    "FEATURES",
    "AucInterval",
    "DailyGrain",
    "Feature",
    "FeatureCatalog",
    "FeatureDefinitionError",
    "Measure",
    "PairedAuc",
    "Reason",
    "SyntheticData",
    "TrainResult",
    "TrainingError",
    "UnknownFeatureError",
    "classification_metrics",
    "contributions",
    "day_number",
    "day_numbers",
    "decile_edges",
    "delong",
    "delong_paired",
    "describe",
    "expected_calibration_error",
    "fit_and_evaluate",
    "generate",
    "make_pipeline",
    "normalize_event_type",
    "reliability_table",
    "slugify",
    "top_reasons",
    "wilson_interval",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
