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
daily grain (`point_in_time_pages`). One day on PostgreSQL is computed in the database instead, by the
statement a scoring run's batch uses (`TrainingSource.cohort_features`; tested equal to the daily grain's).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from models import FeatureCatalog, day_number
from registry import LoadedModel
from scorer.stores import TrainingSource
from scorer.stores.base import FeatureRequest

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
    sample: int = 1,
    in_store: bool = True,
) -> Iterator[CohortPage]:
    """The cohorts of ``days`` (UTC midnights) with horizon ``horizon_days``, page by page of users (for each
    page, one `CohortPage` per day, in the order of ``days``).

    One day, from a store that computes features itself (PostgreSQL: `TrainingSource.cohort_features`), is
    computed there, as a scoring run's batch is (``in_store=False`` turns that off: the tests compare both).
    Otherwise each page's events are read once at the daily grain, for all days, and the catalog computes
    every day's features from it.

    ``sample`` k > 1 keeps about one user in k, by a hash of the key (`TrainingSource.labelled_users`): what
    the daily run's check and auto-promotion use to bound their cost.

    >>> for page in point_in_time_pages(store, days=[date(2026, 9, 1)], horizon_days=30, names=names,
    ...                                 catalog=FeatureCatalog()):  # doctest: +SKIP
    ...     scores = model.predict_scores(page.features)
    """
    cutoffs = sorted({midnight(d) for d in days})
    if not cutoffs:
        return
    order = [cutoffs.index(midnight(d)) for d in days]
    horizon = timedelta(days=horizon_days)
    request = FeatureRequest(catalog=catalog, names=names)
    after = None
    while True:
        page = store.labelled_users(after=after, limit=batch_size, sample=sample)
        if not len(page):
            return
        after = page.user_ids[-1]
        conv = page.converted_at if page.converted_at is not None else pd.Series([pd.NaT] * len(page))
        conv = pd.to_datetime(conv, utc=True).reset_index(drop=True)
        open_at_first = (conv.isna() | (conv >= pd.Timestamp(cutoffs[0]))).to_numpy()
        wanted = [v for v, ok in zip(page.visitor_ids, open_at_first, strict=True) if ok and v is not None]
        visitors = np.asarray(page.visitor_ids, dtype=object)
        computed = None
        if in_store and len(cutoffs) == 1:
            computed = store.cohort_features(wanted, as_of=cutoffs[0], until=cutoffs[0] + horizon, request=request)
        if computed is not None:
            later: Collection[str] = computed.later
            keep = _open_leads(conv, visitors, cutoff=cutoffs[0], later=later)
            features = catalog.for_users(
                computed.features.visitors, computed.features.values, visitor_ids=visitors[keep].tolist(), names=names
            )
            yield _cohort_page(page.user_ids, conv, keep, cutoff=cutoffs[0], horizon=horizon, features=features)
            continue
        # One read for every day: the earliest day's lookback through the latest day's horizon.
        grain = store.read_events(wanted, since=catalog.since(cutoffs[0]), as_of=cutoffs[-1] + horizon).grain
        per_day = []
        for cutoff in cutoffs:
            # What one read of [T - reach, T + H) would have held, and which of it came before T.
            today = day_number(cutoff.date())
            first, last = today - catalog.reach.days, day_number((cutoff + horizon).date())
            in_window = (grain.day >= first) & (grain.day < last)
            active = np.zeros(len(grain.visitors), dtype=bool)
            active[grain.visitor[in_window]] = True
            before = np.zeros(len(grain.visitors), dtype=bool)
            before[grain.visitor[in_window & (grain.day < today)]] = True
            later = {v for v, seen, old in zip(grain.visitors, active, before, strict=True) if seen and not old}
            keep = _open_leads(conv, visitors, cutoff=cutoff, later=later)
            features = catalog.features(grain, visitor_ids=visitors[keep].tolist(), as_of=cutoff, names=names)
            per_day.append(_cohort_page(page.user_ids, conv, keep, cutoff=cutoff, horizon=horizon, features=features))
        for i in order:
            yield per_day[i]


def _open_leads(conv: pd.Series, visitors: np.ndarray, *, cutoff: datetime, later: Collection[str]) -> np.ndarray:
    """The positions of a page's open leads at ``cutoff``: not converted before it, and not a visitor whose
    first event in the window came after it (``later``)."""
    eligible = (conv.isna() | (conv >= pd.Timestamp(cutoff))).to_numpy()
    keep = eligible & np.array([v is None or v not in later for v in visitors], dtype=bool)
    return np.flatnonzero(keep)


def _cohort_page(
    user_ids: Sequence[Any],
    conv: pd.Series,
    keep: np.ndarray,
    *,
    cutoff: datetime,
    horizon: timedelta,
    features: pd.DataFrame,
) -> CohortPage:
    labels = (conv.iloc[keep] < pd.Timestamp(cutoff + horizon)).fillna(False).to_numpy(dtype=bool).astype(np.int64)
    return CohortPage(as_of=cutoff, user_ids=[user_ids[i] for i in keep], features=features, labels=labels)


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
    sample: int = 1,
) -> list[CohortScores]:
    """Each cohort of ``days`` scored by every model of ``models`` (a key, e.g. the version, → loaded model):
    features computed once per cohort and page, for the union of the models' inputs; one read of the events
    per page of users for all days (``sample``: about one user in k, see `point_in_time_pages`). One
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
        sample=sample,
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
