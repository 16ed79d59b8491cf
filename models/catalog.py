"""The feature catalog: events before ``as_of`` → one float64 row per user.

Every feature is computed from events aggregated to the daily grain
(visitor, event type, day, count), so a store may hand over pre-aggregated rows
and a very active visitor costs a few rows, not thousands. The same function
serves training and scoring, so there is no training/serving skew.

>>> catalog = FeatureCatalog()
>>> names = catalog.feature_names(event_types=["page_view", "pricing_view"])
>>> frame = catalog.build(daily, visitor_ids=["v1", None], as_of=as_of, names=names)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

__all__ = [
    "DAILY_COLUMNS",
    "FeatureCatalog",
    "UnknownFeatureError",
    "normalize_event_type",
    "slugify",
]

#: Columns of the daily grain every store hands over.
DAILY_COLUMNS = ("visitor_id", "event_type", "day", "n")

_SLUG_RE = re.compile(r"[^a-z0-9]+")
_EVT_RE = re.compile(r"^evt_(?P<slug>[a-z0-9_]+)_(?P<window>\d+)d$")


class UnknownFeatureError(ValueError):
    """A model asks for features this catalog cannot build."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        shown = ", ".join(self.names[:10]) + (" …" if len(self.names) > 10 else "")
        super().__init__(
            f"the model asks for {len(self.names)} feature(s) the catalog cannot build: {shown}. "
            "Train a new version with this release (`lead-scorer train`) or pin a version this release "
            "supports (`--model-version`)."
        )


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
    """Counts per event type over recent windows, activity recency, active days, breadth.

    ``lookback_days`` bounds what a store reads: events older than that are never needed.
    """

    windows: tuple[int, ...] = (7, 30, 90)
    lookback_days: int = 180

    # -- names -------------------------------------------------------------------------------
    def base_feature_names(self) -> list[str]:
        names = [f"events_{w}d" for w in (*self.windows, self.lookback_days)]
        names += [f"active_days_{w}d" for w in self.windows]
        names += [f"distinct_types_{w}d" for w in self.windows[1:]]
        names += ["days_since_last_event", "days_since_first_event"]
        return names

    def feature_names(self, *, event_types: Iterable[str]) -> list[str]:
        """Every feature for a model trained on ``event_types`` (normalized names)."""
        slugs = sorted({slugify(t) for t in event_types})
        per_type = [f"evt_{s}_{w}d" for s in slugs for w in self.windows]
        return self.base_feature_names() + per_type

    def check(self, names: Sequence[str]) -> None:
        """Raise `UnknownFeatureError` if any of ``names`` is not in this catalog."""
        base = set(self.base_feature_names())
        unknown = [
            n for n in names if n not in base and not ((m := _EVT_RE.match(n)) and int(m["window"]) in self.windows)
        ]
        if unknown:
            raise UnknownFeatureError(unknown)

    def type_slugs(self, names: Sequence[str]) -> list[str]:
        """The event-type slugs a list of feature names refers to."""
        return sorted({m["slug"] for n in names if (m := _EVT_RE.match(n))})

    # -- computation ---------------------------------------------------------------------------
    def since(self, as_of: datetime) -> datetime:
        """The oldest event time any feature looks at."""
        return as_of - timedelta(days=self.lookback_days + 1)

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
        self.check(names)
        never = float(self.lookback_days + 1)
        vindex = pd.Index(pd.unique(pd.array([v for v in visitor_ids if v is not None], dtype=object)))
        n_vis = len(vindex)
        cols: dict[str, np.ndarray] = {}

        daily = daily[daily["visitor_id"].notna() & daily["event_type"].notna() & daily["day"].notna()]
        vcode = vindex.get_indexer(daily["visitor_id"].to_numpy(dtype=object))
        keep = vcode >= 0
        vcode = vcode[keep]
        # "Age 0" is the most recent (possibly partial) day before as_of, for a midnight
        # training cutoff and a mid-day scoring run alike.
        last_day = np.datetime64((as_of - timedelta(microseconds=1)).date(), "D")
        days = pd.to_datetime(daily["day"].to_numpy()[keep]).to_numpy().astype("datetime64[D]")
        age = (last_day - days).astype(np.int64)
        n = daily["n"].to_numpy()[keep].astype(np.float64)
        types = daily["event_type"].to_numpy(dtype=object)[keep]
        in_range = (age >= 0) & (age <= self.lookback_days)
        vcode, age, n, types = vcode[in_range], age[in_range], n[in_range], types[in_range]

        def per_visitor(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(vcode[mask], weights=None if weights is None else weights[mask], minlength=n_vis)

        for w in (*self.windows, self.lookback_days):
            cols[f"events_{w}d"] = per_visitor(age < w, n).astype(np.float64)

        day_key = pd.DataFrame({"v": vcode, "a": age}).drop_duplicates()
        dv, da = day_key["v"].to_numpy(), day_key["a"].to_numpy()
        for w in self.windows:
            cols[f"active_days_{w}d"] = np.bincount(dv[da < w], minlength=n_vis).astype(np.float64)

        tcode_all, _ = pd.factorize(types)
        type_key = pd.DataFrame({"v": vcode, "t": tcode_all, "a": age})
        for w in self.windows[1:]:
            sub = type_key[type_key["a"] < w].drop_duplicates(["v", "t"])
            cols[f"distinct_types_{w}d"] = np.bincount(sub["v"].to_numpy(), minlength=n_vis).astype(np.float64)

        last = np.full(n_vis, never)
        first = np.full(n_vis, never)
        if len(vcode):
            np.minimum.at(last, vcode, age.astype(np.float64))
            first_seen = np.full(n_vis, -1.0)
            np.maximum.at(first_seen, vcode, age.astype(np.float64))
            first = np.where(first_seen >= 0, first_seen, never)
        cols["days_since_last_event"] = last
        cols["days_since_first_event"] = first

        wanted_slugs = self.type_slugs(names)
        if wanted_slugs:
            uniq_types, inverse = (
                np.unique(types.astype(str), return_inverse=True)
                if len(types)
                else (
                    np.array([], dtype=str),
                    np.array([], dtype=np.int64),
                )
            )
            slug_pos = {s: i for i, s in enumerate(wanted_slugs)}
            # Types unseen in training map to -1 and are ignored.
            type_to_slot = np.array([slug_pos.get(slugify(t), -1) for t in uniq_types], dtype=np.int64)
            slot = type_to_slot[inverse] if len(types) else np.array([], dtype=np.int64)
            for w in self.windows:
                m = (slot >= 0) & (age < w)
                flat = np.bincount(
                    vcode[m] * len(wanted_slugs) + slot[m], weights=n[m], minlength=n_vis * len(wanted_slugs)
                ).reshape(n_vis, len(wanted_slugs))
                for s, i in slug_pos.items():
                    cols[f"evt_{s}_{w}d"] = flat[:, i]

        # Row n_vis is the zero-activity row, for None visitors and visitors with no events.
        user_pos = vindex.get_indexer(pd.Index(list(visitor_ids), dtype=object))
        user_pos = np.where(user_pos >= 0, user_pos, n_vis)
        empty = {name: (never if name.startswith("days_since") else 0.0) for name in cols}
        out = {name: np.append(cols[name], empty[name])[user_pos].astype(np.float64, copy=False) for name in names}
        return pd.DataFrame(out, columns=list(names))
