"""Run tracking: one MLflow run per job run, tagged with the model it used.

A `Tracker` is started once (`MlflowTracker.start`: tags and parameters), logs per-batch metrics as the run
goes (`log_batch`), and finishes once with the totals, the artifacts and the status (`finish`).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import stamina
import structlog
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput, Metric, Param, RunTag

from lead_errors import TrackingError

__all__ = ["TAG_SCORE_SHARES", "Baseline", "MlflowTracker", "NullTracker", "Tracker", "TrackingError"]

#: A scoring run's tag: its population's share through each of its own deciles (the score_p10 … score_p90
#: metrics), counted on its histogram's bins; the next run's drift compares with these, not with 10 % each.
TAG_SCORE_SHARES = "score_shares"


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """What drift between runs compares with: the previous run's deciles and, when it recorded them, its
    actual share through each (None for a run made before they were kept: 10 % per decile is assumed)."""

    run_id: str
    deciles: list[float]
    shares: list[float] | None = None


_MAX_METRICS = 1000  # MLflow's limit per log_batch request

log = structlog.get_logger("lead_scorer.tracking")
Status = Literal["FINISHED", "FAILED", "KILLED"]


class Tracker(Protocol):
    run_id: str | None

    def start(
        self,
        *,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, Any],
        model_id: str | None = None,
        totals: Sequence[str] = (),
    ) -> None: ...
    def previous_baseline(self) -> Baseline | None: ...
    def close_orphans(
        self, *, tags: dict[str, str], started_before_ms: int | None, live_sessions: set[str] | None = None
    ) -> list[str]: ...
    def log_batch(self, *, step: int, metrics: dict[str, float]) -> None: ...
    def finish(
        self,
        *,
        metrics: dict[str, float],
        artifacts: dict[str, Any],
        status: Status,
        note: str = "",
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None: ...


class NullTracker:
    """Records nothing: for library callers and tests that want the batch loop without MLflow."""

    run_id: str | None = None

    def start(self, **_: Any) -> None:
        return None

    def previous_baseline(self) -> Baseline | None:
        return None

    def close_orphans(
        self, *, tags: dict[str, str], started_before_ms: int | None, live_sessions: set[str] | None = None
    ) -> list[str]:
        return []

    def log_batch(self, *, step: int, metrics: dict[str, float]) -> None:
        return None

    def finish(self, **_: Any) -> None:
        return None


class MlflowTracker:
    """Records a run through `MlflowClient`, with explicit ids rather than the fluent globals.

    ``run_id`` adopts a run created by someone else (``mlflow run`` exports ``MLFLOW_RUN_ID``).
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment: str,
        artifact_location: str | None = None,
        run_id: str | None = None,
        finish_attempts: int = 3,
        description: str | None = None,
        batch_metrics_every_s: float = 2.0,
    ) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._tracking_uri = tracking_uri
        self._description = description
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.run_id: str | None = None
        self._adopt = run_id
        self._experiment_id: str | None = None
        self._model_id: str | None = None
        self._finish_attempts = finish_attempts
        # Set after the first failed call: a lost server must not cost MLflow's retries on every batch.
        self._degraded = False
        # Per-batch metrics go out from one background thread, in order, so a slow tracking server never
        # holds up the scoring; `_drain` waits for them before anything reads or closes the run.
        self._sender: ThreadPoolExecutor | None = None
        # Sent together, at most one request per `batch_metrics_every_s`: one request per batch was 500 writes
        # on the tracking server per 1M users, and a tenth of the job's own time.
        self._every_s = batch_metrics_every_s
        self._queued: list[Metric] = []
        self._queue_lock = threading.Lock()
        self._in_flight = False
        self._last_sent = 0.0
        self._version: tuple[str, str] | None = None
        self._previous_run: tuple[str, str] | None = None  # (id, name) of the drift baseline, for the run's note

    def start(
        self,
        *,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, Any],
        model_id: str | None = None,
        totals: Sequence[str] = (),
    ) -> None:
        """Open the run (or adopt ``mlflow run``'s) with its name, tags and parameters, linked to the model it
        uses. ``totals`` are the keys `finish` will log: logged now as NaN ("not known yet"), because MLflow
        lists a run's metrics in the order their keys were first logged, and the totals belong above the
        per-batch figures. A run that dies before its end keeps NaN there, which is what is known."""
        str_tags = {k: str(v) for k, v in tags.items()}
        self._version = (str_tags["model_name"], str_tags["model_version"]) if "model_version" in str_tags else None
        if self._adopt:
            run = self.client.get_run(self._adopt)
            self.run_id = run.info.run_id
            self._experiment_id = run.info.experiment_id
            self.client.set_tag(self.run_id, "mlflow.runName", run_name)
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in str_tags.items()])
        else:
            exp = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = (
                exp.experiment_id
                if exp is not None
                else self.client.create_experiment(
                    self.experiment,
                    artifact_location=self.artifact_location,
                    tags={"mlflow.note.content": self._description} if self._description else None,
                )
            )
            run = self.client.create_run(self._experiment_id, run_name=run_name, tags=str_tags)
            self.run_id = run.info.run_id
        taken = run.data.params if self._adopt else {}
        # `mlflow run` already logged its parameters (as typed, e.g. limit=""); MLflow refuses to change a
        # parameter's value, so keep those and add the rest.
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            params=[Param(k, str(v)) for k, v in params.items() if k not in taken],
            metrics=[Metric(k, float("nan"), now, 0) for k in dict.fromkeys(totals)],
        )
        if model_id:
            # MLflow 3 links the run to the model: the version page ("Source model") leads to its scoring runs.
            self._model_id = model_id
            try:
                self.client.log_inputs(self.run_id, models=[LoggedModelInput(model_id)])
            except Exception as exc:  # an older server without logged models: the tags still say which
                log.warning("model_link_not_recorded", error=type(exc).__name__)

    def previous_baseline(self) -> Baseline | None:
        """The score deciles (and the shares through them) of the last finished run in this experiment, for
        drift between runs."""
        self._drain()
        if self._experiment_id is None or self._degraded:
            return None
        try:
            runs = self.client.search_runs(
                [self._experiment_id],
                filter_string="attributes.status = 'FINISHED' and metrics.users_scored > 0",
                order_by=["attributes.start_time DESC"],
                max_results=5,
            )
        except Exception as exc:
            self._degraded = True
            log.warning("previous_run_not_read", error=type(exc).__name__)
            return None
        for run in runs:
            if run.info.run_id == self.run_id:
                continue
            m = run.data.metrics
            if all(f"score_p{p}" in m for p in range(10, 100, 10)):
                self._previous_run = (run.info.run_id, run.info.run_name or run.info.run_id)
                if self.run_id is not None:
                    with contextlib.suppress(Exception):  # which run is the baseline, for whoever reads the PSI
                        self.client.set_tag(self.run_id, "score_psi_previous_run", run.info.run_id)
                return Baseline(
                    run_id=run.info.run_id,
                    deciles=[m[f"score_p{p}"] for p in range(10, 100, 10)],
                    shares=_shares(run.data.tags.get(TAG_SCORE_SHARES)),
                )
        return None

    def close_orphans(
        self, *, tags: dict[str, str], started_before_ms: int | None, live_sessions: set[str] | None = None
    ) -> list[str]:
        """Mark as KILLED the runs of this experiment still RUNNING with these tags (a process that died
        without closing its run: kill -9, an out-of-memory kill, a lost container), started before the
        given time if one is given; returns their ids. A run whose ``store_session`` tag is among
        ``live_sessions`` (its process is still connected to the database: it lost its run lock, it has not
        died) is left alone. Best effort: a failure here never stops the run."""
        if self._experiment_id is None:
            return []
        where = " and ".join(["attributes.status = 'RUNNING'", *(f"tags.{k} = '{v}'" for k, v in tags.items())])
        closed: list[str] = []
        try:
            for run in self.client.search_runs([self._experiment_id], filter_string=where, max_results=200):
                if run.info.run_id == self.run_id:
                    continue
                if started_before_ms is not None and run.info.start_time >= started_before_ms:
                    continue
                if live_sessions and run.data.tags.get("store_session") in live_sessions:
                    continue
                # What is true whichever way it ended: it may have died (killed, out of memory) or finished
                # every batch and lost the MLflow server before recording it (exit 5).
                note = (
                    f"Closed by run {self.run_id}: this run never recorded its end. Either its process died "
                    "(killed, out of memory) or it lost the MLflow server before it could record its finish "
                    "(exit 5: every score it computed was written). The scores it wrote are in the database; "
                    "its batch metrics stop at the last one the server received. Any user it did not write "
                    f"stayed stale, so run {self.run_id} or a later one scores it."
                )
                self.client.set_tag(run.info.run_id, "mlflow.note.content", note)
                self.client.set_tag(run.info.run_id, "closed_by_run", self.run_id or "")
                self.client.set_terminated(run.info.run_id, status="KILLED")
                closed.append(run.info.run_id)
        except Exception as exc:
            log.warning("orphans_not_closed", error=type(exc).__name__)
        if closed:
            log.warning("orphaned_runs_closed", runs=closed)
        return closed

    def log_batch(self, *, step: int, metrics: dict[str, float]) -> None:
        if self.run_id is None or self._degraded:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-scorer-metrics")
        with self._queue_lock:
            self._queued += batch
            if self._in_flight or time.monotonic() - self._last_sent < self._every_s:
                return  # goes out with the next request, or at `_drain`
            self._in_flight = True
        self._sender.submit(self._send_queued, self.run_id, step)

    def _drain(self) -> None:
        if self._sender is not None:
            if self.run_id is not None:
                self._sender.submit(self._send_queued, self.run_id, -1)
            self._sender.shutdown(wait=True)
            self._sender = None

    def _send_queued(self, run_id: str, step: int) -> None:
        while True:
            with self._queue_lock:
                batch, self._queued = self._queued[:_MAX_METRICS], self._queued[_MAX_METRICS:]
                if not batch:
                    self._in_flight = False
                    self._last_sent = time.monotonic()
                    return
            self._send_batch(run_id, step, batch)

    def _send_batch(self, run_id: str, step: int, batch: list[Metric]) -> None:
        if self._degraded:
            return
        try:
            self.client.log_batch(run_id, metrics=batch)
        except Exception as exc:  # a lost batch metric must not stop the scoring
            self._degraded = True
            log.warning(
                "batch_metrics_paused",
                step=step,
                error=type(exc).__name__,
                hint="per-batch metrics stop for this run; the totals are still saved (retried) at the end",
            )

    def finish(
        self,
        *,
        metrics: dict[str, float],
        artifacts: dict[str, Any],
        status: Status,
        note: str = "",
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Totals, artifacts, the run's description, its final name (what happened) and status; retried, then
        `TrackingError` if it cannot be saved."""
        self._drain()
        if self.run_id is None:
            return
        run_id = self.run_id
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        if self._model_id:
            batch += [Metric(k, float(v), now, 0, model_id=self._model_id, run_id=run_id) for k, v in metrics.items()]

        retry = stamina.retry(on=Exception, attempts=self._finish_attempts, timeout=60.0)

        @retry
        def save_metrics() -> None:
            # Logging the same (key, value, timestamp, step) again is idempotent, so a retry is safe.
            for i in range(0, len(batch), 500):  # MLflow takes at most 1,000 metrics per call
                self.client.log_batch(run_id, metrics=batch[i : i + 500])

        @retry
        def save_artifacts() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                for name, content in artifacts.items():
                    path = Path(tmp) / name
                    if isinstance(content, bytes):
                        path.write_bytes(content)
                    elif isinstance(content, str):
                        path.write_text(content, encoding="utf-8")
                    else:
                        path.write_text(json.dumps(content, indent=2, default=str))
                self.client.log_artifacts(run_id, tmp)

        if note and self._previous_run is not None:
            prev_id, prev_name = self._previous_run
            note += f"\n\nCompared with the previous run: [{prev_name}]({_run_link(self._experiment_id, prev_id)})."

        @retry
        def terminate() -> None:
            final = dict(tags or {})
            if note:
                # MLflow's run note, rendered as Markdown at the top of the run page.
                final["mlflow.note.content"] = note
            if final:
                self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in final.items()])
            if run_name:
                self.client.update_run(run_id, name=run_name)
            self.client.set_terminated(run_id, status=status)

        lost: list[str] = []
        for step in (save_metrics, save_artifacts, terminate):
            if step is save_artifacts and (not artifacts or lost):
                continue  # nothing to upload, or the server is gone: don't spend another retry budget
            try:
                step()
            except Exception as exc:
                # Artifacts can fail on their own (an artifact store the job cannot write); the status must
                # still be set, so every step is tried.
                log.warning("run_record_step_failed", step=step.__name__, error=type(exc).__name__)
                lost.append(step.__name__)
        if "save_metrics" in lost or "terminate" in lost:
            raise TrackingError(f"the MLflow run {run_id} could not be completed ({', '.join(lost)} failed)")
        # MLflow's own "View run … at <url>" line is switched off (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT): it
        # printed the tracking URI's password. This line says the same, without credentials, as a log event.
        if self._version is not None:
            # The version page leads to its latest scoring run (one tag write per run, best effort).
            with contextlib.suppress(Exception):
                self.client.set_model_version_tag(
                    *self._version, "last_scoring_run", f"#/experiments/{self._experiment_id}/runs/{run_id}"
                )
                # The UI shows tags as plain text but renders the description as Markdown: the clickable way
                # from the version page back to its runs is a link there, added once per version.
                name, version = self._version
                where = quote(f"tags.model_name = '{name}' and tags.model_version = '{version}'", safe="")
                runs = f"#/experiments/{self._experiment_id}/runs?workflowType=machine_learning&searchFilter={where}"
                described = self.client.get_model_version(name, version).description or ""
                if runs not in described:
                    self.client.update_model_version(
                        name, version, description=f"{described}\n\n[Scoring runs of this version]({runs})".strip()
                    )
        url = ui_url(self._tracking_uri, experiment_id=self._experiment_id, run_id=run_id)
        log.info("run_recorded", run_id=run_id, status=status, **({"url": url} if url else {}))


def _shares(text: str | None) -> list[float] | None:
    """A run's `TAG_SCORE_SHARES`, or None when it has none (or not nine numbers)."""
    try:
        shares = [float(x) for x in json.loads(text)] if text else None
    except (ValueError, TypeError):
        return None
    return shares if shares is not None and len(shares) == 9 else None


def _run_link(experiment_id: str | None, run_id: str) -> str:
    """A run page inside the UI (a hash route), kept in the "Model training" view: without workflowType the UI
    falls back to its GenAI view, whose breadcrumb leads to evaluation runs instead of these runs."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def ui_url(tracking_uri: str, *, experiment_id: str | None, run_id: str | None = None) -> str | None:
    """The MLflow UI page of a run (or of an experiment's runs) on an http(s) tracking server, without any
    user name or password the tracking URI carries; None for a local store."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not experiment_id:
        return None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if run_id:
        return f"{base}/{_run_link(experiment_id, run_id)}"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"
