"""MLflow Model Registry access for lead-scorer: resolve, load, register, promote, roll back.

`Registry.resolve` says which version is production now, `Registry.load` loads it safely; every error is
one of `lead_errors`' kinds (`RegistryError` is their base, kept under the name callers catch).
"""

from lead_errors import LeadScorerError as RegistryError  # every error the registry raises, as before
from lead_errors import NoProductionVersion, PromotionRefused
from lead_errors import ServiceUnavailable as RegistryUnavailable
from registry._registry import (
    ALIAS,
    DEFAULT_POLICY,
    DEFAULT_TRUSTED_TYPES,
    METRIC_TAG_PREFIX,
    STAGE,
    TAG_EVENT_TYPES,
    TAG_PREVIOUS,
    TAG_REFERENCE,
    TAG_REFERENCE_SHARES,
    TAG_TRUSTED_TYPES,
    LoadedModel,
    LoadPolicy,
    Registry,
    ResolvedVersion,
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
    "DEFAULT_HORIZON_DAYS",
    "DEFAULT_POLICY",
    "DEFAULT_TRUSTED_TYPES",
    "METRIC_TAG_PREFIX",
    "STAGE",
    "TAG_AS_OF",
    "TAG_EVENT_TYPES",
    "TAG_HORIZON_DAYS",
    "TAG_PREVIOUS",
    "TAG_REFERENCE",
    "TAG_REFERENCE_SHARES",
    "TAG_TRUSTED_TYPES",
    "TAG_WINDOW",
    "LoadPolicy",
    "LoadedModel",
    "NoProductionVersion",
    "PromotionRefused",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "ResolvedVersion",
    "TrainingWindow",
    "redact",
    "training_window",
]
