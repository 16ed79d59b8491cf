"""What each feature is, in one table: `FEATURES`. The numpy computation (`FeatureCatalog.features`), the
PostgreSQL statement (``scorer.stores.pg_features``) and the reasons' words (`models.reasons`) are all
derived from it, so adding a feature is one entry here.

A `Feature` is a family of columns: a name pattern (``{window}`` stands for a window in days, ``{type}`` for
an event type's slug), a `Measure` (what is computed, which both engines implement), its windows, and its
phrase for reasons. A catalog resolves the windows (``FeatureCatalog(windows=…, lookback_days=…)``):

>>> from models import FeatureCatalog
>>> recent = Feature(name="visits_{window}d", measure=Measure.ACTIVE_DAYS, windows=(3,), phrase=active_days)
>>> catalog = FeatureCatalog(definitions=(*FEATURES, recent))
>>> catalog.column("visits_3d").window, catalog.column("evt_demo_request_30d").slug
(3, 'demo_request')
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lead_errors import FeatureDefinitionError
from models._wording import active_days, days_since_first, days_since_last, events, kinds_of_activity, type_count

__all__ = [
    "FEATURES",
    "Column",
    "Feature",
    "FeatureDefinitionError",
    "Measure",
    "Phrase",
    "active_days",
    "after_first_window",
    "catalog_windows",
    "days_since_first",
    "days_since_last",
    "events",
    "kinds_of_activity",
    "type_count",
    "with_lookback",
]


class Measure(enum.Enum):
    """What a feature computes over a visitor's events of the lookback (age 0 is the day before ``as_of``).
    Each has a numpy form (`FeatureCatalog.features`) and an SQL form (``scorer.stores.pg_features``);
    a new one needs both, and a test (``tests/test_feature_definitions.py``) holds every member to both."""

    COUNT = "count"  # events with age < window; of one type when the name has {type}
    ACTIVE_DAYS = "active_days"  # distinct days with an event, age < window
    DISTINCT_TYPES = "distinct_types"  # distinct normalized event types, age < window
    NEWEST_AGE = "newest_age"  # age of the newest event; lookback + 1 without one
    OLDEST_AGE = "oldest_age"  # age of the oldest event in the lookback; lookback + 1 without one

    @property
    def windowed(self) -> bool:
        return self not in (Measure.NEWEST_AGE, Measure.OLDEST_AGE)

    @property
    def empty(self) -> str:
        """A visitor without events: "zero", or "never" (lookback + 1)."""
        return "zero" if self.windowed else "never"


#: Per-type (``{type}``) families each measure can be in both engines.
PER_TYPE = frozenset({Measure.COUNT})


class Phrase(Protocol):
    """A feature's words: given one column's window, event-type slug and the lookback, a function of the value."""

    def __call__(self, *, window: int | None, slug: str | None, lookback: int) -> Callable[[float], str]: ...


Windows = tuple[int, ...] | Callable[[tuple[int, ...], int], tuple[int, ...]]


def catalog_windows(windows: tuple[int, ...], lookback: int) -> tuple[int, ...]:
    """The catalog's windows (7, 30 and 90 days by default)."""
    return windows


def with_lookback(windows: tuple[int, ...], lookback: int) -> tuple[int, ...]:
    """The catalog's windows and the lookback itself."""
    return (*windows, lookback)


def after_first_window(windows: tuple[int, ...], lookback: int) -> tuple[int, ...]:
    """The catalog's windows but the shortest (few types show up in a week)."""
    return windows[1:]


@dataclass(frozen=True, kw_only=True)
class Feature:
    """A family of feature columns. ``windows``: fixed days, or a function of the catalog's windows and
    lookback (`catalog_windows`, `with_lookback`, `after_first_window`); empty for a measure without one."""

    name: str
    measure: Measure
    phrase: Phrase
    windows: Windows = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = "^" + re.escape(self.name) + "$"
        regex = regex.replace(re.escape("{window}"), r"(?P<window>\d+)").replace(
            re.escape("{type}"), "(?P<type>[a-z0-9_]+)"
        )
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def per_type(self) -> bool:
        return "{type}" in self.name

    def resolve(self, windows: tuple[int, ...], lookback: int) -> tuple[int, ...]:
        return self.windows(windows, lookback) if callable(self.windows) else tuple(self.windows)

    def column_name(self, *, window: int | None = None, slug: str | None = None) -> str:
        return self.name.replace("{window}", str(window)).replace("{type}", slug or "")

    def problem(self, windows: tuple[int, ...], lookback: int) -> str | None:
        """Why neither engine can compute this family, or None."""
        if not isinstance(self.measure, Measure):
            return f"its measure {self.measure!r} is not a models.features.Measure (no numpy or SQL form)"
        if self.per_type and self.measure not in PER_TYPE:
            return f"{self.measure.name} is not computed per event type (only {', '.join(m.name for m in PER_TYPE)})"
        own = self.resolve(windows, lookback)
        if self.measure.windowed != ("{window}" in self.name) or (self.measure.windowed and not own):
            return f"{self.measure.name} {'needs' if self.measure.windowed else 'takes no'} {{window}} and windows"
        if bad := [w for w in own if not 0 < w <= lookback]:
            return f"windows {bad} are outside 1..{lookback} days (the lookback)"
        return None


@dataclass(frozen=True, kw_only=True)
class Column:
    """One feature column: its family, window (None for an age) and event-type slug (None unless per type)."""

    feature: Feature
    window: int | None
    slug: str | None
    lookback: int

    def words(self) -> Callable[[float], str]:
        return self.feature.phrase(window=self.window, slug=self.slug, lookback=self.lookback)


#: Every feature a default catalog builds, in the order of `FeatureCatalog.feature_names` (per-type
#: families after the others, per type). Adding one here is the whole change.
FEATURES: tuple[Feature, ...] = (
    Feature(name="events_{window}d", measure=Measure.COUNT, windows=with_lookback, phrase=events),
    Feature(name="active_days_{window}d", measure=Measure.ACTIVE_DAYS, windows=catalog_windows, phrase=active_days),
    Feature(
        name="distinct_types_{window}d",
        measure=Measure.DISTINCT_TYPES,
        windows=after_first_window,
        phrase=kinds_of_activity,
    ),
    Feature(name="days_since_last_event", measure=Measure.NEWEST_AGE, phrase=days_since_last),
    Feature(name="days_since_first_event", measure=Measure.OLDEST_AGE, phrase=days_since_first),
    Feature(name="evt_{type}_{window}d", measure=Measure.COUNT, windows=catalog_windows, phrase=type_count),
)
