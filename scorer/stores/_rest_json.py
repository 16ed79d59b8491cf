"""The JSON the Supabase store sends and reads, typed where it crosses into Python.

postgrest-py types every response's ``data`` as ``list[JSON]`` and every function's arguments as
``dict[str, str]``. Neither is what the project's SQL functions (`scorer.schema`) take or give: they take JSON
arguments (arrays, numbers, booleans, nulls) and each returns one JSON value, an object of columns, a list of
pairs, a boolean or a count. The shapes are those functions' contract, so they are named here once and the
store reads them through these types instead of indexing ``Any``.

The product's own rows (users, raw events) are keyed by the configured column names (`Names`), which a
TypedDict cannot spell: `user_rows` turns users into `UserRow`, whose keys are fixed.

>>> from scorer.contract import Names
>>> user_rows([{"id": 7, "visitor_id": "v7", "lead_score": None}], Names(user_id="id"))
[{'user_id': 7, 'visitor_id': 'v7', 'lead_score': None, 'model': None}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, cast

from postgrest.types import JSON

from scorer.contract import Names

__all__ = [
    "CheckpointRow",
    "DailyEvents",
    "EventRow",
    "HistogramPairs",
    "RpcParams",
    "ShadowPairsPage",
    "StaleUsers",
    "UserRow",
    "checkpoint_row",
    "daily_events",
    "histogram_pairs",
    "rows_written",
    "shadow_pairs_page",
    "stale_users",
    "user_rows",
]

#: A function's arguments: sent as one JSON object in the POST body. (postgrest-py annotates them as
#: ``dict[str, str]``, true only of the GET form it builds a query string from, which the store never uses.)
RpcParams = dict[str, Any]

#: One row of raw events, keyed by the configured column names (visitor id, type, ``created_at`` as ISO
#: text), plus ``n`` for a run of identical events counted instead of read.
EventRow = dict[str, Any]


class UserRow(TypedDict):
    """One user as a page needs it, whatever the columns are called."""

    user_id: Any  # the product's key: an integer, text or a uuid's text, as PostgREST renders it
    visitor_id: str | None
    lead_score: float | None
    model: str | None


class StaleUsers(TypedDict):
    """What ``lead_scorer_select_stale`` returns: one key page of the `stale` rule, a column per key, in
    ``user_id`` order (an empty page has four empty lists)."""

    user_id: list[Any]
    visitor_id: list[str | None]
    lead_score: list[float | None]
    model: list[str | None]


class DailyEvents(TypedDict):
    """What ``lead_scorer_daily_events`` returns: the daily grain of a batch's events, a column per key."""

    visitor_id: list[str]
    event_type: list[str | None]
    day: list[str | None]  # an ISO date; None for an event with no (finite) time
    future: list[bool]
    n: list[int]


class CheckpointRow(TypedDict):
    """One row of the checkpoints table (`scorer.stores.base.Checkpoint`): times as ISO text."""

    complete_as_of: str | None
    partial_as_of: str | None
    partial_through: str | None


#: What ``lead_scorer_score_histogram`` returns: ``[bin, count]`` for every bin holding a score.
HistogramPairs = list[tuple[int, int]]


def user_rows(data: Sequence[JSON], names: Names) -> list[UserRow]:
    """Rows of the users table (PostgREST's objects, keyed by the configured column names) as `UserRow`s; the
    score and model columns may be absent from the select."""
    rows = cast("Sequence[Mapping[str, Any]]", data)
    return [
        UserRow(
            user_id=r[names.user_id],
            visitor_id=r[names.visitor_id],
            lead_score=r.get(names.lead_score),
            model=r.get(names.model_version),
        )
        for r in rows
    ]


# The functions' values are trusted to have their contract's shape (the project's SQL in `scorer.schema`, which
# `RestStore.check` proves is installed): the casts below name the shape, they convert nothing.


def stale_users(data: object) -> StaleUsers:
    """The stale-users function's value; None (PostgREST's empty answer) as an empty page."""
    return cast(StaleUsers, data) if data else StaleUsers(user_id=[], visitor_id=[], lead_score=[], model=[])


class ShadowPairsPage(TypedDict):
    """What ``lead_scorer_shadow_pairs`` returns: one key page of the users holding both a production score and
    the challenger's shadow score, a column per key, in ``user_id`` order."""

    user_id: list[Any]
    production: list[float]
    challenger: list[float]


def shadow_pairs_page(data: object) -> ShadowPairsPage:
    """The shadow pairs function's value; None as an empty page."""
    return cast(ShadowPairsPage, data) if data else ShadowPairsPage(user_id=[], production=[], challenger=[])


def daily_events(data: object) -> DailyEvents:
    """The daily-events function's value; None as no events."""
    empty = DailyEvents(visitor_id=[], event_type=[], day=[], future=[], n=[])
    return cast(DailyEvents, data) if data else empty


def histogram_pairs(data: object) -> HistogramPairs:
    """The histogram function's value; None as no scores."""
    return cast(HistogramPairs, data) if data else []


def checkpoint_row(data: Sequence[JSON]) -> CheckpointRow | None:
    """The checkpoint's row from a select of its three columns, or None when the key has none yet."""
    return cast(CheckpointRow, data[0]) if data else None


def rows_written(data: object) -> int:
    """The write function's value: how many users it updated (None as 0)."""
    return int(cast(int, data) or 0)
