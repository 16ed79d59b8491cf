"""The one interface both stores implement, and the names they read and write."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from models import DailyGrain, day_numbers
from scorer.errors import SettingsError

__all__ = [
    "EventRead",
    "Names",
    "Selection",
    "Store",
    "UserPage",
    "split_dropped",
    "split_dropped_frame",
    "validate_identifier",
]

Selection = Literal["unscored", "stale", "all"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(value: str, *, what: str) -> str:
    """Table and column names come from settings: allow plain identifiers only (no injection)."""
    if not _IDENT.match(value):
        raise SettingsError(
            f"{what} {value!r} is not a plain SQL identifier",
            hint="use letters, digits and underscores, starting with a letter or underscore",
        )
    return value


@dataclass(frozen=True, kw_only=True)
class Names:
    """Table and column names of the data contract (DESIGN.md), all overridable in settings."""

    schema: str = "public"
    users: str = "users"
    events: str = "events"
    user_id: str = "user_id"
    visitor_id: str = "visitor_id"
    lead_score: str = "lead_score"
    model_version: str = "lead_score_model_version"
    scored_at: str = "lead_scored_at"
    converted_at: str = "converted_at"
    event_visitor_id: str = "visitor_id"
    event_type: str = "event_type"
    created_at: str = "created_at"

    def __post_init__(self) -> None:
        for f in fields(self):
            validate_identifier(getattr(self, f.name), what=f"name setting {f.name}")


@dataclass(frozen=True, kw_only=True)
class UserPage:
    """One key page of users, ordered by ``user_id``."""

    user_ids: list[Any]
    visitor_ids: list[str | None]
    converted_at: pd.Series | None = None  # only when asked for (training)

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True, kw_only=True)
class EventRead:
    """A batch's events at the daily grain, and what was dropped on the way."""

    grain: DailyGrain = field(default_factory=DailyGrain.empty)
    events_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # null_type, null_time, future
    requests: int = 0

    @classmethod
    def combine(cls, reads: Sequence[EventRead]) -> EventRead:
        """One read from reads of disjoint sets of visitors."""
        dropped: dict[str, int] = {}
        for r in reads:
            for k, v in r.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
        return cls(
            grain=DailyGrain.concat([r.grain for r in reads]),
            events_read=sum(r.events_read for r in reads),
            dropped=dropped,
            requests=sum(r.requests for r in reads),
        )

    @property
    def daily(self) -> pd.DataFrame:
        """The kept rows as a frame with `models.DAILY_COLUMNS`, for reading and tests."""
        return self.grain.to_frame()


class Store(Protocol):
    """Where users and events live. The batch loop knows nothing else about a store."""

    kind: str
    #: Whether a write may run while the next batch is being read (on another connection).
    concurrent: bool

    def describe(self) -> str:
        """Where this store points, safe to log (no secrets)."""
        ...

    def check(self, *, scoring: bool = True, training: bool = False) -> None:
        """Raise `SchemaError`/`AuthError` early if a table, column or credential is wrong."""
        ...

    def count_users(self, *, select: Selection, model_version: str | None) -> int: ...

    def select_users(
        self,
        *,
        select: Selection,
        model_version: str | None,
        after: Any | None,
        limit: int,
        with_label: bool = False,
    ) -> UserPage:
        """The next key page: ``user_id > after`` in ``user_id`` order, at most ``limit`` users."""
        ...

    def read_events(self, visitor_ids: Sequence[str], *, since: datetime, as_of: datetime) -> EventRead:
        """All events of ``visitor_ids`` in ``[since, as_of)``, complete, at the daily grain."""
        ...

    def write_scores(
        self, user_ids: Sequence[Any], scores: Sequence[float], *, model_version: str, scored_at: datetime
    ) -> int:
        """Update existing rows only (never insert); returns how many rows were updated."""
        ...

    def top_event_types(self, *, since: datetime, as_of: datetime, limit: int) -> list[str]:
        """The most frequent normalized event types in ``[since, as_of)``."""
        ...

    def close(self) -> None: ...


def split_dropped(
    *,
    visitor_id: np.ndarray,
    event_type: np.ndarray,
    day: np.ndarray,
    future: np.ndarray,
    n: np.ndarray,
    requests: int = 0,
) -> EventRead:
    """From aggregated rows as object arrays (visitor id, normalized type, UTC day number or None, at or
    after ``as_of``, count): drop and count events with no type, no time, or a time at/after ``as_of``;
    keep the rest at the daily grain."""
    if not len(n):
        return EventRead(requests=requests)
    counts = np.asarray(n, dtype=np.int64)
    no_type = (event_type == None) | (event_type == "")  # noqa: E711 - elementwise on an object array
    no_time = (day == None) & ~no_type  # noqa: E711
    late = (future == True) & ~no_type & ~no_time  # noqa: E712
    keep = ~(no_type | no_time | late) & (visitor_id != None)  # noqa: E711
    grain = DailyGrain.from_arrays(
        visitor_id=visitor_id[keep],
        event_type=event_type[keep],
        day=day[keep].astype(np.int64),
        n=counts[keep].astype(np.float64),
    )
    dropped = {
        "null_type": int(counts[no_type].sum()),
        "null_time": int(counts[no_time].sum()),
        "future": int(counts[late].sum()),
    }
    return EventRead(grain=grain, events_read=int(counts.sum()), dropped=dropped, requests=requests)


def split_dropped_frame(frame: pd.DataFrame, *, requests: int = 0) -> EventRead:
    """`split_dropped` for a frame (visitor_id, event_type, day as a date or ISO string, future, n)."""
    return split_dropped(
        visitor_id=frame["visitor_id"].to_numpy(dtype=object),
        event_type=frame["event_type"].to_numpy(dtype=object, na_value=None),
        day=day_numbers(frame["day"].to_numpy()),
        future=frame["future"].fillna(False).to_numpy(dtype=object),
        n=frame["n"].to_numpy(),
        requests=requests,
    )
