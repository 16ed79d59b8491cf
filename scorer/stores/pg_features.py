"""Every feature a model needs, computed by PostgreSQL: the SQL store's batch read, and the benchmark's floor.

The statement is generated from the model's feature names and the catalog's definitions, windows and
lookback (`models.features.FEATURES` is the one definition: each feature's `models.features.Measure` has
its SQL form here and its numpy form in `models.FeatureCatalog`; `tests/test_sql_features.py` checks the SQL against
`FeatureCatalog.features` on messy data, `tests/test_benchmark_smoke.py` the floor's):

- one pass over the events (``created_at`` from the start of the oldest feature day, before ``as_of``), each
  row's UTC day turned into its age in days (age 0 is the UTC day of ``as_of - 1µs``);
- event types normalized like the job's `models.normalize_event_type` (Python's ``str.strip()``, which
  takes every Unicode whitespace character, then ``lower()``): ``lower(btrim(event_type, <those
  characters>))``; blank and NULL types dropped; the slug of `models.slugify` by ``regexp_replace``. Only the
  distinct stored spellings are normalized, not every row;
- ``GROUP BY visitor_id`` with ``FILTER`` aggregates: events per window, distinct days (a bit per day, OR-ed
  into 64-bit words and counted with ``bit_count``, which a hash aggregate can do, unlike ``count(DISTINCT
  …)``), distinct types, the newest and oldest age, events per (type slug, window).

Two shapes: ``batch=True`` (the job: `SqlStore.read_events` given a `FeatureRequest`) reads the events of a
bound list of visitors (``%(ids)s``, an array literal) exactly as the store's raw event read does, and returns
one row per visitor with events, with the dropped rows counted (`DROPPED`); ``batch=False`` (the benchmark's
floor) joins every user.

>>> sql = feature_sql(FeatureCatalog(), ["events_7d", "days_since_last_event"], as_of=datetime.now(UTC), batch=True)
>>> sql.startswith("WITH rows AS MATERIALIZED") and "%(ids)s" in sql
True
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from lead_errors import FeatureDefinitionError
from models import FeatureCatalog
from models.features import Column, Measure
from scorer.contract import Names, qualified, quote_ident

__all__ = [
    "DROPPED",
    "GUARD",
    "WHITESPACE",
    "WHITESPACE_SQL",
    "check_packed",
    "feature_sql",
    "fits_packed",
    "normalized_type_sql",
    "unpack",
]


#: Every character Python's ``str.strip()`` removes (``str.isspace``; `tests/test_sql_features.py` checks the
#: list against this Python's), as a PostgreSQL escape string literal. Listed, not computed: a scan of every
#: code point took 0.1 s of each run's start.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
WHITESPACE_SQL = "E'" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "'"


def normalized_type_sql(column: str) -> str:
    """``models.normalize_event_type`` in SQL (NULL stays NULL; blank becomes '')."""
    return f"lower(btrim({column}, {WHITESPACE_SQL}))"


def _slug_sql(t: str) -> str:
    """``models.slugify`` of a normalized type ``t``: runs of anything but [a-z0-9] become one '_', trimmed."""
    slug = f"btrim(regexp_replace({t}, '[^a-z0-9]+', '_', 'g'), '_')"
    return f"coalesce(nullif({slug}, ''), 'blank')"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _low_bits(n: int) -> str:
    return "-1::int8" if n >= 64 else f"{(1 << n) - 1}::int8"


TYPE_WORDS = 1  # distinct types counted by bits for the first 64 normalized types; beyond, by arrays
#: A packed counter's width: three to a float8 word (51 of its 53 exact bits). float8, not int8: sum(int8)
#: keeps a 128-bit state allocated per group, sum(float8) a plain number, and a batch's aggregate spilled to
#: disk with the former.
FIELD_BITS = 17
PER_WORD = 3
#: The extra last column: each visitor's events in the lookback. Every packed count is at most this, so the
#: counts are exact while it stays below 2**FIELD_BITS, 131,072 events in the lookback (`fits_packed`); a
#: busier visitor's features are computed from its daily grain instead (`SqlStore.read_events`), the rest of
#: its batch's stay packed.
GUARD = "_lookback_events"
#: A batch read's counts of the rows it read and dropped (`stores.base.split_dropped`'s names).
DROPPED = ("null_type", "null_time", "future")
READ = "_events_read"


def _packed(fields: Sequence[int], windows: Sequence[int]) -> list[tuple[str, list[tuple[int, int]]]]:
    """Counters for ``fields`` (windows, in days), three to a word: (the word's per-bucket increments as a
    SQL array, [(field, bit offset)]). A row in bucket b (the first window its age is under) counts in
    every field whose window is at least ``windows[b]``."""
    out = []
    for start in range(0, len(fields), PER_WORD):
        chunk = fields[start : start + PER_WORD]
        steps = []
        for b in range(len(windows) + 1):  # the last bucket: ages past every window (only days_since sees them)
            inc = sum(1 << (FIELD_BITS * k) for k, f in enumerate(chunk) if b < len(windows) and windows[b] <= f)
            steps.append(f"{inc}")
        out.append((f"(ARRAY[{', '.join(steps)}]::float8[])", [(f, FIELD_BITS * k) for k, f in enumerate(chunk)]))
    return out


def fits_packed(lookback_events: Any) -> bool:
    """Whether every visitor's events in the lookback fit a packed counter (so every count is exact)."""
    return int(max(lookback_events, default=0)) < 1 << FIELD_BITS


def check_packed(lookback_events: Any) -> None:
    """Raise if a visitor has so many events in the lookback that a packed counter could have overflowed."""
    if not fits_packed(lookback_events):
        most = int(max(lookback_events))
        raise OverflowError(f"a visitor has {most:,} events in the lookback: more than a packed counter holds")


def unpack(rows: Sequence[tuple[str, bytes]], width: int) -> tuple[list[str], Any]:
    """A ``batch`` statement's rows as (visitor ids, a ``(rows, width)`` float64 array)."""
    values = np.frombuffer(b"".join([r[1] for r in rows]), dtype=">f8").astype(np.float64)
    return [r[0] for r in rows], values.reshape(len(rows), width)


def feature_sql(
    catalog: FeatureCatalog,
    names: Sequence[str],
    *,
    as_of: datetime,
    table_names: Names | None = None,
    batch: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """One SELECT returning the visitor id (``batch``) or ``user_id`` (every user, by user id), then ``names``
    (in that order), then `GUARD`, then (``batch``) the counts of `DROPPED` and of every row read. With
    ``batch`` the values after the visitor id come as one bytea of big-endian float8s (`unpack`).

    ``until`` (``batch`` only) reads no event at or after it, so ``future`` counts the typed events in
    ``[as_of, until)``: a cohort's "first event came after its day" (`SqlStore.cohort_features`).

    Counts come back as integers, ages as integers; both are exact in float64, so the features equal
    `FeatureCatalog.features`'s for the same events (check `GUARD` with `check_packed`).
    """
    catalog.check(names)
    n = table_names or Names()
    users = qualified(n.schema, n.users)
    events = qualified(n.schema, n.events)
    as_of = as_of.astimezone(UTC)
    day0 = (as_of - timedelta(microseconds=1)).date()  # age 0
    lookback = catalog.lookback_days
    oldest = day0 - timedelta(days=lookback)  # events on older days move no feature
    start = datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC)
    never = lookback + 1
    # Every window is read off the catalog's definitions (`models.features.FEATURES`), not off ``names``, so
    # one model's statement differs from another's only in its per-type counts.
    counted = catalog.windows_of(Measure.COUNT)
    active = catalog.windows_of(Measure.ACTIVE_DAYS)
    distinct = catalog.windows_of(Measure.DISTINCT_TYPES)
    columns = [catalog.column(name) for name in names]
    # Buckets: a row's bucket is the first of these windows its age is under.
    per_type_windows = {c.window for c in columns if c.slug is not None and c.window is not None}
    all_windows = tuple(sorted({*counted, *distinct, *per_type_windows, lookback}))
    vid, etype, created = quote_ident(n.event_visitor_id), quote_ident(n.event_type), quote_ident(n.created_at)
    at_start, at_end = f"{_lit(start.isoformat())}::timestamptz", f"{_lit(as_of.isoformat())}::timestamptz"

    if batch:
        # What `SqlStore.read_events` reads (from `FeatureCatalog.since`, and rows with no time, which are
        # counted as dropped), read once: the spellings and the rows come from the same snapshot. The ids
        # are one array literal cast once (an InitPlan), as `sql._pg_array` binds them.
        in_read = f"ev.{created} >= {_lit((since or catalog.since(as_of)).astimezone(UTC).isoformat())}::timestamptz"
        if until is not None:
            in_read += f" AND ev.{created} < {_lit(until.astimezone(UTC).isoformat())}::timestamptz"
        source = (
            f"SELECT ev.{vid} AS v, ev.{etype} AS raw, ev.{created} AS c FROM {events} AS ev "
            f"WHERE ev.{vid} = ANY((SELECT CAST(%(ids)s AS text[]))::text[]) AND ({in_read} OR ev.{created} IS NULL)"
        )
        rows = "rows"
        spellings = f"SELECT DISTINCT r.raw FROM {rows} AS r"
    else:
        rows = events
        in_reach = f"ev.{created} >= {at_start} AND ev.{created} < {at_end} AND ev.{vid} IS NOT NULL"
        spellings = f"SELECT DISTINCT ev.{etype} AS raw FROM {events} AS ev WHERE {in_reach}"

    # The distinct stored spellings are few: normalize, number and slug those, not every row. NULL and blank
    # types get no code. OFFSET 0 keeps the normalization above the DISTINCT (pushed into the scan, it ran
    # for every row: half of a batch's time).
    slugs = catalog.type_slugs(names)
    slot = "NULL::int"
    if slugs:
        slot = f"CASE {_slug_sql('x.t')} " + " ".join(f"WHEN {_lit(s)} THEN {i}" for i, s in enumerate(slugs)) + " END"
    types = (
        f'SELECT x.raw, (dense_rank() OVER (ORDER BY x.t COLLATE "C") - 1)::int AS code, {slot} AS slot '
        f"FROM (SELECT d.raw, {normalized_type_sql('d.raw')} AS t FROM ({spellings}) AS d OFFSET 0) AS x "
        "WHERE x.t <> ''"
    )
    # Per event: visitor, age in days, type number and slot, and its bucket: the first window its age is under.
    whens = " ".join(f"WHEN a.age < {w} THEN {b}" for b, w in enumerate(all_windows))
    if batch:
        # Every row read stays (to be counted); only a typed event in the feature days has an age, so the
        # aggregates below (which skip NULL) see exactly the rows the catalog keeps.
        age = (
            f"CASE WHEN ty.code IS NOT NULL AND r.c >= {at_start} AND r.c < {at_end} "
            f"THEN {_lit(day0.isoformat())}::date - (r.c AT TIME ZONE 'UTC')::date END"
        )
        per_row = (
            f"SELECT a.*, CASE WHEN a.age IS NULL THEN NULL {whens} ELSE {len(all_windows)} END AS bucket FROM ("
            f"SELECT r.v AS visitor_id, {age} AS age, ty.code, ty.slot, r.c FROM {rows} AS r "
            f"LEFT JOIN types AS ty ON ty.raw = r.raw OFFSET 0) AS a"
        )
    else:
        age = f"{_lit(day0.isoformat())}::date - (ev.{created} AT TIME ZONE 'UTC')::date"
        per_row = (
            f"SELECT a.visitor_id, a.age, a.code, a.slot, CASE {whens} ELSE {len(all_windows)} END AS bucket FROM ("
            f"SELECT ev.{vid} AS visitor_id, {age} AS age, ty.code, ty.slot "
            f"FROM {events} AS ev JOIN types AS ty ON ty.raw = ev.{etype} WHERE {in_reach} OFFSET 0) AS a OFFSET 0"
        )

    aggs: dict[str, str] = {}
    # Counts per window, packed: a row adds a constant per bucket to one word, instead of one FILTER per window.
    unpack: dict[tuple[str | None, int | None], str] = {}  # (type slug or None, window): a COUNT
    for k, (inc, fields) in enumerate(_packed(counted, all_windows)):
        aggs[f"_events{k}"] = f"sum({inc}[e.bucket + 1])"
        for w, shift in fields:
            unpack[None, w] = f"((coalesce(f._events{k}, 0)::int8 >> {shift}) & {(1 << FIELD_BITS) - 1})"
    for i, s in enumerate(slugs):
        per_type = sorted({c.window for c in columns if c.slug == s and c.window is not None})
        for k, (inc, fields) in enumerate(_packed(per_type, all_windows)):
            aggs[f"_slot{i}_{k}"] = f"sum({inc}[e.bucket + 1]) FILTER (WHERE e.slot = {i})"
            for w, shift in fields:
                unpack[s, w] = f"((coalesce(f._slot{i}_{k}, 0)::int8 >> {shift}) & {(1 << FIELD_BITS) - 1})"
    # Distinct days and distinct types: one bit each in 64-bit words, OR-ed (count(DISTINCT …) would need
    # sorted input per aggregate). Days: as many words as the largest window needs.
    day_words = -(-max(active, default=0) // 64)
    for c in range(day_words):
        lo, hi = 64 * c, 64 * (c + 1)
        aggs[f"_days{c}"] = f"bit_or(1::int8 << (e.age - {lo})) FILTER (WHERE e.age >= {lo} AND e.age < {hi})"
    for w in distinct:
        b = all_windows.index(w)
        for c in range(TYPE_WORDS):
            lo, hi = 64 * c, 64 * (c + 1)
            within = f"e.bucket <= {b} AND e.code >= {lo} AND e.code < {hi}"
            aggs[f"_types{w}_{c}"] = f"bit_or(1::int8 << (e.code - {lo})) FILTER (WHERE {within})"
        # Types beyond the bits (more than 64 spellings after normalization): listed, counted distinct below.
        aggs[f"_types{w}_more"] = f"array_agg(e.code) FILTER (WHERE e.bucket <= {b} AND e.code >= {64 * TYPE_WORDS})"
    for f, _ in catalog.families:
        if f.measure in (Measure.NEWEST_AGE, Measure.OLDEST_AGE):
            aggs[f.name] = "min(e.age)" if f.measure is Measure.NEWEST_AGE else "max(e.age)"
    aggs[GUARD] = "count(e.age)"
    if batch:
        # `stores.base.split_dropped`'s counts: no type first, then a time at or after as_of, then no time.
        aggs["null_type"] = "count(*) FILTER (WHERE e.code IS NULL)"
        aggs["future"] = f"count(*) FILTER (WHERE e.code IS NOT NULL AND e.c >= {at_end})"
        aggs["null_time"] = "count(*) FILTER (WHERE e.code IS NOT NULL AND e.c IS NULL)"
        aggs[READ] = "count(*)"
    grouped = (
        'SELECT e.visitor_id COLLATE "C" AS visitor_id, '
        + ", ".join(f"{expr} AS {quote_ident(k)}" for k, expr in aggs.items())
        + " FROM per_row AS e GROUP BY 1"
    )

    def bits(word: str, keep: int = 64) -> str:
        return f"bit_count((coalesce(f.{word}, 0) & {_low_bits(keep)})::bit(64))"

    def column(col: Column) -> str:
        """Each `Measure`'s SQL form, from the aggregates above."""
        measure, w = col.feature.measure, col.window or 0
        if measure is Measure.COUNT:
            return unpack[col.slug, w]
        if measure is Measure.ACTIVE_DAYS:
            return " + ".join(bits(f"_days{c}", w - 64 * c) for c in range(day_words) if 64 * c < w)
        if measure is Measure.DISTINCT_TYPES:
            more = f"f._types{w}_more"
            beyond = f"CASE WHEN {more} IS NULL THEN 0 ELSE (SELECT count(DISTINCT m) FROM unnest({more}) AS m) END"
            return " + ".join([*(bits(f"_types{w}_{c}") for c in range(TYPE_WORDS)), beyond])
        if measure in (Measure.NEWEST_AGE, Measure.OLDEST_AGE):
            return f"coalesce(f.{quote_ident(col.feature.name)}, {never})"
        # Unreachable while `FeatureCatalog.check` holds families to `Measure`, every member of which has a
        # form above (tests/test_feature_definitions.py checks each).
        raise FeatureDefinitionError(f"the feature {col.feature.name!r} has no SQL form for {measure!r}")

    if batch:
        # One bytea of big-endian float8s per visitor rather than ~50 columns: the job reads it with one
        # numpy call, where psycopg made a Python number of every value (a third of a batch's read on the
        # client). Every value is non-NULL (counts, coalesced ages), so each takes exactly 8 bytes.
        values = [*(column(col) for col in columns), *(f"f.{quote_ident(k)}" for k in (GUARD, *DROPPED, READ))]
        packed = " || ".join(f"float8send(({v})::float8)" for v in values)
        return (
            f"WITH {rows} AS MATERIALIZED ({source}), types AS MATERIALIZED ({types}), per_row AS ({per_row}) "
            f"SELECT f.visitor_id, {packed} AS packed FROM ({grouped}) AS f"
        )
    select = ", ".join(f"{column(col)} AS {quote_ident(name)}" for col, name in zip(columns, names, strict=True))
    return (
        f"WITH types AS MATERIALIZED ({types}), per_row AS ({per_row}) "
        f"SELECT u.{quote_ident(n.user_id)}, {select}, coalesce(f.{GUARD}, 0) AS {GUARD} FROM {users} AS u "
        f"LEFT JOIN ({grouped}) AS f ON f.visitor_id = u.{quote_ident(n.visitor_id)}"
    )
