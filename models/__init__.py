"""The lead-scoring model: feature catalog, pipeline, training and evaluation, synthetic data."""

from models.catalog import DAILY_COLUMNS, FeatureCatalog, UnknownFeatureError, normalize_event_type, slugify
from models.synthetic import SyntheticData, generate
from models.training import TrainingError, TrainResult, decile_edges, fit_and_evaluate, make_pipeline

__all__ = [
    "DAILY_COLUMNS",
    "FeatureCatalog",
    "SyntheticData",
    "TrainResult",
    "TrainingError",
    "UnknownFeatureError",
    "decile_edges",
    "fit_and_evaluate",
    "generate",
    "make_pipeline",
    "normalize_event_type",
    "slugify",
]
