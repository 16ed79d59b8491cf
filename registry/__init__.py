"""MLflow Model Registry access for lead-scorer: resolve, load, register, promote, roll back.

>>> from registry import Registry
>>> reg = Registry(tracking_uri="sqlite:///mlflow.db")
>>> model = reg.load(reg.resolve(), policy=LoadPolicy.trusting(extra_types))
"""

from registry._errors import NoProductionVersion, PromotionRefused, RegistryError, RegistryUnavailable
from registry._registry import (
    ALIAS,
    DEFAULT_POLICY,
    DEFAULT_TRUSTED_TYPES,
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

__all__ = [
    "ALIAS",
    "DEFAULT_POLICY",
    "DEFAULT_TRUSTED_TYPES",
    "STAGE",
    "TAG_EVENT_TYPES",
    "TAG_PREVIOUS",
    "TAG_REFERENCE",
    "TAG_REFERENCE_SHARES",
    "TAG_TRUSTED_TYPES",
    "LoadPolicy",
    "LoadedModel",
    "NoProductionVersion",
    "PromotionRefused",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "ResolvedVersion",
    "redact",
]
