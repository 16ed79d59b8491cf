"""MLflow Model Registry access for lead-scorer: resolve, load, register, promote, roll back.

`Registry.resolve` says which version is production now, `Registry.load` loads it safely; every error is
one of `lead_errors`' kinds.
"""

from lead_errors import NoProductionVersion, PromotionRefused
from registry._registry import (
    ALIAS,
    CHALLENGER_ALIAS,
    DEFAULT_POLICY,
    DEFAULT_TRUSTED_TYPES,
    METRIC_TAG_PREFIX,
    STAGE,
    TAG_CHALLENGER_AT,
    TAG_CHALLENGER_BY,
    TAG_EVENT_TYPES,
    TAG_PREVIOUS,
    TAG_PROMOTED_ON,
    TAG_PROMOTION_FORCED,
    TAG_REFERENCE,
    TAG_REFERENCE_SHARES,
    TAG_TRUSTED_TYPES,
    LiveEvidence,
    LoadedModel,
    LoadPolicy,
    Registry,
    ResolvedVersion,
    Verdict,
    redact,
)
from registry._window import (
    DEFAULT_HORIZON_DAYS,
    TAG_AS_OF,
    TAG_HORIZON_DAYS,
    TAG_WINDOW,
    TrainingWindow,
    training_window,
)

__all__ = [
    "ALIAS",
    "CHALLENGER_ALIAS",
    "DEFAULT_HORIZON_DAYS",
    "DEFAULT_POLICY",
    "DEFAULT_TRUSTED_TYPES",
    "METRIC_TAG_PREFIX",
    "STAGE",
    "TAG_AS_OF",
    "TAG_CHALLENGER_AT",
    "TAG_CHALLENGER_BY",
    "TAG_EVENT_TYPES",
    "TAG_HORIZON_DAYS",
    "TAG_PREVIOUS",
    "TAG_PROMOTED_ON",
    "TAG_PROMOTION_FORCED",
    "TAG_REFERENCE",
    "TAG_REFERENCE_SHARES",
    "TAG_TRUSTED_TYPES",
    "TAG_WINDOW",
    "LiveEvidence",
    "LoadPolicy",
    "LoadedModel",
    "NoProductionVersion",
    "PromotionRefused",
    "Registry",
    "ResolvedVersion",
    "TrainingWindow",
    "Verdict",
    "redact",
    "training_window",
]
