"""What the job and training ask of a data source (`ScoringSource`, `TrainingSource`), and the values that
pass between them and a store. The table and column names are the data contract's (`scorer.contract`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import numpy as np
import pandas as pd

from models import DailyGrain, FeatureCatalog, day_numbers, normalize_event_type

__all__ = [
    "Checkpoint",
    "CohortFeatures",
    "EventRead",
    "EventSource",
    "FeatureRequest",
    "Freshness",
    "ScoreWrite",
    "ScoringSource",
    "Selection",
    "Selector",
    "ShadowPairs",
    "ShadowWrite",
    "Source",
    "TrainingSource",
    "UserPage",
    "VisitorFeatures",
    "split_dropped",
    "split_dropped_frame",
]

Selection = Literal["unscored", "stale", "all"]


@dataclass(frozen=True, kw_only=True)
class UserPage:
    """One key page of users, ordered by ``user_id``."""

    user_ids: list[Any]
    visitor_ids: list[str | None]
    converted_at: pd.Series | None = None  # only in training's pages (`TrainingSource.labelled_users`)
    #: The score and model each user holds now (NaN / None when unscored), to write only what changed.
    scores: np.ndarray | None = None
    models: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def part(self, start: int, stop: int) -> UserPage:
        """Users ``start`` to ``stop`` of this page (a half, when a failing batch is split)."""
        return UserPage(
            user_ids=self.user_ids[start:stop],
            visitor_ids=self.visitor_ids[start:stop],
            converted_at=None if self.converted_at is None else self.converted_at.iloc[start:stop],
            scores=None if self.scores is None else self.scores[start:stop],
            models=None if self.models is None else self.models[start:stop],
        )


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """How far earlier runs of one model over one population got, kept in the database beside the scores.

    Every user up to ``partial_through`` had its score checked at ``partial_as_of``, and every user at
    ``complete_as_of``: "checked" means rescored (written only if it changed) or found fresh. A score that
    did not change is not rewritten, so this, not ``lead_scored_at``, is what tells a rerun that the user
    is done.
    """

    complete_as_of: datetime | None = None
    partial_as_of: datetime | None = None
    partial_through: Any | None = None


@dataclass(frozen=True, kw_only=True)
class Freshness:
    """When a score is stale (the ``stale`` selection), for one run. Stores render it as SQL or send it to
    the database function; the rule is this, in one place:

    a user is stale if it has no score, a score from another model, no ``lead_scored_at``, or, with
    ``checked`` the latest of its ``lead_scored_at`` and the checkpoint that covers it, an event in
    ``[checked, as_of)`` (new behaviour) or, when ``checked`` is on an earlier feature day than
    ``day_start``, an event in ``[checked - reach, as_of)`` (the day moved its windows).
    """

    model: str  # the identity a score records (`registry.ResolvedVersion.identity`)
    as_of: datetime
    day_start: datetime  # the start of the run's feature day: a check at or before it is from another day
    reach: timedelta  # how far back an event still moves a feature (the catalog's lookback, plus a day)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    #: The checkpoint's row: one per model and population (leads only or everyone).
    key: str = ""


@dataclass(frozen=True, kw_only=True)
class Selector:
    """Which users a run reads: ``select`` mode, open leads only (no ``converted_at``) or everyone."""

    select: Selection = "stale"
    leads_only: bool = True
    freshness: Freshness | None = None  # required by "stale"


@dataclass(frozen=True, kw_only=True)
class ShadowWrite:
    """The challenger's scores of a batch's rescored users, kept in the job's own shadow table (one row per
    user and model), never in the users table."""

    model: str  # the challenger's identity (`registry.ResolvedVersion.identity`)
    user_ids: Sequence[Any]
    scores: Sequence[float] | np.ndarray


@dataclass(frozen=True, kw_only=True)
class ShadowPairs:
    """The scores of the population's users holding both a production score and the challenger's shadow score,
    aligned by user: only the two float columns (16 bytes a lead), since the figures made of them need no id."""

    production: np.ndarray
    challenger: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ScoreWrite:
    """One batch's changed scores, written in one transaction (or one database function call) with their
    reasons, their history rows and the run's checkpoint, so none of them can disagree with another."""

    user_ids: Sequence[Any]
    scores: Sequence[float]
    model: str
    scored_at: datetime
    reasons: Sequence[str | None] | None = None  # JSON text per user, when the model gives reasons
    history: bool = False
    #: After this write every selected user up to ``through`` is checked at ``scored_at`` (None: leave it).
    checkpoint_key: str | None = None
    through: Any | None = None
    complete: bool = False  # the run covered everyone: the checkpoint becomes complete
    #: The challenger's scores of this batch, written in the same transaction (None: no challenger).
    shadow: ShadowWrite | None = None


@dataclass(frozen=True, kw_only=True)
class FeatureRequest:
    """The features a batch needs (the model's inputs, from the catalog), which a store may compute itself."""

    catalog: FeatureCatalog
    names: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class VisitorFeatures:
    """Features a store computed itself: one row of ``values`` (columns: the request's names) per visitor with
    events. A visitor not listed gets the catalog's zero-activity row (`FeatureCatalog.for_users`)."""

    visitors: list[str]
    values: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[VisitorFeatures]) -> VisitorFeatures:
        return cls(
            visitors=[v for p in parts for v in p.visitors],
            values=np.concatenate([p.values for p in parts]) if parts else np.empty((0, 0)),
        )


@dataclass(frozen=True, kw_only=True)
class CohortFeatures:
    """A page of a cohort of day T, computed by the store (`TrainingSource.cohort_features`): the features as
    of T of each visitor with events, and the visitors that were not leads yet at T (no typed event in the
    lookback before T, one in ``[T, T + H)``)."""

    features: VisitorFeatures
    later: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class EventRead:
    """A batch's events at the daily grain, and what was dropped on the way; or, from a store that computes
    the requested features itself, those features (and an empty grain)."""

    grain: DailyGrain = field(default_factory=DailyGrain.empty)
    events_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # null_type, null_time, future
    features: VisitorFeatures | None = None

    def features_for(
        self, request: FeatureRequest, *, visitor_ids: Sequence[str | None], as_of: datetime
    ) -> pd.DataFrame:
        """The requested features for each of ``visitor_ids`` (a page's users, in order)."""
        if self.features is not None:
            return request.catalog.for_users(
                self.features.visitors, self.features.values, visitor_ids=visitor_ids, names=request.names
            )
        return request.catalog.features(self.grain, visitor_ids=visitor_ids, as_of=as_of, names=request.names)

    @classmethod
    def combine(cls, reads: Sequence[EventRead]) -> EventRead:
        """One read from reads of disjoint sets of visitors."""
        dropped: dict[str, int] = {}
        for r in reads:
            for k, v in r.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
        computed = [r.features for r in reads if r.features is not None]
        if computed and len(computed) != len(reads):
            raise ValueError("cannot combine computed features with daily grains")
        return cls(
            grain=DailyGrain.concat([r.grain for r in reads]),
            events_read=sum(r.events_read for r in reads),
            dropped=dropped,
            features=VisitorFeatures.concat(computed) if computed else None,
        )

    @property
    def daily(self) -> pd.DataFrame:
        """The kept rows as a frame with `models.DAILY_COLUMNS`, for reading and tests."""
        return self.grain.to_frame()


class Source(Protocol):
    """What every source has: a place, and a lifetime. Whoever opens a source closes it::

        with open_store(options.store) as store:  # open: connect, prove the credentials, learn the schema
            store.check()  # what this command needs is there, or SchemaError
            ...

    Constructing one does not touch the database. `open` does: it connects (`AuthError`, `StoreError`) and learns
    what the database has (the optional reasons column, the history table, column types), once. `check` only
    compares that with what a command needs; nothing calls it, or `open`, behind the caller's back.
    """

    kind: str

    def describe(self) -> str:
        """Where this source points, safe to log (no secrets)."""
        ...

    def open(self) -> Self:
        """Connect and learn the schema, once; returns the source itself."""
        ...

    def close(self) -> None:
        """Give back the connections (and a run lock still held). Safe to call twice."""
        ...

    # The stores subclass `Source`, so they share these two rather than each keeping a copy.
    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventSource(Source, Protocol):
    """What scoring and training both read: a list of visitors' events (training asks for no ``features``)."""

    def read_events(
        self,
        visitor_ids: Sequence[str | None],
        *,
        since: datetime,
        as_of: datetime,
        features: FeatureRequest | None = None,
    ) -> EventRead:
        """All events of ``visitor_ids`` in ``[since, as_of)``, complete, at the daily grain. Given
        ``features``, a store may return those features instead of the grain, computed where the events are.
        A None id is a user with no visitor (`UserPage.visitor_ids`): it has no events and is skipped."""
        ...


class ScoringSource(EventSource, Protocol):
    """What a scoring run (`scorer.job`, `scorer.app.run_scoring`, `explain`) asks of a store, and nothing else."""

    #: What `open` found: the optional reasons column, the converted_at column, the history table.
    has_reasons: bool
    has_converted: bool
    has_history: bool
    has_shadow: bool  # the challenger's shadow table (and, over REST, its functions)

    @property
    def max_in_flight(self) -> int:
        """How many requests this store serves at once without one waiting on another: 1 for SQLite (one
        writer) and REST (one request at a time, so a retried failure is the request it hit); the connection
        pool's size on PostgreSQL. The batch loop decides from it how much to overlap."""
        ...

    def check(self, *, scoring: bool = True) -> None:
        """Raise `SchemaError` if a table, column or function a run needs is missing (``scoring=False``: only
        what reading a user needs). Needs an open store."""
        ...

    def count_users(self, selector: Selector) -> int | None:
        """How many users the selector takes (None: the store cannot count it cheaply)."""
        ...

    def select_users(self, selector: Selector, *, after: Any | None, limit: int) -> UserPage:
        """The next key page: ``user_id > after`` in ``user_id`` order, at most ``limit`` users."""
        ...

    def find_users(self, user_ids: Sequence[str]) -> UserPage:
        """The users with these ids (given as text, as a person types them), with their current scores."""
        ...

    def read_checkpoint(self, key: str) -> Checkpoint: ...

    @property
    def session_name(self) -> str | None:
        """The name this store's database sessions carry (PostgreSQL's application_name), or None."""
        ...

    def lock_run(self, key: str) -> None:
        """Take the run lock of model ``key`` on this database until `unlock_run` or `close`, or raise
        `RunLocked` at once. A holder that dies releases it."""
        ...

    def unlock_run(self) -> None: ...

    def cancel(self) -> None:
        """Cancel what the store has in flight, from another thread (a stop request)."""
        ...

    def live_sessions(self) -> set[str] | None:
        """The session names (`session_name`) of the lead-scorer processes connected to the database now,
        to tell a live run from a dead one; None where the store cannot see sessions."""
        ...

    def score_histogram(self, *, leads_only: bool, bins: int) -> np.ndarray | None:
        """How many current scores fall in each of ``bins`` equal bins of [0, 1] (None: the store cannot tell)."""
        ...

    def write_scores(self, write: ScoreWrite) -> int:
        """Update existing rows only (never insert); returns how many rows were updated. The write's ``shadow``
        scores go to the shadow table in the same transaction, for users that exist."""
        ...

    def shadow_pairs(self, *, production: str, challenger: str, leads_only: bool) -> ShadowPairs | None:
        """Every user holding a score of model ``production`` and a shadow score of model ``challenger``
        (None: the store has no shadow table)."""
        ...


class TrainingSource(EventSource, Protocol):
    """What training (`scorer.trainer.train_model`) asks of a store: every user with its label, every event.
    Only the SQL store is one; the REST API is not made for reading everything."""

    def check(self, *, scoring: bool = True, training: bool = False) -> None:
        """Raise `SchemaError` if a table or column is missing (``training``: the label, ``converted_at``)."""
        ...

    def labelled_users(self, *, after: Any | None, limit: int, sample: int = 1) -> UserPage:
        """The next key page of every user (customers too), with ``converted_at``. ``sample`` k > 1 keeps
        only the users whose key hashes to 0 modulo k: about one in k, the same ones on every call."""
        ...

    def cohort_features(
        self, visitor_ids: Sequence[str | None], *, as_of: datetime, until: datetime, request: FeatureRequest
    ) -> CohortFeatures | None:
        """The cohort of ``as_of`` for these visitors, computed by the store: the requested features from the
        events before ``as_of`` and the visitors whose first event in the window came in ``[as_of, until)``.
        None when the store does not compute features (the caller reads the daily grain instead)."""
        ...

    def top_event_types(self, *, since: datetime, as_of: datetime, limit: int) -> list[str]:
        """The most frequent normalized event types in ``[since, as_of)``."""
        ...

    def served_scores(self, *, at: datetime, model: str, user_ids: Sequence[Any] | None = None) -> dict[Any, float]:
        """The last score ``model`` wrote for each user (of ``user_ids``, or every one) at or before ``at`` (the
        history table; empty without)."""
        ...


def split_dropped(
    *,
    visitor_id: np.ndarray,
    event_type: np.ndarray,
    day: np.ndarray,
    future: np.ndarray,
    n: np.ndarray,
    future_counted: int = 0,
) -> EventRead:
    """From aggregated rows as object arrays (visitor id, event type, UTC day number or None, at or
    after ``as_of``, count): drop and count events with no type, no time, or a time at/after ``as_of``;
    keep the rest at the daily grain. ``future_counted``: events at or after ``as_of`` (with a type) that
    the store counted without reading them, dropped as ``future`` with the rest.

    Types are normalized here, once for every store, by `models.normalize_event_type` (all Unicode
    whitespace trimmed, lower-cased): a database's own trim()/lower() only pre-aggregates, and differs
    between engines (SQLite lowers ASCII only; trim() takes spaces, not tabs or no-break spaces).
    """
    if not len(n):
        if not future_counted:
            return EventRead()
        return EventRead(events_read=future_counted, dropped={"null_type": 0, "null_time": 0, "future": future_counted})
    counts = np.asarray(n, dtype=np.int64)
    codes, uniques = pd.factorize(np.asarray(event_type, dtype=object), use_na_sentinel=True)
    normal = np.array([normalize_event_type(t) for t in uniques] + [None], dtype=object)
    event_type = normal[codes]  # code -1 (a NULL type) picks the trailing None
    no_type = (event_type == None) | (event_type == "")  # noqa: E711 - elementwise on an object array
    late = (future == True) & ~no_type  # noqa: E712 - at or after as_of, +infinity included
    no_time = (day == None) & ~no_type & ~late  # noqa: E711 - NULL, or a time with no day
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
        "future": int(counts[late].sum()) + future_counted,
    }
    return EventRead(grain=grain, events_read=int(counts.sum()) + future_counted, dropped=dropped)


def split_dropped_frame(frame: pd.DataFrame, *, future_counted: int = 0) -> EventRead:
    """`split_dropped` for a frame (visitor_id, event_type, day as a date or ISO string, future, n)."""
    return split_dropped(
        visitor_id=frame["visitor_id"].to_numpy(dtype=object),
        event_type=frame["event_type"].to_numpy(dtype=object, na_value=None),
        day=day_numbers(frame["day"].to_numpy()),
        future=frame["future"].fillna(False).to_numpy(dtype=object),
        n=frame["n"].to_numpy(),
        future_counted=future_counted,
    )
