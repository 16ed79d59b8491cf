"""lead-scorer's errors: one small hierarchy by kind of failure, at the bottom of every layer.

Each error carries a message and, where there is one, a ``hint`` that says how to fix it:

>>> print(SettingsError("DATABASE_URL is not set", hint="set it to the product's database"))
DATABASE_URL is not set
  hint: set it to the product's database
>>> isinstance(NoProductionVersion("no production version"), ModelError)
True

The CLI turns a kind into an exit code with one table (``scorer.cli.EXIT_CODES``); the codes themselves
are `ExitCode`, here because the batch loop reports its outcome (some batches failed, the record was lost)
as a code too. No message ever includes a secret: stores, settings and the registry redact URLs and keys
before raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

__all__ = [
    "AuthError",
    "BatchesFailed",
    "ExitCode",
    "FeatureDefinitionError",
    "LeadScorerError",
    "ModelError",
    "NoProductionVersion",
    "PromotionRefused",
    "RunLocked",
    "SchemaError",
    "ScoreValueError",
    "ServiceError",
    "ServiceUnavailable",
    "SettingsError",
    "StoreError",
    "TrackingError",
    "TrainingError",
    "TransientError",
    "UnknownFeatureError",
]


class ExitCode(IntEnum):
    """What `lead-scorer` exits with; ``scorer.cli`` says what each means and which error gives which."""

    OK = 0
    BATCHES_FAILED = 1
    SETTINGS = 2
    MODEL = 3
    UNREACHABLE = 4
    TRACKING = 5
    BUSY = 6
    PROMOTION_REFUSED = 7
    INTERNAL = 70  # EX_SOFTWARE
    SIGINT = 130  # 128 + the signal's number, as a shell reports it
    SIGTERM = 143


class LeadScorerError(Exception):
    """Base class of every error lead-scorer raises on purpose. ``hint`` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


# -- settings ---------------------------------------------------------------------------------------


class SettingsError(LeadScorerError):
    """Invalid settings, command-line usage or MLproject parameter; nothing was done."""


# -- the model --------------------------------------------------------------------------------------


class ModelError(LeadScorerError):
    """No model the job can use: none in production, one it must not or cannot load, or none to make."""


class NoProductionVersion(ModelError):
    """Neither a pin, the ``production`` alias nor a ``Production`` stage names a version."""


class UnknownFeatureError(ModelError):
    """A model asks for features this catalog cannot build.

    >>> UnknownFeatureError(["revenue"]).names
    ['revenue']
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        shown = ", ".join(self.names[:10]) + (" …" if len(self.names) > 10 else "")
        super().__init__(
            f"the model asks for {len(self.names)} feature(s) the catalog cannot build: {shown}. "
            "Train a new version with this release (`lead-scorer train`) or pin a version this release "
            "supports (`--model-version`)."
        )


class FeatureDefinitionError(ModelError):
    """A feature definition (``models.features.Feature``) neither engine can compute: a measure without a
    numpy and an SQL form, a per-type or window shape its measure does not take, a window past the lookback."""


class TrainingError(ModelError):
    """The training data cannot make a meaningful model (too few rows, too few conversions, one class)."""


class ScoreValueError(ModelError):
    """The model produced a score that is not a finite probability; the batch is not written."""


class PromotionRefused(LeadScorerError):
    """A promotion was refused: the candidate's holdout metric is worse than production's, or the job could
    not load it (``force`` overrides). Production is unchanged: not a failure of the model in use."""


# -- the database -----------------------------------------------------------------------------------


class StoreError(LeadScorerError):
    """A store operation failed (after retries, where retrying made sense)."""


class TransientError(StoreError):
    """The store kept failing for a passing reason (network, timeout, lock, server busy) beyond its retries.
    The batch fails as a whole: splitting it would only repeat the same wait."""


class SchemaError(StoreError):
    """A table, column or database function the job needs is missing."""


class AuthError(StoreError):
    """The database refused our credentials. Never retried."""


class RunLocked(LeadScorerError):
    """Another run of the same model against the same database is in progress; nothing was done."""


# -- the MLflow server ------------------------------------------------------------------------------


class ServiceError(LeadScorerError):
    """The MLflow server refused a request (its own message says why). Not a `StoreError`: the database
    is fine, and code that handles a failing store must not handle this."""


class ServiceUnavailable(ServiceError):
    """The MLflow tracking server cannot be reached, or refused our credentials."""


class TrackingError(LeadScorerError):
    """The run record could not be saved in MLflow (the scores themselves may be written)."""


# -- the run as a whole -----------------------------------------------------------------------------


class BatchesFailed(LeadScorerError):
    """Some batches (or key ranges) failed after their retries; the others were written."""
