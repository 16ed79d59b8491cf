"""A version's training window, and the honest-cohort rule that follows from it.

A version trained with cutoff ``as_of`` and horizon ``H`` learned from labels up to ``as_of + H``. A cohort
of day ``T`` (its leads labelled by what they did in ``[T, T + H)``) is *honest* for that version when
``T >= as_of + H``: every label it is judged on lies after every label it learned from. A cohort has
*matured* when ``T + H`` has passed, so its labels are complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from lead_errors import SettingsError
from registry._registry import ResolvedVersion

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "TAG_AS_OF",
    "TAG_HORIZON_DAYS",
    "TAG_WINDOW",
    "TrainingWindow",
    "training_window",
]

TAG_AS_OF = "as_of"
TAG_HORIZON_DAYS = "horizon_days"
#: How the window is known: "trained" (lead-scorer train), "declared" (import-joblib --as-of), "registered"
#: (an import without one: assumed to have learned from everything up to its registration day).
TAG_WINDOW = "training_window_source"
#: The horizon of a version that records none (an import without --horizon-days): training's default.
DEFAULT_HORIZON_DAYS = 30


@dataclass(frozen=True, kw_only=True)
class TrainingWindow:
    """What a version learned from: labels of leads open at ``as_of`` (a UTC midnight), over
    ``horizon_days``; ``source`` says how that is known (see `TAG_WINDOW`)."""

    as_of: datetime
    horizon_days: int
    source: str

    @property
    def first_honest_day(self) -> date:
        """The first cohort day whose labels all lie after the version's: ``as_of + horizon``.

        >>> TrainingWindow(as_of=datetime(2026, 7, 1, tzinfo=UTC), horizon_days=30, source="trained").first_honest_day
        datetime.date(2026, 7, 31)
        """
        return (self.as_of + timedelta(days=self.horizon_days)).date()

    def last_matured_day(self, now: datetime) -> date:
        """The last cohort day whose horizon has passed by ``now``: labels complete."""
        return (now.astimezone(UTC) - timedelta(days=self.horizon_days)).date()

    def require_honest(self, day: date, *, version: str) -> None:
        """Raise `SettingsError` unless ``day`` is honest for this version; the message names the first one."""
        if day < self.first_honest_day:
            raise SettingsError(
                f"a cohort of {day:%Y-%m-%d} is not honest for version {version}: it was trained on leads of "
                f"{self.as_of:%Y-%m-%d} labelled over {self.horizon_days} days ({self.source}), so its first "
                f"honest cohort is {self.first_honest_day:%Y-%m-%d}",
                hint=f"pass --from {self.first_honest_day:%Y-%m-%d} or later",
            )


def training_window(version: ResolvedVersion) -> TrainingWindow:
    """The window ``version`` was trained on, from its tags (``as_of``, ``horizon_days``); a version with
    none (an import that declared nothing) counts as having learned from every label up to the day it was
    registered, with the default horizon: its first honest day is its registration day.

    >>> v = ResolvedVersion(name="m", version="3", how="pin", run_id=None, model_id=None, source="",
    ...                     tags={"as_of": "2026-07-01T00:00:00+00:00", "horizon_days": "30"})
    >>> training_window(v).first_honest_day
    datetime.date(2026, 7, 31)
    """
    tags = version.tags
    horizon = int(tags.get(TAG_HORIZON_DAYS) or DEFAULT_HORIZON_DAYS)
    raw = tags.get(TAG_AS_OF)
    if raw:
        as_of = datetime.fromisoformat(raw)
        as_of = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
        return TrainingWindow(as_of=as_of, horizon_days=horizon, source=tags.get(TAG_WINDOW) or "trained")
    if version.created is None:
        raise SettingsError(
            f"version {version.version} records no training window (tags as_of, horizon_days) and no registration time"
        )
    day = version.created.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return TrainingWindow(as_of=day - timedelta(days=horizon), horizon_days=horizon, source="registered")
