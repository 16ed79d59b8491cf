"""Scoring one page of users, the step both engines run (docs/architecture.md, step 5): features → scores →
checked → changed → reasons. The batch loop (`scorer.job`) calls it once per batch, Spark's task
(`scorer.spark._partition`) once per key range; what each does around it (reading, writing, the
challenger) is its own.

    >>> import numpy as np
    >>> from scorer.stores.base import UserPage
    >>> page = UserPage(user_ids=[1, 2], visitor_ids=["a", "b"], scores=np.array([0.3, np.nan]), models=["m", None])
    >>> which_changed(page, np.array([0.3004, 0.5]), model="m", tolerance=0.001).tolist()
    [False, True]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lead_errors import ScoreValueError
from models import FeatureCatalog
from models.reasons import reason_table, score_with_effects
from registry import LoadedModel
from scorer.stores.base import UserPage

__all__ = [
    "PageScores",
    "check_scores",
    "not_probabilities",
    "reasons_json",
    "score_page",
    "which_changed",
    "which_moved",
]


@dataclass(frozen=True, kw_only=True)
class PageScores:
    """What `score_page` gives for a page: a score per user, who must be written, and the reasons."""

    scores: np.ndarray
    #: Must be written: new, from another model, or moved by the tolerance or more (`which_changed`).
    changed: np.ndarray
    #: Of those changed, how many are new or moved (the rest only carry another model version's name).
    moved: int
    #: Whose reasons were asked for: the changed users, or everyone (``explain_all``).
    explained: np.ndarray
    #: One JSON text per explained user, in page order; None when not asked for or the model gives none.
    reasons: list[str | None] | None


def not_probabilities(scores: np.ndarray) -> np.ndarray:
    """Which scores are not finite probabilities in [0, 1] (a model that returns them is broken for those users).

    >>> not_probabilities(np.array([0.2, np.nan, 1.5])).tolist()
    [False, True, True]
    """
    return ~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)


def check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    bad = not_probabilities(scores)
    if bad.any():
        raise ScoreValueError(f"{int(bad.sum())} score(s) are not finite probabilities in [0, 1]")
    return scores


def which_changed(page: UserPage, scores: np.ndarray, *, model: str, tolerance: float) -> np.ndarray:
    """Which users' scores must be written: new, from another model, or moved by ``tolerance`` or more."""
    if page.scores is None or page.models is None:
        return np.ones(len(scores), dtype=bool)
    old = page.scores
    other_model = np.fromiter((m != model for m in page.models), dtype=bool, count=len(page))
    return np.isnan(old) | other_model | (np.abs(scores - np.nan_to_num(old)) >= tolerance)


def which_moved(page: UserPage, scores: np.ndarray, *, tolerance: float) -> np.ndarray:
    """Which users' scores are new or moved by ``tolerance`` or more, whichever model scored them last: what a
    person means by "changed", as opposed to rewritten only to record the model version that scored it."""
    if page.scores is None:
        return np.ones(len(scores), dtype=bool)
    old = page.scores
    return np.isnan(old) | (np.abs(scores - np.nan_to_num(old)) >= tolerance)


def reasons_json(
    model: LoadedModel, features: Any, catalog: FeatureCatalog, *, effects: np.ndarray | None = None
) -> list[str | None] | None:
    """Each user's top three reasons as JSON text, or None when the model gives none: what ``json.dumps``
    gives a list of ``{"reason", "effect"}``, byte for byte (tests/test_reasons.py), each distinct reason's
    made once per batch and joined. ``effects``: the contributions `score_with_effects` gave with the scores."""
    table = reason_table(model.pipeline, features[model.input_names], top=3, catalog=catalog, effects=effects)
    if table is None:
        return None
    parts = [
        f'{{"reason": {json.dumps(r.text, ensure_ascii=False)}, "effect": {json.dumps(r.effect)}}}'
        for r in table.reasons
    ]
    return ["[" + ", ".join([parts[c] for c in row if c >= 0]) + "]" for row in table.codes.tolist()]


def score_page(
    model: LoadedModel,
    features: pd.DataFrame,
    page: UserPage,
    *,
    identity: str,
    tolerance: float,
    catalog: FeatureCatalog,
    reasons: bool = False,
    explain_all: bool = False,
) -> PageScores:
    """Step 5's pure part for one page: its features → scores → checked → changed → reasons.

    ``identity``: the model's, as the store records it (a user it already scored is rewritten only when its
    score moved by ``tolerance``); a page without current scores (``page.scores`` None) is all changed.
    ``reasons``: compute the changed users' reasons (everyone's with ``explain_all``, for a score table that
    is a snapshot), from the same pass through the pipeline as the scores. Raises `ScoreValueError` when a
    score is not a probability: the caller narrows the page down to the users that fail.
    """
    effects = None
    if reasons:
        # One pass through the pipeline's transforms for the scores and their reasons.
        inputs = features[model.input_names]
        raw, effects = score_with_effects(model.pipeline, inputs)
        scores = check_scores(raw)
    else:
        scores = check_scores(model.predict_scores(features))
    changed = which_changed(page, scores, model=identity, tolerance=tolerance)
    moved = int((changed & which_moved(page, scores, tolerance=tolerance)).sum())
    explained = np.ones(len(scores), dtype=bool) if explain_all else changed
    given = None
    if effects is not None and explained.any():
        given = reasons_json(model, inputs[explained], catalog, effects=effects[explained])
    return PageScores(scores=scores, changed=changed, moved=moved, explained=explained, reasons=given)
