"""`lead-scorer train` and `lead-scorer registry import-joblib`: a new registered version, from the database
(point-in-time features, a holdout evaluation) or from a legacy joblib file. The fitting itself is
`models.training`; this module reads the store, and registers and promotes through the registry. The CLI's
``lead-scorer train --promote`` is ``train_model(train_options(load_settings(), promote=True))``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

from lead_errors import ModelError, SettingsError
from models import FeatureCatalog, TrainResult, fit_and_evaluate
from registry import (
    DEFAULT_HORIZON_DAYS,
    TAG_AS_OF,
    TAG_EVENT_TYPES,
    TAG_HORIZON_DAYS,
    TAG_REFERENCE,
    TAG_REFERENCE_SHARES,
    TAG_TRUSTED_TYPES,
    TAG_WINDOW,
    PromotionRefused,
    ResolvedVersion,
)
from scorer.app import ModelSource, StoreOptions, open_training_source, require_temp_dir
from scorer.cohorts import midnight, point_in_time_pages
from scorer.stats import ScoreStats
from scorer.stores import TrainingSource

__all__ = [
    "TOP_EVENT_TYPES",
    "ImportOptions",
    "TrainOptions",
    "TrainOutcome",
    "build_training_set",
    "import_joblib",
    "train_model",
]

log = structlog.get_logger("lead_scorer")


#: Event types (most frequent first) a trained model counts, unless told otherwise.
TOP_EVENT_TYPES = 12


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Everything a training run is told: where it reads (the store), registers (the model source: server,
    model, load policy) and in whose name it promotes (``actor``, recorded as ``promoted_by``), and the run's
    choices, one per flag of `lead-scorer train`. A library call with a 14-day label, made challenger::

        train_model(TrainOptions(store=store, model=model, actor="ci", horizon_days=14, challenger=True))

    Contradictory choices (``promote`` and ``challenger``, a horizon of 0 days) are refused when the options
    are made, whoever makes them: a `SettingsError`, exit 2 from the command line.
    """

    store: StoreOptions
    model: ModelSource
    actor: str
    experiment: str = "lead-scorer/training"
    #: Users per page read (at least 5,000: training reads everyone once).
    batch_size: int = 2_000
    #: The cutoff (its UTC midnight): features from before it, labels from the horizon after it.
    #: None: ``horizon_days`` before today.
    as_of: datetime | None = None
    #: The label: converted within this many days after the cutoff.
    horizon_days: int = DEFAULT_HORIZON_DAYS
    top_event_types: int = TOP_EVENT_TYPES
    #: Point the production alias at the new version (``challenger``: the challenger alias); not both.
    promote: bool = False
    challenger: bool = False
    #: The holdout split's and the model's random seed.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.horizon_days <= 0:
            raise SettingsError("--horizon-days must be positive")
        if self.promote and self.challenger:
            raise SettingsError(
                "--promote and --challenger both given", hint="a new version is either production or the challenger"
            )


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """Everything `lead-scorer registry import-joblib` is told, but the file: where it registers (the model
    source), under which experiment, whether the file is trusted (loading a pickle runs its code), and the
    window it was trained on (``as_of``, ``horizon_days``; see `import_joblib`)."""

    model: ModelSource
    experiment: str = "lead-scorer/training"
    trust: bool = False
    as_of: datetime | None = None
    horizon_days: int | None = None

    def __post_init__(self) -> None:
        if self.horizon_days is not None and self.horizon_days <= 0:
            raise SettingsError("--horizon-days must be positive")


@dataclass(frozen=True, kw_only=True)
class TrainOutcome:
    version: ResolvedVersion
    result: TrainResult
    event_types: list[str]
    users: int
    promoted: bool
    challenger: bool = False


def build_training_set(
    store: TrainingSource,
    *,
    as_of: datetime,
    horizon_days: int,
    event_types: list[str],
    catalog: FeatureCatalog,
    batch_size: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Point-in-time features (events strictly before ``as_of``, a UTC midnight) and labels (converted in
    the horizon) of the cohort of ``as_of``: `scorer.cohorts` holds the rule, which live evaluation shares.

    Users who converted before ``as_of`` are left out: they are no longer leads. So are users whose first
    event comes after ``as_of``: they were not leads yet. Left in, such users made a third of the synthetic
    holdout zero-activity rows that no scoring run sees, and the reference deciles (hence drift) described
    another population than the open leads scored. The training set, its holdout and so the reference
    deciles then describe what a scoring run scores: the open leads of the day.
    """
    names = catalog.feature_names(event_types=event_types)
    frames: list[pd.DataFrame] = []
    labels: list[np.ndarray] = []
    for page in point_in_time_pages(
        store, days=[as_of], horizon_days=horizon_days, names=names, catalog=catalog, batch_size=batch_size
    ):
        if len(page.labels):
            frames.append(page.features)
            labels.append(page.labels)
    if not frames:
        return pd.DataFrame(columns=names, dtype="float64"), np.zeros(0, dtype=np.int64)
    return pd.concat(frames, ignore_index=True), np.concatenate(labels).astype(np.int64)


def train_model(
    options: TrainOptions,
    *,
    store: TrainingSource | None = None,
    catalog: FeatureCatalog | None = None,
    artifact_location: str | None = None,
) -> TrainOutcome:
    """Train on the configured database and register a new version (promote only when ``options.promote``;
    ``options.challenger``: point the challenger alias at it instead, so the daily run shadow-scores it beside
    production). ``store`` (a training source already open) and ``catalog`` are collaborators a caller may
    bring; ``artifact_location`` is where a new experiment keeps its artifacts, as in `run_scoring`.

    Nothing moves before the version is registered: a retrain that fails leaves both aliases where they were."""
    horizon_days, top_event_types, seed = options.horizon_days, options.top_event_types, options.seed
    catalog = catalog or FeatureCatalog()
    # A cutoff is a UTC midnight, so "before the cutoff" is whole days for the features and the label alike.
    as_of = (
        (options.as_of or (datetime.now(UTC) - timedelta(days=horizon_days)))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )
    if as_of + timedelta(days=horizon_days) > datetime.now(UTC):
        raise SettingsError(
            f"--as-of {as_of:%Y-%m-%d} plus {horizon_days} days ends in the future, so labels are incomplete",
            hint="pick an --as-of at least --horizon-days ago",
        )
    require_temp_dir()
    owned = contextlib.ExitStack()  # closes the store only if this call opened it
    if store is None:
        store = owned.enter_context(open_training_source(options.store))
    registry = options.model.registry()
    try:
        store.check(scoring=False, training=True)
        event_types = store.top_event_types(since=catalog.since(as_of), as_of=as_of, limit=top_event_types)
        features, labels = build_training_set(
            store,
            as_of=as_of,
            horizon_days=horizon_days,
            event_types=event_types,
            catalog=catalog,
            batch_size=max(options.batch_size, 5_000),
        )
    finally:
        owned.close()
    log.info("training_set", users=len(labels), positives=int(labels.sum()), event_types=len(event_types))
    result = fit_and_evaluate(features, labels, seed=seed)
    # The holdout counted on the bins a scoring run counts its scores on: what drift compares with.
    holdout = ScoreStats()
    holdout.add(result.holdout_scores)
    reference_shares = holdout.shares_through(result.reference_deciles)
    started = datetime.now(UTC)
    version = registry.register(
        result.pipeline,
        example=features,
        experiment=options.experiment,
        metrics=result.metrics,
        params={
            "as_of": as_of.isoformat(),
            "horizon_days": horizon_days,
            "training_window": f"{catalog.since(as_of):%Y-%m-%d} to {as_of:%Y-%m-%d}",
            "seed": seed,
            "top_event_types": top_event_types,
            "users": len(labels),
            "n_train": result.n_train,
            "n_holdout": result.n_holdout,
            "features": len(features.columns),
        },
        version_tags={
            TAG_REFERENCE: json.dumps([round(x, 6) for x in result.reference_deciles]),
            TAG_REFERENCE_SHARES: json.dumps([round(x, 6) for x in reference_shares]),
            TAG_EVENT_TYPES: json.dumps(event_types),
            "reliability": json.dumps(
                [{k: round(v, 4) for k, v in row.items()} for row in result.reliability], separators=(",", ":")
            ),
            TAG_AS_OF: as_of.isoformat(),
            TAG_HORIZON_DAYS: str(horizon_days),
            TAG_WINDOW: "trained",
        },
        run_name=f"train · {started:%Y-%m-%d %H:%M:%S} UTC · as of {as_of:%Y-%m-%d}",
        description=_version_description(result, as_of=as_of, horizon_days=horizon_days, seed=seed, users=len(labels)),
        experiment_description="Training runs of lead-scorer (`lead-scorer train`): point-in-time features, a "
        "holdout evaluation, one registered version of the lead-scoring pipeline per run.",
        artifact_location=artifact_location,
    )
    log.info("registered", model=version.name, version=version.version, **result.metrics)
    if version.run_id:
        # Named once the version is known: which version, when, and how well it ranks the holdout. A label:
        # the version is registered whether or not it is renamed.
        try:
            registry.rename_run(
                version.run_id,
                f"train v{version.version} · {started:%Y-%m-%d %H:%M:%S} UTC · ROC AUC {result.metrics['roc_auc']:.2f}",
            )
        except Exception as exc:
            log.warning("run_not_renamed", run_id=version.run_id, error=type(exc).__name__)
    if options.promote:
        try:
            registry.promote(version.version, actor=options.actor, policy=options.model.policy)
        except PromotionRefused as exc:
            raise PromotionRefused(
                f"registered version {version.version}, but did not promote it: {exc.message}",
                hint=f"promote it anyway with `lead-scorer registry promote {version.version} --force`",
            ) from exc
    if options.challenger:
        try:
            registry.challenge(
                version.version, actor=options.actor, policy=options.model.policy, check_inputs=catalog.check
            )
        except PromotionRefused as exc:
            raise PromotionRefused(
                f"registered version {version.version}, but did not make it challenger: {exc.message}",
                hint=f"`lead-scorer registry challenge {version.version} --force` makes it challenger anyway",
            ) from exc
    return TrainOutcome(
        version=version,
        result=result,
        event_types=event_types,
        users=len(labels),
        promoted=options.promote,
        challenger=options.challenger,
    )


def _version_description(result: TrainResult, *, as_of: datetime, horizon_days: int, seed: int, users: int) -> str:
    """A model version's description: how it was trained, and its holdout metrics in words."""
    m = result.metrics
    positives = round(m.get("positive_rate", 0.0) * users)
    return (
        f"Trained on {users:,} leads as of {as_of:%Y-%m-%d} (features from the 180 days before; label: converted "
        f"within {horizon_days} days after; {positives:,} did), seed {seed}.\n\n"
        f"On a holdout of {result.n_holdout:,} leads: ROC AUC {m['roc_auc']:.3f} (a lead that converted scores above "
        f"one that did not {m['roc_auc']:.0%} of the time); the top tenth of scores converted "
        f"{m['top_decile_lift']:.1f} times as often as average, and the top fifth held {m['top20_capture']:.0%} of the "
        f"conversions; calibration error {m.get('ece', float('nan')):.3f} (predicted vs observed rate, by decile)."
    )


def import_joblib(
    options: ImportOptions,
    path: Path,
    *,
    catalog: FeatureCatalog | None = None,
    artifact_location: str | None = None,
) -> ResolvedVersion:
    """Register a legacy joblib pipeline (like the original ``lead_scoring_pipeline_v1.joblib``) as a new
    version, re-saved in the skops format. Loading a pickle runs its code, so ``trust`` must be given.

    ``options.as_of`` and ``options.horizon_days`` declare the window it was trained on (cutoff, label horizon),
    which says from which day its live cohorts are honest (`registry.training_window`); without ``as_of`` it
    counts as trained on everything up to the day it is registered::

        import_joblib(ImportOptions(model=ModelSource(tracking_uri=uri), trust=True), Path("v1.joblib"))
    """
    as_of, horizon_days = options.as_of, options.horizon_days
    if not options.trust:
        raise SettingsError(
            f"refusing to load {path.name}: loading a joblib/pickle file runs any code it contains",
            hint="pass --trust only for a file you made yourself or got from someone you trust",
        )
    if not path.is_file():
        raise SettingsError(f"{path} is not a file")
    import joblib
    import skops.io as sio

    catalog = catalog or FeatureCatalog()
    pipeline = joblib.load(path)
    if not hasattr(pipeline, "predict_proba"):
        raise ModelError(f"{path.name} holds a {type(pipeline).__name__}, which has no predict_proba")
    names = [str(n) for n in getattr(pipeline, "feature_names_in_", [])]
    if not names:
        raise ModelError(
            f"{path.name} does not record its feature names, so the catalog cannot feed it",
            hint="fit the pipeline on a pandas DataFrame whose columns are catalog feature names",
        )
    catalog.check(names)
    example = pd.DataFrame(np.zeros((5, len(names))), columns=names)
    untrusted = sio.get_untrusted_types(data=sio.dumps(pipeline))
    window: dict[str, str] = {}
    if horizon_days is not None:
        window[TAG_HORIZON_DAYS] = str(horizon_days)
    if as_of is not None:
        cutoff = midnight(as_of)
        window |= {TAG_AS_OF: cutoff.isoformat(), TAG_HORIZON_DAYS: str(horizon_days or DEFAULT_HORIZON_DAYS)}
        window[TAG_WINDOW] = "declared"
    version = options.model.registry().register(
        pipeline,
        example=example,
        experiment=options.experiment,
        metrics={},
        params={"imported_from": path.name, **window},
        version_tags={"imported_from": path.name, TAG_TRUSTED_TYPES: json.dumps(untrusted), **window},
        run_name=f"import-{path.stem}",
        artifact_location=artifact_location,
        skops_trusted_types=untrusted or None,
    )
    log.info("imported", model=version.name, version=version.version, features=len(names), trusted_types=untrusted)
    return version
