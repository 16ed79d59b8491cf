"""Feature values in words: the phrases `models.features.FEATURES` names, one function per kind of feature.

Each takes the column's window (days, or None), its event-type slug (per-type features, else None) and the
catalog's lookback, and returns the function that puts one value in words:

>>> type_count(window=7, slug="pricing_view", lookback=180)(8.0)
'8 pricing views in the last 7 days'
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "active_days",
    "days_since_first",
    "days_since_last",
    "events",
    "kinds_of_activity",
    "last",
    "num",
    "type_count",
]

Phrase = Callable[[float], str]

# The last word of an event type that reads as something done ("signup started", "invite sent"), not as
# a countable noun: "3 invite sents" would be wrong, "invite sent 3 times" is right. Words ending in
# "ed" count too, except these nouns.
# fmt: off
_DONE_WORDS = frozenset({
    "begun", "bought", "built", "cut", "done", "given", "held", "kept", "left", "lost", "made", "met", "paid",
    "put", "read", "run", "seen", "sent", "set", "shown", "sold", "spent", "taken", "won", "written",
})
# fmt: on
_ED_NOUNS = frozenset({"bed", "embed", "feed", "need", "red", "seed", "shed", "speed"})


def events(*, window: int | None, slug: str | None, lookback: int) -> Phrase:
    """``events_7d``: "3 events in the last 7 days"."""
    w = window or lookback
    return lambda v: f"{_count(v, 'event', 'events')} {last(w)}"


def active_days(*, window: int | None, slug: str | None, lookback: int) -> Phrase:
    """``active_days_30d``: "active 4 of the last 30 days"."""
    w = window or lookback

    def phrase(v: float) -> str:
        if v == 0:
            return f"not active {last(w)}"
        return f"active {num(v)} of the last {num(w)} days" if w > 1 else f"active {last(w)}"

    return phrase


def kinds_of_activity(*, window: int | None, slug: str | None, lookback: int) -> Phrase:
    """``distinct_types_30d``: "2 kinds of activity in the last 30 days"."""
    w = window or lookback
    return lambda v: (
        f"no activity {last(w)}" if v == 0 else f"{_count(v, 'kind of activity', 'kinds of activity')} {last(w)}"
    )


def days_since_last(*, window: int | None, slug: str | None, lookback: int) -> Phrase:
    """``days_since_last_event``: "no activity for 12 days"."""
    return _age(lookback, "no activity", "active today", "last active yesterday", "no activity for {} days")


def days_since_first(*, window: int | None, slug: str | None, lookback: int) -> Phrase:
    """``days_since_first_event``: "first seen 40 days ago"."""
    return _age(lookback, "not seen", "first seen today", "first seen yesterday", "first seen {} days ago")


def _age(lookback: int, never_seen: str, today: str, yesterday: str, days: str) -> Phrase:
    never = float(lookback + 1)

    def phrase(v: float) -> str:
        if v >= never:
            return f"{never_seen} {last(lookback)}"
        return today if v == 0 else yesterday if v == 1 else days.format(num(v))

    return phrase


def type_count(*, window: int | None, slug: str | None, lookback: int) -> Phrase:
    """``evt_pricing_view_7d``: "8 pricing views in the last 7 days"; "signup started twice in …"."""
    w = window or lookback
    words = (slug or "event").split("_")
    final = words[-1]
    thing = " ".join(words)
    if not final.isalpha() or final in _DONE_WORDS or (final.endswith("ed") and final not in _ED_NOUNS):

        def done(v: float) -> str:
            if v == 0:
                return f"no {thing} {last(w)}"
            times = {1.0: "once", 2.0: "twice"}.get(v) or f"{num(v)} times"
            return f"{thing} {times} {last(w)}"

        return done
    plural = " ".join([*words[:-1], _plural(final)])
    return lambda v: f"{_count(v, thing, plural)} {last(w)}"


def _plural(word: str) -> str:
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _count(v: float, singular: str, plural: str) -> str:
    if v == 0:
        return f"no {plural}"
    return f"1 {singular}" if v == 1 else f"{num(v)} {plural}"


def last(days: int) -> str:
    """The window in words: ``in the last 7 days``, ``in the last day``."""
    return "in the last day" if days == 1 else f"in the last {num(days)} days"


def num(v: float) -> str:
    """Whole numbers without decimals, others with at most two; thousands separated: 1,204 and 2.5."""
    if not np.isfinite(v):
        return "an unknown number of"
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")
