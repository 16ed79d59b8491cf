"""Reasons per lead: exact contributions to the log-odds, and the words a salesperson reads."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from models import FeatureCatalog, Reason, contributions, describe, generate, make_pipeline, normalize_event_type
from models.reasons import MIN_EFFECT, score_with_effects, top_reasons

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def synthetic_training_set(*, users: int, seed: int, horizon_days: int = 30) -> tuple[pd.DataFrame, np.ndarray]:
    """Point-in-time features and labels from the synthetic product, the way ``lead-scorer train`` builds
    them from a database: normalized types, features from events before ``as_of`` (a UTC midnight), and
    only the open leads of that day (not converted yet, and not first seen after it)."""
    data = generate(users=users, seed=seed, now=NOW)
    catalog = FeatureCatalog()
    as_of = NOW - timedelta(days=horizon_days)
    horizon_end = pd.Timestamp(as_of + timedelta(days=horizon_days))
    events = data.events.assign(event_type=data.events["event_type"].map(normalize_event_type, na_action="ignore"))
    events = events[events["event_type"].notna() & events["created_at"].notna() & events["visitor_id"].notna()]
    events = events[(events["created_at"] >= pd.Timestamp(catalog.since(as_of))) & (events["created_at"] < horizon_end)]
    before = events[events["created_at"] < pd.Timestamp(as_of)]
    not_yet = set(events["visitor_id"]) - set(before["visitor_id"])
    daily = (
        before.assign(day=before["created_at"].dt.date)
        .groupby(["visitor_id", "event_type", "day"])
        .size()
        .rename("n")
        .reset_index()
    )
    names = catalog.feature_names(event_types=before["event_type"].value_counts().index[:12])
    converted_at = pd.to_datetime(data.users["converted_at"], utc=True)
    open_lead = (converted_at.isna() | (converted_at >= pd.Timestamp(as_of))).to_numpy()
    visitors = [v if isinstance(v, str) else None for v in data.users["visitor_id"][open_lead]]
    lead = np.array([v not in not_yet for v in visitors], dtype=bool)
    features = catalog.build(daily, visitor_ids=visitors, as_of=as_of, names=names)[lead].reset_index(drop=True)
    labels = (converted_at[open_lead] < horizon_end).to_numpy(dtype=np.int64)[lead]
    return features, labels


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, pd.DataFrame]:
    features, labels = synthetic_training_set(users=600, seed=5)
    return make_pipeline().fit(features, labels), features


def _linear(coef: list[float], columns: list[str]) -> LogisticRegression:
    """A bare linear model with chosen coefficients (fitted first, so scikit-learn accepts it)."""
    x = pd.DataFrame(np.arange(2 * len(columns), dtype=np.float64).reshape(2, -1), columns=columns)
    model = LogisticRegression().fit(x, [0, 1])
    model.coef_ = np.array([coef])
    model.intercept_ = np.array([0.0])
    return model


def test_effects_add_up_to_the_models_log_odds(fitted):
    pipeline, features = fitted
    effects = contributions(pipeline, features)
    assert effects is not None and effects.shape == features.shape
    log_odds = pipeline.decision_function(features)
    np.testing.assert_allclose(effects.sum(axis=1) + pipeline[-1].intercept_[0], log_odds, rtol=0, atol=1e-9)


def test_each_lead_gets_its_largest_effects_first_in_words(fitted):
    pipeline, features = fitted
    reasons = top_reasons(pipeline, features)
    effects = contributions(pipeline, features)
    assert reasons is not None and effects is not None and len(reasons) == len(features)
    names = list(features.columns)
    for i, mine in enumerate(reasons):
        # What a reader expects, one lead at a time: the three biggest pushes either way, named in words.
        # One reason per behaviour: its strongest window ("4 demo requests in the last 90 days" and "… 30 days"
        # are one thing to a salesperson).
        ranked = sorted(range(len(names)), key=lambda j: (-abs(effects[i, j]), names[j]))
        expected, seen = [], set()
        for j in ranked:
            behaviour = re.sub(r"_\d+d$", "", names[j])
            if abs(effects[i, j]) < MIN_EFFECT or len(expected) == 3:
                break
            if behaviour in seen:
                continue
            seen.add(behaviour)
            expected.append(Reason(text=describe(names[j], features.iat[i, j]), effect=round(float(effects[i, j]), 3)))
        assert mine == expected
        assert len(mine) <= 3
        sizes = [abs(r.effect) for r in mine]
        assert sizes == sorted(sizes, reverse=True)
    # The synthetic leads do have reasons, and both signs show up.
    all_effects = [r.effect for mine in reasons for r in mine]
    assert sum(map(len, reasons)) > len(features) and min(all_effects) < 0 < max(all_effects)


def test_reasons_never_show_a_raw_feature_name(fitted):
    pipeline, features = fitted
    reasons = top_reasons(pipeline, features, top=len(features.columns))
    assert reasons is not None
    texts = {r.text for mine in reasons for r in mine}
    assert len(texts) > 50
    for text in texts:
        assert "_" not in text, text
        assert not any(name in text for name in features.columns), text


def test_same_leads_same_reasons_in_any_row_order(fitted):
    pipeline, features = fitted
    first = top_reasons(pipeline, features)
    assert top_reasons(pipeline, features) == first
    order = np.random.default_rng(0).permutation(len(features))
    shuffled = top_reasons(pipeline, features.iloc[order].reset_index(drop=True))
    assert first is not None and shuffled == [first[i] for i in order]


def test_equal_effects_are_ordered_by_feature_name_not_column_position():
    columns = ["events_7d", "active_days_30d", "evt_pricing_view_7d"]
    model = _linear([0.5, 0.5, 0.5], columns)
    features = pd.DataFrame([[2.0, 2.0, 2.0]], columns=columns)
    assert top_reasons(model, features) == [
        [
            Reason(text="active 2 of the last 30 days", effect=1.0),
            Reason(text="2 events in the last 7 days", effect=1.0),
            Reason(text="2 pricing views in the last 7 days", effect=1.0),
        ]
    ]
    assert top_reasons(model, features, top=1) == [[Reason(text="active 2 of the last 30 days", effect=1.0)]]


def test_effects_too_small_to_matter_are_not_reasons():
    columns = ["events_7d", "days_since_last_event"]
    model = _linear([0.02, -0.3], columns)
    features = pd.DataFrame([[2.0, 3.0], [2.0, 0.1]], columns=columns)
    # Row 0: 0.04 and -0.9; row 1: 0.04 and -0.03, so nothing stands out.
    assert top_reasons(model, features) == [[Reason(text="no activity for 3 days", effect=-0.9)], []]


@pytest.mark.parametrize(
    "model",
    [
        DecisionTreeClassifier(max_depth=3, random_state=0),
        Pipeline(
            [
                ("log1p", FunctionTransformer(np.log1p)),
                ("scale", StandardScaler()),
                ("model", DecisionTreeClassifier(max_depth=3, random_state=0)),
            ]
        ),
        Pipeline([("pca", PCA(n_components=3)), ("model", LogisticRegression())]),
    ],
    ids=["tree", "pipeline-ending-in-a-tree", "pca-changes-the-columns"],
)
def test_a_model_without_a_linear_breakdown_gives_no_reasons(fitted, model):
    _, features = fitted
    labels = (features["events_30d"] > features["events_30d"].median()).astype(int)
    model.fit(features, labels)
    assert contributions(model, features) is None
    assert top_reasons(model, features) is None


def test_a_multiclass_model_gives_no_reasons(fitted):
    _, features = fitted
    labels = np.minimum(features["active_days_30d"].to_numpy(), 2).astype(int)
    model = make_pipeline().fit(features, labels)
    assert len(set(labels)) == 3 and top_reasons(model, features) is None


LOOKBACK_90 = FeatureCatalog(lookback_days=90)


@pytest.mark.parametrize(
    ("name", "value", "catalog", "words"),
    [
        ("events_7d", 12, None, "12 events in the last 7 days"),
        ("events_7d", 1, None, "1 event in the last 7 days"),
        ("events_7d", 0, None, "no events in the last 7 days"),
        ("events_7d", 2.5, None, "2.5 events in the last 7 days"),
        ("events_180d", 12_345, None, "12,345 events in the last 180 days"),
        ("active_days_30d", 5, None, "active 5 of the last 30 days"),
        ("active_days_30d", 0, None, "not active in the last 30 days"),
        ("distinct_types_30d", 4, None, "4 kinds of activity in the last 30 days"),
        ("distinct_types_90d", 1, None, "1 kind of activity in the last 90 days"),
        ("distinct_types_30d", 0, None, "no activity in the last 30 days"),
        ("days_since_last_event", 0, None, "active today"),
        ("days_since_last_event", 1, None, "last active yesterday"),
        ("days_since_last_event", 41, None, "no activity for 41 days"),
        ("days_since_last_event", 181, None, "no activity in the last 180 days"),
        ("days_since_last_event", 91, LOOKBACK_90, "no activity in the last 90 days"),
        ("days_since_last_event", 90, LOOKBACK_90, "no activity for 90 days"),
        ("days_since_first_event", 90, None, "first seen 90 days ago"),
        ("days_since_first_event", 1, None, "first seen yesterday"),
        ("days_since_first_event", 0, None, "first seen today"),
        ("days_since_first_event", 181, None, "not seen in the last 180 days"),
        ("evt_pricing_view_7d", 8, None, "8 pricing views in the last 7 days"),
        ("evt_pricing_view_7d", 1, None, "1 pricing view in the last 7 days"),
        ("evt_pricing_view_7d", 0, None, "no pricing views in the last 7 days"),
        ("evt_page_view_90d", 1_500, None, "1,500 page views in the last 90 days"),
        ("evt_signup_started_7d", 3, None, "signup started 3 times in the last 7 days"),
        ("evt_signup_started_7d", 2, None, "signup started twice in the last 7 days"),
        ("evt_signup_started_7d", 1, None, "signup started once in the last 7 days"),
        ("evt_signup_started_7d", 0, None, "no signup started in the last 7 days"),
        ("evt_invite_sent_30d", 4, None, "invite sent 4 times in the last 30 days"),
        ("evt_feature_used_30d", 1, None, "feature used once in the last 30 days"),
        ("evt_webinar_join_90d", 3, None, "3 webinar joins in the last 90 days"),
        ("evt_company_inquiry_7d", 2, None, "2 company inquiries in the last 7 days"),
        ("evt_survey_7d", 2, None, "2 surveys in the last 7 days"),
        ("evt_search_7d", 2, None, "2 searches in the last 7 days"),
        ("evt_inbox_7d", 2, None, "2 inboxes in the last 7 days"),
        ("evt_news_feed_7d", 2, None, "2 news feeds in the last 7 days"),
        ("lead_source_score", 3, None, "lead source score: 3"),
        ("visits_14d", 2.25, None, "visits in the last 14 days: 2.25"),
    ],
)
def test_words_for_each_kind_of_feature(name, value, catalog, words):
    assert describe(name, value, catalog=catalog) == words


def test_reasons_use_the_catalogs_lookback():
    columns = ["days_since_last_event"]
    model = _linear([-0.1], columns)
    features = pd.DataFrame([[91.0]], columns=columns)
    assert top_reasons(model, features, catalog=LOOKBACK_90) == [
        [Reason(text="no activity in the last 90 days", effect=-9.1)]
    ]


def test_importing_models_does_not_load_scikit_learn():
    # Stores and `lead-scorer --help` import models; scikit-learn would add a second and a half to each.
    code = "import sys, models; models.top_reasons; sys.exit(any(m.startswith('sklearn') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_jobs_reasons_json_is_byte_for_byte_what_json_dumps_gives(fitted):
    import json
    from types import SimpleNamespace

    from scorer.page import reasons_json

    pipeline, features = fitted
    model = SimpleNamespace(pipeline=pipeline, input_names=list(features.columns))
    got = reasons_json(model, features, FeatureCatalog())
    reasons = top_reasons(pipeline, features, top=3)
    assert reasons is not None and any(len(row) == 3 for row in reasons)
    want = [json.dumps([{"reason": r.text, "effect": r.effect} for r in row], ensure_ascii=False) for row in reasons]
    assert got == want


def _walk(effects: np.ndarray, features: pd.DataFrame, top: int) -> list[list[Reason]]:
    """The rule of `top_reasons`, one lead and one candidate at a time, as a reader would apply it."""
    names = list(features.columns)
    out = []
    for i in range(len(features)):
        ranked = sorted(range(len(names)), key=lambda j: (-abs(effects[i, j]), names[j]))
        mine: list[Reason] = []
        seen: set[str] = set()
        for j in ranked:
            if abs(effects[i, j]) < MIN_EFFECT or len(mine) == top:
                break
            behaviour = re.sub(r"_\d+d$", "", names[j])
            if behaviour not in seen:
                seen.add(behaviour)
                mine.append(Reason(text=describe(names[j], features.iat[i, j]), effect=round(float(effects[i, j]), 3)))
        out.append(mine)
    return out


@pytest.mark.parametrize("top", [1, 3, 5])
def test_many_ties_and_repeated_behaviours_pick_as_one_lead_at_a_time(top):
    # Effects from a handful of values, so ties, sub-threshold effects and one behaviour over three windows
    # crowd every row: the batch's array walk must give what the one-lead walk gives.
    rng = np.random.default_rng(top)
    names = [f"evt_{kind}_{w}d" for kind in ("pricing_view", "demo_request", "invite_sent") for w in (7, 30, 90)]
    names += ["events_7d", "events_30d", "active_days_30d", "days_since_last_event"]
    features = pd.DataFrame(rng.integers(0, 4, size=(400, len(names))).astype(np.float64), columns=names)
    effects = rng.choice([-0.7, -0.2, -0.04, 0.0, 0.03, 0.2, 0.7], size=features.shape)
    got = top_reasons(None, features, top=top, effects=effects)
    assert got == _walk(effects, features, top)
    assert max(map(len, got)) == top


def test_scores_with_their_effects_are_the_pipelines_scores_to_the_bit(fitted):
    pipeline, features = fitted
    scores, effects = score_with_effects(pipeline, features)
    assert np.array_equal(scores, pipeline.predict_proba(features)[:, 1])
    assert effects is not None and np.array_equal(effects, contributions(pipeline, features))
    tree = DecisionTreeClassifier(random_state=0).fit(features, np.arange(len(features)) % 2)
    scores, effects = score_with_effects(tree, features)
    assert effects is None and np.array_equal(scores, tree.predict_proba(features)[:, 1])
