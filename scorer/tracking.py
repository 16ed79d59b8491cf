"""Run tracking: one MLflow run per job run, tagged with the model it used.

>>> tracker = MlflowTracker(tracking_uri="sqlite:///mlflow.db", experiment="lead-scorer/scoring")
>>> tracker.start(run_name="score-2026-11-25", tags={...}, params={...})
>>> tracker.log_batch(step=1, metrics={"batch_users": 2000})
>>> tracker.finish(metrics={...}, artifacts={"score_histogram.json": {...}}, status="FINISHED")
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "TrackingError"]

log = structlog.get_logger("lead_scorer.tracking")
Status = Literal["FINISHED", "FAILED", "KILLED"]


class TrackingError(Exception):
    """The run record could not be saved (the scores themselves may be written)."""


class Tracker(Protocol):
    run_id: str | None

    def start(self, *, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> None: ...
    def log_batch(self, *, step: int, metrics: dict[str, float]) -> None: ...
    def finish(self, *, metrics: dict[str, float], artifacts: dict[str, Any], status: Status) -> None: ...


class NullTracker:
    """Tracking turned off (``--no-track``): nothing is recorded."""

    run_id: str | None = None

    def start(self, *, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> None:
        return None

    def log_batch(self, *, step: int, metrics: dict[str, float]) -> None:
        return None

    def finish(self, *, metrics: dict[str, float], artifacts: dict[str, Any], status: Status) -> None:
        return None


class MlflowTracker:
    """Records a run through `MlflowClient`, with explicit ids rather than the fluent globals."""

    def __init__(self, *, tracking_uri: str, experiment: str, artifact_location: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.run_id: str | None = None

    def start(self, *, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> None:
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        )
        run = self.client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_batch(self, *, step: int, metrics: dict[str, float]) -> None:
        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
        except Exception as exc:  # a lost batch metric must not stop the scoring
            log.warning("batch_metrics_not_recorded", step=step, error=type(exc).__name__)

    def finish(self, *, metrics: dict[str, float], artifacts: dict[str, Any], status: Status) -> None:
        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
            with tempfile.TemporaryDirectory() as tmp:
                for name, content in artifacts.items():
                    path = Path(tmp) / name
                    if isinstance(content, bytes):
                        path.write_bytes(content)
                    else:
                        path.write_text(json.dumps(content, indent=2, default=str))
                if artifacts:
                    self.client.log_artifacts(self.run_id, tmp)
            self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:
            raise TrackingError(f"the MLflow run {self.run_id} could not be completed: {exc}") from exc
