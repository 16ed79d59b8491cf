"""MLflow Model Registry access for lead-scorer: resolve, load, register, promote, roll back.

>>> from registry import Registry
>>> reg = Registry(tracking_uri="sqlite:///mlflow.db")
>>> model = reg.load(reg.resolve())
"""

from lead_errors import LeadScorerError as RegistryError  # every error the registry raises, as before
from lead_errors import NoProductionVersion, PromotionRefused
from lead_errors import ServiceUnavailable as RegistryUnavailable
from registry._registry import (
    ALIAS,
    DEFAULT_TRUSTED_TYPES,
    STAGE,
    TAG_EVENT_TYPES,
    TAG_PREVIOUS,
    TAG_REFERENCE,
    TAG_REFERENCE_SHARES,
    TAG_TRUSTED_TYPES,
    LoadedModel,
    Registry,
    ResolvedVersion,
    redact,
)

__all__ = [
    "ALIAS",
    "DEFAULT_TRUSTED_TYPES",
    "STAGE",
    "TAG_EVENT_TYPES",
    "TAG_PREVIOUS",
    "TAG_REFERENCE",
    "TAG_REFERENCE_SHARES",
    "TAG_TRUSTED_TYPES",
    "LoadedModel",
    "NoProductionVersion",
    "PromotionRefused",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "ResolvedVersion",
    "redact",
]
