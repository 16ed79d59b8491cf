"""The feature catalog: events before ``as_of`` → one float64 row per user.

Every feature is computed from events aggregated to the daily grain
(visitor, event type, day, count), so a store may hand over pre-aggregated rows
and a very active visitor costs a few rows, not thousands. The same function
serves training and scoring, so there is no training/serving skew.

>>> from datetime import UTC
>>> catalog = FeatureCatalog()
>>> names = catalog.feature_names(event_types=["page_view", "pricing_view"])
>>> daily = pd.DataFrame(  # what a store hands over: events before as_of, per visitor, type and day
...     {"visitor_id": ["v1", "v1", "v1"], "event_type": ["pricing_view", "pricing_view", "page_view"],
...      "day": [date(2026, 11, 24), date(2026, 11, 20), date(2026, 10, 1)], "n": [2, 1, 5]}
... )
>>> as_of = datetime(2026, 11, 25, tzinfo=UTC)
>>> frame = catalog.build(daily, visitor_ids=["v1", None], as_of=as_of, names=names)
>>> frame[["events_7d", "evt_pricing_view_7d", "evt_page_view_90d", "days_since_last_event"]]
   events_7d  evt_pricing_view_7d  evt_page_view_90d  days_since_last_event
0        3.0                  3.0                5.0                    0.0
1        0.0                  0.0                0.0                  181.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property

import numpy as np
import pandas as pd

from lead_errors import FeatureDefinitionError, UnknownFeatureError
from models.features import FEATURES, Column, Feature, Measure

__all__ = [
    "DAILY_COLUMNS",
    "DailyGrain",
    "FeatureCatalog",
    "UnknownFeatureError",
    "day_number",
    "day_numbers",
    "normalize_event_type",
    "slugify",
]

#: Columns of the daily grain every store hands over.
DAILY_COLUMNS = ("visitor_id", "event_type", "day", "n")

_SLUG_RE = re.compile(r"[^a-z0-9]+")
_EPOCH = date(1970, 1, 1)


def normalize_event_type(value: str | None) -> str | None:
    """Trim and lower-case an event type; empty or NULL types become None (dropped)."""
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def slugify(event_type: str) -> str:
    """The column-name form of a normalized event type: ``"Pricing View"`` → ``"pricing_view"``."""
    slug = _SLUG_RE.sub("_", event_type.strip().lower()).strip("_")
    return slug or "blank"


@dataclass(frozen=True, kw_only=True)
class FeatureCatalog:
    """The features of `models.features.FEATURES` (counts per event type over recent windows, activity
    recency, active days, breadth), at these windows.

    ``lookback_days`` bounds what a store reads: events older than that are never needed. ``definitions``
    is the extension point: ``FeatureCatalog(definitions=(*FEATURES, Feature(...)))`` adds a family that
    every store then computes (numpy here, SQL in ``scorer.stores.pg_features``).
    """

    windows: tuple[int, ...] = (7, 30, 90)
    lookback_days: int = 180
    definitions: tuple[Feature, ...] = FEATURES

    # -- names -------------------------------------------------------------------------------
    @cached_property
    def families(self) -> tuple[tuple[Feature, tuple[int, ...]], ...]:
        """Each feature family with its windows resolved for this catalog."""
        return tuple((f, f.resolve(self.windows, self.lookback_days)) for f in self.definitions)

    def windows_of(self, measure: Measure, *, per_type: bool = False) -> tuple[int, ...]:
        """The sorted windows of every family with ``measure`` (and per-type or not)."""
        return tuple(
            sorted({w for f, ws in self.families if f.measure is measure and f.per_type == per_type for w in ws})
        )

    def base_feature_names(self) -> list[str]:
        return [f.column_name(window=w) for f, ws in self.families if not f.per_type for w in (ws or (None,))]

    def feature_names(self, *, event_types: Iterable[str]) -> list[str]:
        """Every feature for a model trained on ``event_types`` (normalized names)."""
        slugs = sorted({slugify(t) for t in event_types})
        per_type = [f.column_name(window=w, slug=s) for s in slugs for f, ws in self.families if f.per_type for w in ws]
        return self.base_feature_names() + per_type

    def parse(self, name: str) -> Column | None:
        """The column ``name`` is by its family's pattern, whatever its window (None if no family matches)."""
        return self._parsed.get(name) or self._parse(name)

    @cached_property
    def _parsed(self) -> dict[str, Column | None]:
        return {}

    def _parse(self, name: str) -> Column | None:
        found = None
        # Families without {type} first: their names are literal but for a number.
        for f in sorted(self.definitions, key=lambda f: f.per_type):
            if m := f.pattern.match(name):
                groups = m.groupdict()
                window = int(groups["window"]) if groups.get("window") else None
                found = Column(feature=f, window=window, slug=groups.get("type"), lookback=self.lookback_days)
                break
        self._parsed[name] = found
        return found

    def column(self, name: str) -> Column:
        """`parse`, for a name this catalog builds; raise `UnknownFeatureError` otherwise."""
        col = self.parse(name)
        if col is None or (col.window is not None and col.window not in self._windows[col.feature]):
            raise UnknownFeatureError([name])
        return col

    def check(self, names: Sequence[str]) -> None:
        """Raise `FeatureDefinitionError` if a family of the catalog is one neither engine can compute (naming
        it), `UnknownFeatureError` if any of ``names`` is not in this catalog."""
        if self._problem is not None:
            raise FeatureDefinitionError(self._problem.message, hint=self._problem.hint)
        unknown = []
        for name in names:
            try:
                self.column(name)
            except UnknownFeatureError:
                unknown.append(name)
        if unknown:
            raise UnknownFeatureError(unknown)

    @cached_property
    def _windows(self) -> dict[Feature, tuple[int, ...]]:
        return dict(self.families)

    @cached_property
    def _problem(self) -> FeatureDefinitionError | None:
        for f, _ in self.families:
            if problem := f.problem(self.windows, self.lookback_days):
                return FeatureDefinitionError(
                    f"the feature {f.name!r} cannot be computed: {problem}",
                    hint="fix its entry in the catalog's definitions (models/features.py says what each measure takes)",
                )
        return None

    def type_slugs(self, names: Sequence[str]) -> list[str]:
        """The event-type slugs a list of feature names refers to."""
        return sorted({col.slug for n in names if (col := self.parse(n)) is not None and col.slug is not None})

    # -- computation ---------------------------------------------------------------------------
    @property
    def reach(self) -> timedelta:
        """How far back an event can still move a feature: the lookback, plus the partial day."""
        return timedelta(days=self.lookback_days + 1)

    def since(self, as_of: datetime) -> datetime:
        """The oldest event time any feature looks at."""
        return as_of - self.reach

    def day_start(self, as_of: datetime) -> datetime:
        """The start of ``as_of``'s feature day (the day of age 0). Features computed at any time after it,
        up to ``as_of``, differ only by the events in between; at or before it, the windows sat elsewhere."""
        day = (as_of - timedelta(microseconds=1)).date()
        return datetime(day.year, day.month, day.day, tzinfo=as_of.tzinfo)

    def build(
        self,
        daily: pd.DataFrame,
        *,
        visitor_ids: Sequence[str | None],
        as_of: datetime,
        names: Sequence[str],
    ) -> pd.DataFrame:
        """Features for each entry of ``visitor_ids`` (in that order), columns ``names``, float64.

        ``daily`` holds events strictly before ``as_of``, with normalized types, in the
        columns `DAILY_COLUMNS`; ``day`` is a date (UTC). A None visitor, or one with no
        rows, gets the zero-activity row. Never produces NaN.
        """
        return self.features(DailyGrain.from_frame(daily), visitor_ids=visitor_ids, as_of=as_of, names=names)

    def features(
        self,
        grain: DailyGrain,
        *,
        visitor_ids: Sequence[str | None],
        as_of: datetime,
        names: Sequence[str],
    ) -> pd.DataFrame:
        """`build`, from the arrays of a `DailyGrain` (what the stores hand over)."""
        self.check(names)
        columns = [self.parse(name) for name in names]
        activity = _Activity(grain, as_of=as_of, lookback=self.lookback_days, slugs=self.type_slugs(names))
        table = np.empty((len(grain.visitors), len(names)), dtype=np.float64)
        for j, col in enumerate(columns):
            assert col is not None  # checked
            table[:, j] = activity.measure(col)
        return self.for_users(grain.visitors, table, visitor_ids=visitor_ids, names=names)

    def for_users(
        self, visitors: Sequence[str], table: np.ndarray, *, visitor_ids: Sequence[str | None], names: Sequence[str]
    ) -> pd.DataFrame:
        """Per-user features from per-visitor rows (``table[i]`` is ``visitors[i]``'s, columns ``names``): a
        None visitor, or one not listed, gets the zero-activity row."""
        n_vis = len(visitors)
        never = float(self.lookback_days + 1)
        full = np.empty((n_vis + 1, len(names)), dtype=np.float64)
        full[:n_vis] = np.asarray(table, dtype=np.float64).reshape(n_vis, len(names))
        empty = [(col := self.parse(name)) is not None and col.feature.measure.empty == "never" for name in names]
        full[n_vis] = [never if is_never else 0.0 for is_never in empty]
        position = {v: i for i, v in enumerate(visitors)}
        user_pos = np.fromiter(
            (position.get(v, n_vis) if isinstance(v, str) else n_vis for v in visitor_ids),
            dtype=np.int64,
            count=len(visitor_ids),
        )
        return pd.DataFrame(full[user_pos], columns=list(names))


class _Activity:
    """One grain's events in the lookback, as ages (age 0: the day of ``as_of - 1µs``): each `Measure`'s
    numpy form, with what several columns share (distinct days, distinct types, per-type counts) made once."""

    def __init__(self, grain: DailyGrain, *, as_of: datetime, lookback: int, slugs: Sequence[str]) -> None:
        self.n_vis = len(grain.visitors)
        self.lookback = lookback
        # "Age 0" is the most recent (possibly partial) day before as_of, for a midnight
        # training cutoff and a mid-day scoring run alike.
        age = day_number((as_of - timedelta(microseconds=1)).date()) - grain.day
        keep = (age >= 0) & (age <= lookback)
        self.vcode, self.age, self.n, types = grain.visitor[keep], age[keep], grain.n[keep], grain.event_type[keep]
        self.tcode, self.tnames = pd.factorize(types)
        self.slug_pos = {s: i for i, s in enumerate(slugs)}
        self._cache: dict[object, np.ndarray] = {}

    def measure(self, col: Column) -> np.ndarray:
        m, w = col.feature.measure, col.window or 0
        if m is Measure.COUNT and col.slug is not None:
            return self._per_type(w)[:, self.slug_pos[col.slug]]
        if m is Measure.COUNT:
            return self._once(("count", w), lambda: self._count(w))
        if m is Measure.ACTIVE_DAYS:
            return self._once(("days", w), lambda: self._active_days(w))
        if m is Measure.DISTINCT_TYPES:
            return self._once(("types", w), lambda: self._distinct_types(w))
        if m is Measure.NEWEST_AGE or m is Measure.OLDEST_AGE:
            return self._ages()[0 if m is Measure.NEWEST_AGE else 1]
        raise FeatureDefinitionError(f"the feature {col.feature.name!r} has no numpy form for {m!r}")

    def _once(self, key: object, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _count(self, w: int) -> np.ndarray:
        m = self.age < w
        return np.bincount(self.vcode[m], weights=self.n[m], minlength=self.n_vis).astype(np.float64)

    def _active_days(self, w: int) -> np.ndarray:
        # A visitor may have several rows per day (one per type): count distinct (visitor, day).
        vday = self._once("vday", lambda: _distinct(self.vcode * self.span + self.age, self.n_vis * self.span))
        dv, da = vday // self.span, vday % self.span
        return np.bincount(dv[da < w], minlength=self.n_vis).astype(np.float64)

    @property
    def span(self) -> int:
        return self.lookback + 1

    def _distinct_types(self, w: int) -> np.ndarray:
        n_types = max(len(self.tnames), 1)
        vtype = self.vcode * n_types + self.tcode
        seen = _distinct(vtype[self.age < w], self.n_vis * n_types)
        return np.bincount(seen // n_types, minlength=self.n_vis).astype(np.float64)

    def _ages(self) -> tuple[np.ndarray, np.ndarray]:
        never = float(self.lookback + 1)
        last = np.full(self.n_vis, never)
        first = np.full(self.n_vis, never)
        if len(self.vcode):
            fage = self.age.astype(np.float64)
            np.minimum.at(last, self.vcode, fage)
            first_seen = np.full(self.n_vis, -1.0)
            np.maximum.at(first_seen, self.vcode, fage)
            first = np.where(first_seen >= 0, first_seen, never)
        return last, first

    def _per_type(self, w: int) -> np.ndarray:
        """(visitors, slugs) counts per wanted type slug over ``w`` days; types unseen in training ignored."""
        key = ("per_type", w)
        if key in self._cache:
            return self._cache[key]
        slot = self._once("slot", self._slots)
        n_slots = len(self.slug_pos)
        m = (slot >= 0) & (self.age < w)
        flat = np.bincount(self.vcode[m] * n_slots + slot[m], weights=self.n[m], minlength=self.n_vis * n_slots)
        self._cache[key] = flat.reshape(self.n_vis, n_slots)
        return self._cache[key]

    def _slots(self) -> np.ndarray:
        # Types unseen in training map to -1 and are ignored.
        type_to_slot = np.array([self.slug_pos.get(slugify(str(t)), -1) for t in self.tnames], dtype=np.int64)
        return type_to_slot[self.tcode] if len(self.tcode) else np.empty(0, dtype=np.int64)


def _distinct(keys: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of non-negative integer ``keys`` below ``size``, sorted.

    A presence table when the key space is small (it is: visitors by days or visitors by types of one
    batch), which is several times faster than np.unique's hashing on ~40,000 keys.
    """
    if size <= 1 << 24:
        return np.flatnonzero(np.bincount(keys, minlength=size))
    return np.unique(keys)


def day_number(day: date) -> int:
    """A UTC day as the number of days since 1970-01-01 (what `DailyGrain.day` holds)."""
    return (day - _EPOCH).days


def day_numbers(values: Sequence[object] | np.ndarray) -> np.ndarray:
    """Dates or ISO date strings as `day_number`s, in an object array with None where a value is missing."""
    days = pd.to_datetime(np.asarray(values, dtype=object)).to_numpy().astype("datetime64[D]")
    numbers: np.ndarray = days.astype(np.int64).astype(object)
    numbers[np.isnat(days)] = None
    return numbers


@dataclass(frozen=True, kw_only=True, eq=False)
class DailyGrain:
    """Events at the daily grain, as arrays: row i is ``n[i]`` events of type ``event_type[i]`` that
    visitor ``visitors[visitor[i]]`` had on UTC day ``day[i]`` (days since 1970-01-01).

    Stores build it straight from their rows, so a batch never goes through a per-row DataFrame:

    >>> grain = DailyGrain.from_frame(pd.DataFrame({"visitor_id": ["v1"], "event_type": ["page_view"],
    ...                                             "day": [date(2026, 6, 1)], "n": [3]}))
    """

    visitors: Sequence[str]  # distinct visitor ids; ``visitor`` indexes this
    visitor: np.ndarray  # int64
    event_type: np.ndarray  # object: normalized type names
    day: np.ndarray  # int64
    n: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.visitor)

    @classmethod
    def empty(cls) -> DailyGrain:
        return cls(
            visitors=[],
            visitor=np.empty(0, dtype=np.int64),
            event_type=np.empty(0, dtype=object),
            day=np.empty(0, dtype=np.int64),
            n=np.empty(0, dtype=np.float64),
        )

    @classmethod
    def from_arrays(
        cls, *, visitor_id: np.ndarray, event_type: np.ndarray, day: np.ndarray, n: np.ndarray
    ) -> DailyGrain:
        """From parallel arrays (visitor ids as objects, ``day`` as day numbers); rows must be complete."""
        codes, uniques = pd.factorize(visitor_id)
        return cls(
            visitors=list(uniques),
            visitor=codes.astype(np.int64, copy=False),
            event_type=np.asarray(event_type, dtype=object),
            day=np.asarray(day, dtype=np.int64),
            n=np.asarray(n, dtype=np.float64),
        )

    @classmethod
    def concat(cls, grains: Sequence[DailyGrain]) -> DailyGrain:
        """One grain from grains of disjoint sets of visitors (a visitor in two would count twice)."""
        grains = [g for g in grains if len(g.visitors)]
        if len(grains) <= 1:
            return grains[0] if grains else cls.empty()
        offsets = np.cumsum([0] + [len(g.visitors) for g in grains[:-1]])
        return cls(
            visitors=[v for g in grains for v in g.visitors],
            visitor=np.concatenate([g.visitor + off for g, off in zip(grains, offsets, strict=True)]),
            event_type=np.concatenate([g.event_type for g in grains]),
            day=np.concatenate([g.day for g in grains]),
            n=np.concatenate([g.n for g in grains]),
        )

    @classmethod
    def from_frame(cls, daily: pd.DataFrame) -> DailyGrain:
        """From a frame with `DAILY_COLUMNS` (``day`` a date or ISO string); incomplete rows are dropped."""
        daily = daily[daily["visitor_id"].notna() & daily["event_type"].notna() & daily["day"].notna()]
        if daily.empty:
            return cls.empty()
        return cls.from_arrays(
            visitor_id=daily["visitor_id"].to_numpy(dtype=object),
            event_type=daily["event_type"].to_numpy(dtype=object),
            day=day_numbers(daily["day"].to_numpy()).astype(np.int64),
            n=daily["n"].to_numpy(dtype=np.float64),
        )

    def to_frame(self) -> pd.DataFrame:
        """The rows as a frame with `DAILY_COLUMNS` (``day`` as a date): for reading, not for speed."""
        names: list[str | None] = [*self.visitors] or [None]
        visitors = np.asarray(names, dtype=object)
        days = (np.datetime64("1970-01-01", "D") + self.day.astype("timedelta64[D]")).astype(object)
        return pd.DataFrame(
            {
                "visitor_id": visitors[self.visitor] if len(self) else np.empty(0, dtype=object),
                "event_type": self.event_type,
                "day": days,
                "n": self.n.astype(np.int64),
            },
            columns=list(DAILY_COLUMNS),
        )
