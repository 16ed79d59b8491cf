"""The old import path of the job's errors, kept for code that imports them from here: the hierarchy lives
in `lead_errors` (the bottom layer, shared with `registry` and `models`) and the exit codes in `scorer.cli`."""

from __future__ import annotations

from lead_errors import (
    AuthError,
    LeadScorerError,
    ModelError,
    RunLocked,
    SchemaError,
    ServiceUnavailable,
    SettingsError,
    StoreError,
    TransientError,
)

__all__ = [
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
