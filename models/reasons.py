"""Why a lead scored the way it did: each feature's share of the log-odds, in words a salesperson reads.

For a pipeline whose last step is linear (ours: log1p → StandardScaler → LogisticRegression) the
log-odds are ``intercept + sum(coef_j * z_j)`` where ``z`` is what that last step sees, so each term is
one feature's exact contribution. No scikit-learn import here: ``import models`` stays light.

>>> from models import fit_and_evaluate
>>> rng = np.random.default_rng(0)
>>> features = pd.DataFrame({"events_7d": rng.poisson(2.0, 500), "evt_pricing_view_7d": rng.poisson(0.5, 500),
...                          "days_since_last_event": rng.integers(0, 180, 500)}).astype(float)
>>> labels = (rng.random(500) < 1 / (1 + np.exp(3 - features["events_7d"] - features["evt_pricing_view_7d"])))
>>> result = fit_and_evaluate(features, labels.astype(int))
>>> top_reasons(result.pipeline, features.iloc[:1])
[[Reason(text='no pricing views in the last 7 days', effect=-0.427),
  Reason(text='2 events in the last 7 days', effect=0.28),
  Reason(text='no activity for 159 days', effect=-0.065)]]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from models._wording import last, num
from models.catalog import FeatureCatalog

__all__ = [
    "MIN_EFFECT",
    "Reason",
    "ReasonTable",
    "contributions",
    "describe",
    "gives_reasons",
    "reason_table",
    "score_with_effects",
    "top_reasons",
]

#: Contributions to the log-odds smaller than this (in absolute value) are not worth naming.
MIN_EFFECT = 0.05

_DEFAULT_CATALOG = FeatureCatalog()
_WINDOW_SUFFIX_RE = re.compile(r"_(\d+)d$")


@dataclass(frozen=True, kw_only=True)
class Reason:
    """One feature behind a score: what the lead did, and how much it moved the log-odds (signed)."""

    text: str  # e.g. "8 pricing views in the last 7 days"
    effect: float  # the feature's contribution to the log-odds, rounded to 3 decimals


def contributions(pipeline: Any, features: pd.DataFrame) -> np.ndarray | None:
    """(n_rows, n_columns) contribution of each feature to the log-odds: the final linear step's ``coef_``
    times the value the final step sees (for our pipeline: coefficient x scaled log1p value).

    Adding the final step's ``intercept_`` to a row's sum gives the pipeline's ``decision_function``.
    None when the model has no such decomposition: a final step without a 1-row ``coef_`` (a tree, a
    multi-class model), steps before it that change the number of columns, or no steps nor ``coef_`` at all.

    >>> from models import make_pipeline
    >>> features = pd.DataFrame({"events_7d": [0.0, 1.0, 5.0, 9.0], "days_since_last_event": [90.0, 30.0, 20.0, 10.0]})
    >>> contributions(make_pipeline().fit(features, [0, 0, 1, 1]), features).shape  # 4 users, 2 features
    (4, 2)
    """
    parts = _linear(pipeline)
    if parts is None:
        return None
    before, _final, coef = parts
    return _effects(_transform(before, features), coef, features.shape[1])


def score_with_effects(pipeline: Any, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """The positive class's probability and `contributions`, from ONE pass through the steps before the
    last: the scores are what ``pipeline.predict_proba(features)[:, 1]`` gives, to the bit (the same
    transforms, then the same last step), so the job pays scikit-learn's input checks once per batch, not
    twice. ``effects`` is None when `contributions` would be.
    """
    parts = _linear(pipeline)
    if parts is None:
        return np.asarray(pipeline.predict_proba(features))[:, 1], None
    before, final, coef = parts
    seen = _transform(before, features)
    return np.asarray(final.predict_proba(seen))[:, 1], _effects(seen, coef, features.shape[1])


def _linear(pipeline: Any) -> tuple[list[Any], Any, np.ndarray] | None:
    """(steps before the last, the last, its 1-D ``coef_``), or None when the last step is not one linear
    log-odds (no ``coef_``, or a multi-class one)."""
    steps = getattr(pipeline, "steps", None)
    if isinstance(steps, list) and steps:
        before = [step for _, step in steps[:-1] if step is not None and step != "passthrough"]
        final = steps[-1][1]
    else:
        before, final = [], pipeline
    coef = getattr(final, "coef_", None)
    if coef is None:
        return None
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim == 2 and coef.shape[0] == 1:
        coef = coef[0]
    if coef.ndim != 1:
        return None
    return before, final, coef


def _transform(before: list[Any], features: Any) -> Any:
    seen = features
    for step in before:
        seen = step.transform(seen)
    return seen


def _effects(seen: Any, coef: np.ndarray, n_columns: int) -> np.ndarray | None:
    if hasattr(seen, "toarray"):  # a sparse matrix
        seen = seen.toarray()
    z = np.asarray(seen, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != n_columns or coef.shape[0] != z.shape[1]:
        return None  # steps that change the number of columns: no per-feature split
    effects: np.ndarray = z * coef  # numpy types an unparameterized product as Any
    return effects


def gives_reasons(pipeline: Any, names: list[str]) -> bool:
    """Whether ``pipeline`` breaks its score down into per-feature contributions (one zero row is enough)."""
    return contributions(pipeline, pd.DataFrame(np.zeros((1, len(names))), columns=names)) is not None


def top_reasons(
    pipeline: Any,
    features: pd.DataFrame,
    *,
    top: int = 3,
    catalog: FeatureCatalog | None = None,
    effects: np.ndarray | None = None,
) -> list[list[Reason]] | None:
    """For each row, up to ``top`` reasons, largest ``|effect|`` first (ties broken by feature name, so
    the order never depends on column order), skipping features whose ``|effect|`` < `MIN_EFFECT`.
    None when `contributions` is None. ``effects``: `contributions` already at hand (`score_with_effects`).

    >>> from models import make_pipeline
    >>> features = pd.DataFrame({"events_7d": [0.0, 1.0, 5.0, 9.0], "days_since_last_event": [90.0, 30.0, 20.0, 10.0]})
    >>> top_reasons(make_pipeline().fit(features, [0, 0, 1, 1]), features.iloc[3:], top=2)
    [[Reason(text='9 events in the last 7 days', effect=0.196), Reason(text='no activity for 10 days', effect=0.166)]]
    """
    table = reason_table(pipeline, features, top=top, catalog=catalog, effects=effects)
    return None if table is None else table.lists()


@dataclass(frozen=True, kw_only=True)
class ReasonTable:
    """A batch's reasons: each distinct Reason once (most leads share theirs with others: "no activity for 41
    days"), and for each lead the places of its own in ``reasons``, strongest first, padded with -1. Whatever
    is made of a Reason (its JSON) is then made once per batch."""

    reasons: list[Reason]
    codes: np.ndarray  # (leads, top) int

    def lists(self) -> list[list[Reason]]:
        """One list per lead."""
        every = self.reasons
        return [[every[c] for c in row if c >= 0] for row in self.codes.tolist()]


def reason_table(
    pipeline: Any,
    features: pd.DataFrame,
    *,
    top: int = 3,
    catalog: FeatureCatalog | None = None,
    effects: np.ndarray | None = None,
) -> ReasonTable | None:
    """`top_reasons`, as a `ReasonTable`; None when `contributions` is None."""
    if effects is None:
        effects = contributions(pipeline, features)
    if effects is None:
        return None
    names = [str(c) for c in features.columns]
    columns, values, rounded = _pick(
        effects, features.to_numpy(dtype=np.float64), names, top=top, catalog=catalog or _DEFAULT_CATALOG
    )
    used = columns >= 0
    # Distinct (column, value, effect) by their bytes, so -0.0 and 0.0, which print differently, stay apart.
    keys = np.ascontiguousarray(np.stack([columns[used].astype(np.float64), values[used], rounded[used]], axis=1))
    _, first, inverse = np.unique(
        keys.view(np.dtype((np.void, keys.itemsize * 3))).ravel(), return_index=True, return_inverse=True
    )
    phrases = [_phrase(catalog or _DEFAULT_CATALOG, name) for name in names]
    reasons = [Reason(text=phrases[int(col)](value), effect=effect) for col, value, effect in keys[first].tolist()]
    codes = np.full(columns.shape, -1, dtype=np.intp)
    codes[used] = inverse.ravel()
    return ReasonTable(reasons=reasons, codes=codes)


def _pick(
    effects: np.ndarray, values: np.ndarray, names: list[str], *, top: int, catalog: FeatureCatalog
) -> tuple[np.ndarray, ...]:
    """Up to ``top`` features per row, largest ``|effect|`` first (ties in name order), at least
    `MIN_EFFECT`, one per behaviour (`_group`): (columns, their values, their effects rounded to 3 places),
    each ``(n_rows, k)``, a row's unused places at column -1. A per-row walk written as array operations: at
    a million leads the Python loop over every candidate was a fifth of the job's own time."""
    n_rows, n_cols = effects.shape
    k = max(0, min(top, n_cols))
    if k == 0 or n_rows == 0:
        return np.full((n_rows, k), -1, dtype=np.intp), np.zeros((n_rows, k)), np.zeros((n_rows, k))
    # Columns in name order, then a stable sort on -|effect|: equal effects keep name order.
    by_name = np.array(sorted(range(n_cols), key=names.__getitem__), dtype=np.intp)
    # A few more candidates than reasons: one behaviour over several windows ("4 demo requests in the last
    # 90 days", "… 30 days") is one reason, its strongest window, so later candidates fill the gaps.
    candidates = min(n_cols, k * 4)
    chosen = by_name[np.argsort(-np.abs(effects[:, by_name]), axis=1, kind="stable")[:, :candidates]]
    rows = np.arange(n_rows)[:, None]
    picked = effects[rows, chosen]
    # Sorted by |effect|, so the candidates worth naming are a prefix of each row, and a candidate repeats
    # a behaviour exactly when an earlier candidate of that prefix has its group.
    strong = np.abs(picked) >= MIN_EFFECT
    groups = _group_ids(catalog, tuple(names))[chosen]
    earlier = np.tril(np.ones((candidates, candidates), dtype=bool), k=-1)
    fresh = strong & ~((groups[:, :, None] == groups[:, None, :]) & earlier).any(axis=2)
    place = np.cumsum(fresh, axis=1) - 1
    keep = fresh & (place < k)
    r, c = np.nonzero(keep)
    columns = np.full((n_rows, k), -1, dtype=np.intp)
    out_values = np.zeros((n_rows, k))
    out_effects = np.zeros((n_rows, k))
    columns[r, place[r, c]] = chosen[r, c]
    out_values[r, place[r, c]] = values[r, chosen[r, c]]
    out_effects[r, place[r, c]] = np.round(picked[r, c], 3)
    return columns, out_values, out_effects


@lru_cache(maxsize=64)
def _group_ids(catalog: FeatureCatalog, names: tuple[str, ...]) -> np.ndarray:
    """Each column's behaviour (`_group`) as a small integer."""
    ids: dict[object, int] = {}
    return np.array([ids.setdefault(_group(catalog, name), len(ids)) for name in names], dtype=np.intp)


def _group(catalog: FeatureCatalog, name: str) -> object:
    """Which behaviour a feature measures, whatever its window: ``evt_demo_request_30d`` → its family and
    ``demo_request``; a name outside the catalog, by its name without a ``_<n>d`` suffix."""
    col = catalog.parse(name)
    return (col.feature.name, col.slug) if col is not None else _WINDOW_SUFFIX_RE.sub("", name)


def describe(name: str, value: float, *, catalog: FeatureCatalog | None = None) -> str:
    """A catalog feature and its value in words, never the raw feature name.

    >>> describe("evt_pricing_view_7d", 8)
    '8 pricing views in the last 7 days'
    >>> describe("days_since_last_event", 181)
    'no activity in the last 180 days'
    """
    return _phrase(catalog or _DEFAULT_CATALOG, name)(float(value))


@lru_cache(maxsize=4096)
def _phrase(catalog: FeatureCatalog, name: str) -> Callable[[float], str]:
    """The function that puts a value of feature ``name`` in words (its definition's phrase, found once per
    name; `models.features.FEATURES`)."""
    col = catalog.parse(name)
    return col.words() if col is not None else _fallback(name)


def _fallback(name: str) -> Callable[[float], str]:
    # A name outside the catalog's patterns: its words, and the window spelled out when it has one.
    m = _WINDOW_SUFFIX_RE.search(name)
    stem = name[: m.start()] if m else name
    words = " ".join(part for part in re.split(r"[_\W]+", stem) if part) or "value"
    label = f"{words} {last(int(m[1]))}" if m else words
    return lambda v: f"{label}: {num(v)}"
