"""`lead-scorer evaluate`: how a version's scores predicted who converted, on honest cohorts after its training,
recorded as an MLflow run (experiment ``lead-scorer/evaluation``) and as live figures on the version.

A cohort is a day ``T`` and the version's horizon ``H`` (`scorer.cohorts` holds the rule training shares);
it counts for a version only when ``T`` is at or after the version's first honest day (`registry.TrainingWindow`)
and has matured (``T + H`` has passed). The CLI's ``lead-scorer evaluate --json`` is
``evaluate_version(evaluate_options(load_settings())).as_json()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import structlog

from models import FeatureCatalog, day_number
from registry import Registry, training_window
from scorer.app import ModelSource, StoreOptions, open_training_source, require_temp_dir
from scorer.live import Evaluation, annotate_version, cohort_days, holdout_auc, live_line, measure_cohorts
from scorer.stores import TrainingSource

__all__ = ["EvaluateOptions", "evaluate_version", "open_evaluation_source", "reading"]

log = structlog.get_logger("lead_scorer")


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """Where evaluation reads (a SQL store: every event of past days), which registry, and where it records.

    >>> EvaluateOptions(store=StoreOptions(database_url="sqlite:///leads.db"),
    ...                 model=ModelSource(tracking_uri="sqlite:///mlflow.db")).experiment
    'lead-scorer/evaluation'
    """

    store: StoreOptions
    model: ModelSource
    experiment: str = "lead-scorer/evaluation"
    batch_size: int = 5_000


def open_evaluation_source(options: StoreOptions) -> TrainingSource:
    """The SQL store evaluation reads; the REST store is refused, naming DATABASE_URL. Not connected yet."""
    return open_training_source(
        options, reader="live evaluation (every event of past days)", command="run `lead-scorer evaluate`"
    )


@contextlib.contextmanager
def reading(options: StoreOptions, store: TrainingSource | None = None) -> Iterator[TrainingSource]:
    """``store`` when given (the caller's: left open), else the SQL store of ``options``, connected here and
    closed after; over REST the refusal comes first, before anything is downloaded."""
    if store is not None:
        yield store
        return
    with open_evaluation_source(options) as owned:
        yield owned


def evaluate_version(
    options: EvaluateOptions,
    *,
    version: str | None = None,
    start: date | None = None,
    end: date | None = None,
    every: int = 7,
    now: datetime | None = None,
    store: TrainingSource | None = None,
    catalog: FeatureCatalog | None = None,
    record: bool = True,
    artifact_location: str | None = None,
) -> Evaluation:
    """Evaluate ``version`` (default: production) on its honest, matured cohorts; record the MLflow run and the
    version's live figures unless ``record`` is False.

    >>> out = evaluate_version(options, version="3", every=7)  # doctest: +SKIP
    >>> out.as_json()["cohorts"][0]["roc_auc_ci"]  # doctest: +SKIP
    [0.78, 0.84]
    """
    catalog = catalog or FeatureCatalog()
    now = now or datetime.now(UTC)
    with reading(options.store, store) as store:
        registry = options.model.registry()
        resolved = registry.resolve(pin=version if version not in (None, "production") else options.model.pin)
        window = training_window(resolved)
        days = cohort_days(window, now=now, start=start, end=end, every=every, version=resolved.version)
        require_temp_dir()
        model = registry.load(resolved, policy=options.model.policy)
        catalog.check(model.input_names)
        store.check(scoring=False, training=True)
        cohorts, pooled = measure_cohorts(
            store,
            version=resolved,
            model=model,
            days=days,
            horizon_days=window.horizon_days,
            catalog=catalog,
            batch_size=options.batch_size,
        )
    holdout = holdout_auc(resolved)
    out = Evaluation(version=resolved, window=window, holdout_auc=holdout, cohorts=cohorts, pooled=pooled)
    log.info("evaluated", version=resolved.version, cohorts=len(cohorts), pooled_roc_auc=pooled["roc_auc"])
    if not record:
        return out
    run_id = _record_run(registry, out, experiment=options.experiment, artifact_location=artifact_location)
    annotate_version(registry, out)
    return dataclasses.replace(out, run_id=run_id)


def _cohort_metrics(c: dict[str, Any]) -> dict[str, float]:
    m: dict[str, float] = {"n": c["n"], "positives": c["positives"]}
    for k in ("roc_auc", "pr_auc", "top_decile_lift", "top20_capture", "brier", "ece"):
        if c[k] is not None:
            m[k] = c[k]
        if c.get(f"{k}_ci"):  # each figure's 95 % interval beside it (`models.metrics.classification_metrics`)
            m[f"{k}_lo"], m[f"{k}_hi"] = c[f"{k}_ci"]
    served = c.get("served") or {}
    if served.get("roc_auc") is not None:
        m["served_roc_auc"] = served["roc_auc"]
    return m


def _record_run(registry: Registry, out: Evaluation, *, experiment: str, artifact_location: str | None) -> str:
    """One MLflow run: each cohort's figures at step = its day number (days since 1970-01-01), so the UI charts
    them over time; the pooled ones under ``pooled/``; the whole evaluation as ``evaluation.json``."""
    from mlflow.entities import Metric, Param, RunTag

    client = registry.client
    exp_id = registry.ensure_experiment(
        experiment,
        artifact_location=artifact_location,
        description="Live evaluations of lead-scorer versions (`lead-scorer evaluate`): each version's scores "
        "against who converted, on honest cohorts after its training. Metrics are per cohort, step = the "
        "cohort's day (days since 1970-01-01).",
    )
    v = out.version
    first, last = (out.cohorts[0]["as_of"], out.cohorts[-1]["as_of"]) if out.cohorts else ("-", "-")
    run = client.create_run(exp_id, run_name=f"evaluate v{v.version} {first} to {last}")
    ts = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [
        Metric(k, float(val), ts, day_number(date.fromisoformat(c["as_of"])))
        for c in out.cohorts
        for k, val in _cohort_metrics(c).items()
    ]
    metrics += [Metric(f"pooled/{k}", float(val), ts, 0) for k, val in _cohort_metrics(out.pooled).items()]
    latest = out.latest()
    note = (
        f"Version [{v.name} v{v.version}](#/models/{v.name}/versions/{v.version}) on {len(out.cohorts)} cohort(s) "
        f"from {first} to {last}, {out.window.horizon_days}-day horizon. "
        + (live_line(v, out.window, latest) if latest else "No cohort had both converted and unconverted leads.")
    )
    params = {
        "version": v.version,
        "horizon_days": str(out.window.horizon_days),
        "training_as_of": f"{out.window.as_of:%Y-%m-%d}",
        "first_honest_day": f"{out.window.first_honest_day:%Y-%m-%d}",
        "from": first,
        "to": last,
        "cohorts": str(len(out.cohorts)),
    }
    tags = {"model_name": v.name, "model_version": v.version, "mlflow.note.content": note}
    with registry.tracking_calls("recording the evaluation"):
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
        client.log_batch(
            run.info.run_id,
            params=[Param(k, val) for k, val in params.items()],
            tags=[RunTag(k, val) for k, val in tags.items()],
        )
        client.log_dict(run.info.run_id, out.as_json(), "evaluation.json")
        client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)
