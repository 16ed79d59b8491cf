"""Cohorts: the open leads of a past day, labelled by what they did next, with point-in-time features. One
definition, used by training (`scorer.trainer.build_training_set`: one day, the cutoff) and by live
evaluation (`scorer.evaluation`: the days after a version's training), so the two cannot drift apart.

A *cohort* is a day ``T`` (a UTC midnight) and a horizon ``H`` (days). Its leads are the users who were open
leads at ``T``, under training's population rule:

- not converted before ``T`` (``converted_at`` NULL or at/after ``T``);
- not "not yet a lead": a user with events in ``[T - 181 days, T + H)`` but none before ``T`` in that window
  signed up later, and is left out. A user with no events in that window at all (no visitor id, or quiet)
  stays in, with the zero-activity features a scoring run would give it.

Its label is 1 when ``converted_at`` falls in ``[T, T + H)`` (converted on ``T`` itself counts: the lead was
still open at midnight; converted exactly at ``T + H`` does not). Its features are the catalog's, from events
strictly before ``T`` (`models.FeatureCatalog.features`), the same code a scoring run uses.

Several days are read in one pass: each page of users has its events read once, from the earliest day's
lookback to the latest day's horizon, and every day's eligibility, labels and features come from that one
daily grain (`point_in_time_pages`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from models import FeatureCatalog, day_number
from registry import LoadedModel
from scorer.stores import TrainingSource

__all__ = ["CohortPage", "CohortScores", "midnight", "point_in_time_pages", "score_cohorts"]


def midnight(day: date | datetime) -> datetime:
    """The UTC midnight that starts ``day`` (a date, or any time on it).

    >>> midnight(datetime(2026, 9, 1, 23, 30, tzinfo=UTC))
    datetime.datetime(2026, 9, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(day, datetime):
        day = day.astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class CohortPage:
    """One page of one cohort's leads: ids, point-in-time features (columns: the names asked for), labels."""

    as_of: datetime
    user_ids: list[Any]
    features: pd.DataFrame
    labels: np.ndarray  # int64, 1 = converted in [as_of, as_of + horizon)


def point_in_time_pages(
    store: TrainingSource,
    *,
    days: Sequence[date | datetime],
    horizon_days: int,
    names: Sequence[str],
    catalog: FeatureCatalog,
    batch_size: int = 5_000,
    page_stride: int = 1,
) -> Iterator[CohortPage]:
    """The cohorts of ``days`` (UTC midnights) with horizon ``horizon_days``, page by page of users (for each
    page, one `CohortPage` per day, in the order of ``days``). Each page's events are read once, for all days.

    ``page_stride`` k > 1 keeps every k-th key page of users only (a systematic sample over the user key, whose
    other pages' events are never read): what the daily run's check uses to bound its cost.

    >>> for page in point_in_time_pages(store, days=[date(2026, 9, 1)], horizon_days=30, names=names,
    ...                                 catalog=FeatureCatalog()):  # doctest: +SKIP
    ...     scores = model.predict_scores(page.features)
    """
    cutoffs = sorted({midnight(d) for d in days})
    if not cutoffs:
        return
    order = [cutoffs.index(midnight(d)) for d in days]
    horizon = timedelta(days=horizon_days)
    since = catalog.since(cutoffs[0])
    read_until = cutoffs[-1] + horizon
    reach_days = catalog.reach.days
    after = None
    for number in itertools.count():
        page = store.labelled_users(after=after, limit=batch_size)
        if not len(page):
            return
        after = page.user_ids[-1]
        if number % page_stride:
            continue
        conv = page.converted_at if page.converted_at is not None else pd.Series([pd.NaT] * len(page))
        conv = pd.to_datetime(conv, utc=True).reset_index(drop=True)
        # One read for every day: the earliest day's lookback through the latest day's horizon.
        open_at_first = (conv.isna() | (conv >= pd.Timestamp(cutoffs[0]))).to_numpy()
        wanted = [v for v, ok in zip(page.visitor_ids, open_at_first, strict=True) if ok and v is not None]
        grain = store.read_events(wanted, since=since, as_of=read_until).grain
        visitors = np.asarray(page.visitor_ids, dtype=object)
        per_day = []
        for cutoff in cutoffs:
            t, end = pd.Timestamp(cutoff), pd.Timestamp(cutoff + horizon)
            eligible = (conv.isna() | (conv >= t)).to_numpy()
            # What one read of [T - reach, T + H) would have held, and which of it came before T.
            today = day_number(cutoff.date())
            first, last = today - reach_days, day_number((cutoff + horizon).date())
            in_window = (grain.day >= first) & (grain.day < last)
            active = np.zeros(len(grain.visitors), dtype=bool)
            active[grain.visitor[in_window]] = True
            before = np.zeros(len(grain.visitors), dtype=bool)
            before[grain.visitor[in_window & (grain.day < today)]] = True
            later = {v for v, seen, old in zip(grain.visitors, active, before, strict=True) if seen and not old}
            keep = eligible & np.array([v is None or v not in later for v in visitors], dtype=bool)
            idx = np.flatnonzero(keep)
            features = catalog.features(grain, visitor_ids=visitors[idx].tolist(), as_of=cutoff, names=names)
            labels = (conv.iloc[idx] < end).fillna(False).to_numpy(dtype=bool).astype(np.int64)
            per_day.append(
                CohortPage(as_of=cutoff, user_ids=[page.user_ids[i] for i in idx], features=features, labels=labels)
            )
        for i in order:
            yield per_day[i]


@dataclass(kw_only=True)
class CohortScores:
    """One cohort's leads, their labels, and each version's scores on them (arrays aligned on ``user_ids``)."""

    as_of: datetime
    user_ids: list[Any] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # version → scores


def score_cohorts(
    store: TrainingSource,
    *,
    days: Sequence[date | datetime],
    horizon_days: int,
    models: Mapping[str, LoadedModel],
    catalog: FeatureCatalog,
    batch_size: int = 5_000,
    page_stride: int = 1,
) -> list[CohortScores]:
    """Each cohort of ``days`` scored by every model of ``models`` (a key, e.g. the version, → loaded model):
    features computed once per cohort and page, for the union of the models' inputs; one read of the events
    per page of users for all days (``page_stride``: every k-th page only, see `point_in_time_pages`). One
    `CohortScores` per distinct day, oldest first.

    >>> cohorts = score_cohorts(store, days=[date(2026, 9, 1), date(2026, 9, 8)], horizon_days=30,
    ...                         models={"3": champion, "4": challenger}, catalog=FeatureCatalog())  # doctest: +SKIP
    >>> cohorts[0].labels, cohorts[0].scores["3"], cohorts[0].scores["4"]  # doctest: +SKIP
    """
    names = sorted({n for m in models.values() for n in m.input_names})
    out = {midnight(d): CohortScores(as_of=midnight(d)) for d in days}
    ids: dict[datetime, list[Any]] = {d: [] for d in out}
    labels: dict[datetime, list[np.ndarray]] = {d: [] for d in out}
    scores: dict[datetime, dict[str, list[np.ndarray]]] = {d: {k: [] for k in models} for d in out}
    for page in point_in_time_pages(
        store,
        days=sorted(out),
        horizon_days=horizon_days,
        names=names,
        catalog=catalog,
        batch_size=batch_size,
        page_stride=page_stride,
    ):
        ids[page.as_of] += page.user_ids
        labels[page.as_of].append(page.labels)
        for key, model in models.items():
            got = model.predict_scores(page.features) if len(page.labels) else np.zeros(0)
            scores[page.as_of][key].append(np.asarray(got, dtype=np.float64))
    for day, cohort in out.items():
        cohort.user_ids = ids[day]
        cohort.labels = np.concatenate(labels[day]) if labels[day] else np.zeros(0, dtype=np.int64)
        cohort.scores = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in scores[day].items()}
    return [out[d] for d in sorted(out)]
