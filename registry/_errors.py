from __future__ import annotations


class RegistryError(Exception):
    """Base class for registry problems. ``hint`` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class NoProductionVersion(RegistryError):
    """Neither a pin, the ``production`` alias nor a ``Production`` stage names a version."""


class PromotionRefused(RegistryError):
    """The candidate's holdout metric is worse than production's (use ``force``)."""


class RegistryUnavailable(RegistryError):
    """The tracking server cannot be reached or refused our credentials."""
