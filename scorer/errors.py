"""The job's errors: a small typed hierarchy, each with the exit code the CLI uses and a hint.

No message ever includes a secret: stores and settings redact URLs and keys before raising.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BATCH_FAILED",
    "EXIT_BUSY",
    "EXIT_INTERNAL",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_SETTINGS",
    "EXIT_STORE",
    "EXIT_TRACKING",
    "AuthError",
    "LeadScorerError",
    "ModelError",
    "RunLocked",
    "SchemaError",
    "ServiceUnavailable",
    "SettingsError",
    "StoreError",
    "TransientError",
]

EXIT_OK = 0
EXIT_BATCH_FAILED = 1  # some batches failed; the others were written
EXIT_SETTINGS = 2  # invalid settings or command-line usage
EXIT_MODEL = 3  # no production model, or a model the catalog cannot serve
EXIT_STORE = 4  # database or MLflow unreachable, wrong key, missing table/column/function
EXIT_TRACKING = 5  # every score written, but the MLflow run record could not be saved (summary in the logs)
EXIT_BUSY = 6  # another run of the same model on the same database holds the run lock; nothing was done
EXIT_INTERNAL = 70  # a bug: the traceback is printed (EX_SOFTWARE)


class LeadScorerError(Exception):
    """Base class. ``hint`` says how to fix it; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class SettingsError(LeadScorerError):
    exit_code = EXIT_SETTINGS


class ModelError(LeadScorerError):
    exit_code = EXIT_MODEL


class StoreError(LeadScorerError):
    """A store operation failed (after retries, where retrying made sense)."""

    exit_code = EXIT_STORE


class TransientError(StoreError):
    """The store kept failing for a passing reason (network, timeout, lock, server busy) beyond its retries.
    The batch fails as a whole: splitting it would only repeat the same wait."""


class ServiceUnavailable(StoreError):
    """The MLflow tracking server cannot be reached (or refused our credentials) at start."""


class SchemaError(StoreError):
    """A table, column or database function the job needs is missing."""


class AuthError(StoreError):
    """The database refused our credentials. Never retried."""


class RunLocked(LeadScorerError):
    """Another run of the same model against the same database is in progress."""

    exit_code = EXIT_BUSY
