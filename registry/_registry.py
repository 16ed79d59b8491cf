"""The MLflow Model Registry, seen through the few operations lead-scorer needs."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# isort: off
# skops builds its trusted-type list at import time, finding each numpy/scipy ufunc's module by scanning
# sys.modules (pickle's whichmodule). After mlflow has loaded its ~2,000 modules that scan alone takes ~1.6 s
# of every run's start; imported first, a fraction of it. Loading a version needs skops anyway.
import skops.io  # noqa: F401

# isort: on
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature

from lead_errors import (
    LeadScorerError,
    ModelError,
    NoProductionVersion,
    PromotionRefused,
    ServiceError,
    ServiceUnavailable,
    SettingsError,
)

ALIAS = "production"
#: errno values that are this machine's disk, not the network: full, over quota, read-only, file too large.
_LOCAL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
#: The alias of the version the daily run shadow-scores beside production (LEAD_SCORER_CHALLENGER_ALIAS).
CHALLENGER_ALIAS = "challenger"
STAGE = "Production"
#: Version tags lead-scorer writes.
TAG_PREVIOUS = "previous_production_version"
TAG_PROMOTED_BY = "promoted_by"
TAG_PROMOTED_AT = "promoted_at"
TAG_ROLLED_BACK_FROM = "rolled_back_from"
#: What decided a promotion: "live" (a paired comparison on live cohorts) or "holdout"; and whether --force did.
TAG_PROMOTED_ON = "promoted_on"
TAG_PROMOTION_FORCED = "promotion_forced"
#: Who made a version challenger, and when (the version page's description says it too).
TAG_CHALLENGER_BY = "challenger_by"
TAG_CHALLENGER_AT = "challenger_at"
TAG_REFERENCE = "reference_deciles"
#: The training holdout's share of scores through each reference decile's histogram bin (`ScoreStats.psi`).
TAG_REFERENCE_SHARES = "reference_shares"
TAG_EVENT_TYPES = "event_types"
TAG_TRUSTED_TYPES = "skops_trusted_types"
METRIC_TAG_PREFIX = "holdout_"

#: The registered model's description, set when it has none.
MODEL_DESCRIPTION = (
    "Lead-scoring pipeline for lead-scorer: a daily job scores every open lead with the version that holds the "
    "`production` alias and writes `lead_score` back to the product's database. Each version's description says "
    "how it was trained and how it did on its holdout; promote with `lead-scorer registry promote VERSION`."
)

#: Registered-model tag: the version lead-scorer last made production (alias and stage together), so a later
#: move of only one of them in the MLflow UI can be told apart from the other.
TAG_LAST_PROMOTED = "lead_scorer.production"

How = Literal["pin", "alias", "stage", "challenger"]

_TRACKING_ENV = "MLFLOW_TRACKING_URI"

_USERINFO = re.compile(r"(?<=//)[^/\s'\"<>]+@")  # greedy to the last @: a password may hold one


def redact(text: str) -> str:
    """``http://user:password@host`` → ``http://***@host``: MLflow's errors quote the URL they called."""
    return _USERINFO.sub("***@", text)


#: Types a skops model may ask to trust that the job accepts by default (tree models).
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


#: What a registered pipeline needs to load (MLflow adds itself): the model's requirements.txt.
_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "scipy", "pandas")


def _pip_requirements() -> list[str]:
    """The model's requirements, pinned to this process's versions. Left to MLflow, they are inferred by
    loading the model again in a child Python that records its imports: about 16 of the 21 s a small
    `lead-scorer train` took, for a list that is always this one."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in _REQUIREMENTS]


class _NoPipNoWarning(logging.Filter):
    """Drops MLflow's "Failed to resolve installed pip version" while a model is logged from an environment
    without pip (the image removes it: the job never installs anything). The version's conda.yaml then names
    ``pip`` unpinned, which is all a conda environment needs; its requirements.txt is `_pip_requirements`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "resolve installed pip version" not in record.getMessage()


@contextmanager
def _quiet_without_pip() -> Iterator[None]:
    target = logging.getLogger("mlflow.utils.environment")
    quiet = _NoPipNoWarning()
    target.addFilter(quiet)
    try:
        yield
    finally:
        target.removeFilter(quiet)


@dataclass(frozen=True, kw_only=True)
class LoadPolicy:
    """What the job agrees to load: skops types it trusts, and whether a pickle (which runs code) may load.

    Built once, where the settings are read, and passed to `Registry.load` and `Registry.promote`, so a
    promotion refuses exactly what the next run would.

    >>> LoadPolicy.trusting(["my.Type"]).trusted_types
    ('sklearn.tree._tree.Tree', 'my.Type')
    """

    trusted_types: tuple[str, ...] = DEFAULT_TRUSTED_TYPES
    allow_pickle: bool = False

    @classmethod
    def trusting(cls, extra_types: Iterable[str] = (), *, allow_pickle: bool = False) -> LoadPolicy:
        """The defaults, plus ``extra_types`` (LEAD_SCORER_SKOPS_TRUSTED_TYPES)."""
        extra = tuple(t for t in extra_types if t not in DEFAULT_TRUSTED_TYPES)
        return cls(trusted_types=(*DEFAULT_TRUSTED_TYPES, *extra), allow_pickle=allow_pickle)

    def untrusted(self, asked: Iterable[str]) -> list[str]:
        """The types in ``asked`` this policy does not trust, sorted."""
        return sorted(set(asked) - set(self.trusted_types))


#: Skops only, with the default trusted types.
DEFAULT_POLICY = LoadPolicy()


@dataclass(frozen=True, kw_only=True)
class ResolvedVersion:
    """A concrete registered version: what "production" meant when the run started."""

    name: str
    version: str
    how: How
    run_id: str | None
    model_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    #: When the version was registered (None when built by hand): an undeclared training window ends then.
    created: datetime | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def identity(self) -> str:
        """What a written score records as its model: the version number, then the logged model (or run) it
        came from, so version 1 of another registry is not mistaken for this one: ``"3/m-0a1b…"``."""
        origin = self.model_id or self.run_id
        return f"{self.version}/{origin}" if origin else self.version

    def reference_deciles(self) -> list[float] | None:
        raw = self.tags.get(TAG_REFERENCE)
        return [float(x) for x in json.loads(raw)] if raw else None

    def reference_shares(self) -> list[float] | None:
        """What the reference holds through each of its deciles; None for versions trained before it was kept."""
        raw = self.tags.get(TAG_REFERENCE_SHARES)
        return [float(x) for x in json.loads(raw)] if raw else None


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A scikit-learn pipeline with the feature columns its signature names, in order."""

    resolved: ResolvedVersion
    pipeline: Any
    input_names: list[str]
    timings: dict[str, float]

    def predict_scores(self, features: pd.DataFrame) -> Any:
        return self.pipeline.predict_proba(features[self.input_names])[:, 1]


Verdict = Literal["a_better", "b_better", "indistinguishable", "not_enough_data", "unavailable"]


@dataclass(frozen=True, kw_only=True)
class LiveEvidence:
    """What a live comparison of two versions on the same leads said (``a``: production, ``b``: the candidate),
    as `Registry.promote` takes it from a ``live_check``: a ``verdict`` and the figures in words (``summary``).

    ``not_enough_data`` and ``unavailable`` (no SQL store, an error) decide nothing: the holdout rule does.

    >>> LiveEvidence(verdict="a_better", summary="ROC AUC 0.19 vs 0.81").decided
    True
    >>> LiveEvidence(verdict="unavailable", summary="no SQL store (DATABASE_URL)").decided
    False
    """

    verdict: Verdict
    summary: str

    @property
    def decided(self) -> bool:
        return self.verdict in ("a_better", "b_better", "indistinguishable")


def _check_loadable(
    resolved: ResolvedVersion, flavors: dict[str, Any] | None, signature: Any, *, policy: LoadPolicy
) -> None:
    """Refuse, before loading anything, a version the job cannot or must not load."""
    if signature is None:
        raise ModelError(
            f"{resolved.uri} has no signature, so its feature columns are unknown",
            hint="re-register it with `lead-scorer train` or `registry import-joblib`",
        )
    flavor = (flavors or {}).get("sklearn")
    if flavor is None:
        raise ModelError(
            f"{resolved.uri} is not a scikit-learn model", hint="register the pipeline with mlflow.sklearn"
        )
    fmt = flavor.get("serialization_format")
    if fmt != "skops":
        if not policy.allow_pickle:
            raise ModelError(
                f"{resolved.uri} is serialized with {fmt}, and loading a pickle runs whatever code it contains",
                hint="re-register it in the skops format (`lead-scorer registry import-joblib PATH --trust`), "
                "or, if you trust it, set LEAD_SCORER_ALLOW_PICKLE=true",
            )
        return
    extra = policy.untrusted(flavor.get("skops_trusted_types") or [])
    if extra:
        raise ModelError(
            f"{resolved.uri} asks to trust types the job does not allow: {', '.join(extra)}",
            hint="add them to LEAD_SCORER_SKOPS_TRUSTED_TYPES if you trust them",
        )


def _why(message: str, *, timeout_s: float) -> str | None:
    """The cause in a few words, from the long text requests/urllib3 produce."""
    for needle, reason in (
        ("refused", "connection refused"),
        ("timed out", f"no answer within {timeout_s:.0f} s"),
        ("Failed to resolve", "unknown host name"),
        ("not known", "unknown host name"),
        ("SSL", "TLS error; see MLFLOW_TRACKING_SERVER_CERT_PATH or MLFLOW_TRACKING_INSECURE_TLS"),
    ):
        if needle in message:
            return reason
    return None


def _is_missing(exc: MlflowException) -> bool:
    # A missing alias is INVALID_PARAMETER_VALUE on some stores, RESOURCE_DOES_NOT_EXIST on others.
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in (exc.message or "")
    )


def _model_id(mv: ModelVersion) -> str | None:
    mid = getattr(mv, "model_id", None)
    if mid:
        return str(mid)
    source = mv.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def _raise_if_local_disk(exc: BaseException, what: str) -> None:
    """A full, over-quota or read-only TMPDIR, where MLflow downloads the model, used to read "cannot reach the
    MLflow tracking server" (exit 4). MLflow's own download error lists each file's OSError in its message."""
    codes = [e.errno for e in _chain(exc) if isinstance(e, OSError) and e.errno is not None]
    codes += [int(n) for n in re.findall(r"\[Errno (\d+)\]", str(exc))]
    local = next((code for code in codes if code in _LOCAL_DISK), None)
    if local is None:
        return
    raise SettingsError(
        f"the local disk failed while {what}: {os.strerror(local)} (under {tempfile.gettempdir()})",
        hint="MLflow downloads the model into TMPDIR: free space there, or set TMPDIR to a writable directory "
        "with room for the model (a few MB)",
    ) from exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _probe_database_store(uri: str, *, timeout_s: int = 5) -> None:
    """A database-backed tracking store (``postgresql://…``) is opened once, with a connect timeout, before
    MLflow opens it: MLflow's own attempt retries ten times over ~100 s, then raised SQLAlchemy's error
    (exit 70 as a bug). A missing database or a wrong password is now a clear error within seconds."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("postgresql", "mysql"):
        return
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(uri, connect_args={"connect_timeout": timeout_s}, poolclass=sa.pool.NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except ImportError as exc:  # no driver for this scheme (postgresql:// means psycopg2 to SQLAlchemy)
        raise SettingsError(
            f"MLFLOW_TRACKING_URI names a database this installation has no driver for: {exc.name or exc}",
            hint="write postgresql+psycopg://… (the driver lead-scorer installs), or point MLFLOW_TRACKING_URI "
            "at the MLflow server (http(s)://…)",
        ) from exc
    except Exception as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise ServiceUnavailable(
            f"cannot open the MLflow tracking database: {redact(first[0] if first else type(exc).__name__)}",
            hint="check MLFLOW_TRACKING_URI: the database must exist and accept its credentials (it is the "
            "MLflow server's store; the job usually talks to the server over http(s)://)",
        ) from exc


class Registry:
    """Resolve, load, register, promote and roll back versions of one registered model.

    `resolve` follows a pin, then the alias ``production``, then the stage ``Production``; `load` downloads
    the version once, and the job keeps it pinned for the whole run.
    """

    def __init__(
        self, *, tracking_uri: str, model_name: str = "lead_scoring_pipeline", challenger_alias: str = CHALLENGER_ALIAS
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        _probe_database_store(tracking_uri)
        self.challenger_alias = challenger_alias
        # Every call goes through this client, which holds its own URIs; the few that only MLflow's fluent
        # API offers run inside `_fluent`, which sets the process-wide URI for the call and restores it.
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @contextmanager
    def _fluent(self) -> Iterator[None]:
        """MLflow's fluent API, pointed at this registry's server for the calls inside.

        Used only where MLflow offers nothing else: ``start_run``/``log_model`` (no client method logs a model
        in a flavor and registers it), and ``download_artifacts``/``get_model_info`` on a ``models:/`` URI
        (MLflow 3.17 resolves one through the process-wide registry URI, whatever ``registry_uri`` it is
        given: ``ModelsArtifactRepository._get_model_uri_infos``). Those read the global tracking URI, so it
        is set here and put back after, with the ``MLFLOW_TRACKING_URI`` variable MLflow rewrites alongside:
        a Registry leaves no global behind, and two in one process never write to each other's server. Not
        for concurrent use from several threads (the URI is one per process).
        """
        # MLflow's private global: the public getter cannot tell "not set" from the default it falls back to.
        from mlflow.tracking._tracking_service import utils as tracking_utils

        before_uri = tracking_utils._tracking_uri
        before_env = os.environ.get(_TRACKING_ENV)
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            yield
        finally:
            # None: back to "not set"; mlflow handles it (and unsets MLFLOW_TRACKING_URI), its annotation omits it.
            mlflow.set_tracking_uri(before_uri)  # type: ignore[arg-type]
            if before_env is None:
                os.environ.pop(_TRACKING_ENV, None)
            else:
                os.environ[_TRACKING_ENV] = before_env

    def ping(self, *, timeout_s: float = 10.0) -> None:
        """Fail fast when an HTTP tracking server is down, instead of after MLflow's long retries."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        from mlflow.utils.rest_utils import http_request

        # MLflow's own client: the same credentials, TLS settings (MLFLOW_TRACKING_INSECURE_TLS,
        # _SERVER_CERT_PATH) and proxies as every later call, but no retries and a short timeout.
        try:
            resp = http_request(
                self.client._tracking_client.store.get_host_creds(),
                "/health",
                "GET",
                max_retries=0,
                timeout=timeout_s,
                raise_on_status=False,
            )
        except Exception as exc:
            reason = _why(str(exc), timeout_s=timeout_s) or type(exc).__name__
        else:
            if resp.status_code < 500:  # 200, or 401/403: the server answered; credentials are checked later
                return
            reason = f"HTTP {resp.status_code}"
        raise ServiceUnavailable(
            f"cannot reach the MLflow tracking server: {reason} (GET /health)",
            hint="check MLFLOW_TRACKING_URI and that the server is up",
        )

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        try:
            yield
        except LeadScorerError:
            raise
        except MlflowException as exc:
            if _is_missing(exc):
                raise
            _raise_if_local_disk(exc, what)
            first = redact(exc.message.splitlines()[0] if exc.message else str(exc))
            status = exc.get_http_status_code()
            if status == 403 and "host header" in first.lower():
                # MLflow >= 3.5 refuses requests whose Host it was not told to accept: the server's setting.
                raise ServiceUnavailable(
                    f"MLflow refused {what}: {first}",
                    hint="the server does not accept the host name in MLFLOW_TRACKING_URI: add it to the "
                    "server's MLFLOW_ALLOWED_HOSTS (or --allowed-hosts)",
                ) from exc
            if status in (401, 403):
                raise ServiceUnavailable(
                    f"MLflow refused {what}: {first}",
                    hint="check MLFLOW_TRACKING_USERNAME/PASSWORD and that user's permissions",
                ) from exc
            if "API request to" in first:  # connection errors, after MLflow's own retries
                raise ServiceUnavailable(
                    f"cannot reach the MLflow tracking server while {what}: {first}",
                    hint="check MLFLOW_TRACKING_URI and that the server is up (GET /health)",
                ) from exc
            raise ServiceError(f"MLflow refused {what}: {first}", hint="the message above is MLflow's own") from exc
        except OSError as exc:  # requests/urllib3 connection errors, or the local disk
            _raise_if_local_disk(exc, what)
            raise ServiceUnavailable(
                f"cannot reach the MLflow tracking server while {what}: {type(exc).__name__}",
                hint="check MLFLOW_TRACKING_URI and that the server is up (GET /health)",
            ) from exc

    def tracking_calls(self, what: str) -> contextlib.AbstractContextManager[None]:
        """MLflow calls made by a caller with `client` (an evaluation's run), with the registry's errors:
        ``with registry.tracking_calls("recording the evaluation"): registry.client.log_batch(...)``."""
        return self._calls(what)

    # -- resolve -------------------------------------------------------------------------------
    def resolve(self, *, pin: str | None = None) -> ResolvedVersion:
        """What "production" means now: an explicit pin, else alias ``production``, else stage ``Production``."""
        name = self.model_name
        with self._calls("resolving the production model"):
            if pin is not None:
                return self._version(str(pin))
            try:
                model = self.client.get_registered_model(name)
            except MlflowException as exc:
                if not _is_missing(exc):
                    raise
                raise NoProductionVersion(
                    f"no registered model named {name}",
                    hint="train and register one: `lead-scorer train --promote`",
                ) from exc
            aliased = (model.aliases or {}).get(ALIAS)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                staged = self.client.get_latest_versions(name, stages=[STAGE])
            stage_mv = max(staged, key=lambda mv: int(mv.version)) if staged else None
            staged_version = str(stage_mv.version) if stage_mv is not None else None
            ours = (model.tags or {}).get(TAG_LAST_PROMOTED)
            if stage_mv is not None and (
                aliased is None or (staged_version != str(aliased) and str(aliased) == ours != staged_version)
            ):
                # No alias, or the alias is where lead-scorer left it and only the stage moved: a promotion
                # made in the UI's legacy stage view.
                return self._resolved(stage_mv, "stage")
            if aliased is not None:
                return self._resolved(self.client.get_model_version(name, str(aliased)), "alias")
        raise NoProductionVersion(
            f"{name} has no production version (no alias '{ALIAS}', no version in stage '{STAGE}')",
            hint="promote one: `lead-scorer registry promote VERSION`, or pin with --model-version",
        )

    def resolve_challenger(self) -> ResolvedVersion | None:
        """The version the challenger alias points at, or None when no version carries it (or there is no
        registered model yet): a run without a challenger is the normal case, not an error."""
        with self._calls("resolving the challenger"):
            try:
                mv = self.client.get_model_version_by_alias(self.model_name, self.challenger_alias)
            except MlflowException as exc:
                if _is_missing(exc):
                    return None
                raise
            return self._resolved(mv, "challenger")

    def _resolved(self, mv: ModelVersion, how: How) -> ResolvedVersion:
        return ResolvedVersion(
            name=mv.name,
            version=str(mv.version),
            how=how,
            run_id=mv.run_id,
            model_id=_model_id(mv),
            source=mv.source or "",
            tags=dict(mv.tags or {}),
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC) if mv.creation_timestamp else None,
        )

    # -- load ----------------------------------------------------------------------------------
    def load(self, resolved: ResolvedVersion, *, policy: LoadPolicy = DEFAULT_POLICY) -> LoadedModel:
        """Download the version once and load its scikit-learn pipeline and signature.

        Only skops-serialized versions load, and only if every type they ask to trust is in the ``policy``'s
        trusted types; a pickle runs code when loaded, so it needs ``policy.allow_pickle``.
        """
        timings: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            with self._calls(f"downloading {resolved.uri}"), self._fluent():
                local = mlflow.artifacts.download_artifacts(artifact_uri=resolved.uri, dst_path=tmp)
            timings["download_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            meta = Model.load(local)
            _check_loadable(resolved, meta.flavors, meta.signature, policy=policy)
            try:
                pipeline = mlflow.sklearn.load_model(local)
            except Exception as exc:  # a local problem (library versions, a broken file), not the server
                raise ModelError(
                    f"{resolved.uri} could not be loaded: {type(exc).__name__}: {redact(str(exc))[:300]}",
                    hint="the job's scikit-learn/skops must be able to read what training saved; "
                    "retrain, or pin a version that loads (--model-version)",
                ) from exc
            timings["load_s"] = time.perf_counter() - t0
        if not hasattr(pipeline, "predict_proba"):
            raise ModelError(f"{resolved.uri} has no predict_proba", hint="register a classifier pipeline")
        return LoadedModel(
            resolved=resolved,
            pipeline=pipeline,
            input_names=list(meta.signature.inputs.input_names()),
            timings=timings,
        )

    # -- register ------------------------------------------------------------------------------
    def ensure_experiment(
        self, name: str, *, artifact_location: str | None = None, description: str | None = None
    ) -> str:
        """The experiment's id, creating it (with ``artifact_location`` and a ``description`` if given) when
        missing."""
        with self._calls(f"opening experiment {name}"):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return str(exp.experiment_id)
            tags = {"mlflow.note.content": description} if description else None
            return str(self.client.create_experiment(name, artifact_location=artifact_location, tags=tags))

    def register(
        self,
        pipeline: Any,
        *,
        example: pd.DataFrame,
        experiment: str,
        metrics: dict[str, float],
        params: dict[str, Any],
        version_tags: dict[str, str],
        run_name: str = "train",
        artifact_location: str | None = None,
        skops_trusted_types: list[str] | None = None,
        description: str = "",
        experiment_description: str | None = None,
    ) -> ResolvedVersion:
        """Log ``pipeline`` (skops, float64 signature, input example) and register a new version.

        Holdout ``metrics`` are logged on the run and copied to version tags (``holdout_<name>``)
        so promotion can compare versions without reading runs.
        """
        example = example.astype("float64")
        proba = pipeline.predict_proba(example.head(50))[:, 1]
        with self._calls("registering the model"):
            exp_id = self.ensure_experiment(
                experiment, artifact_location=artifact_location, description=experiment_description
            )
            with self._fluent(), _quiet_without_pip(), mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
                # Under `mlflow run` this is that run (MLFLOW_RUN_ID), which already holds the entry point's
                # parameters as typed; MLflow refuses to change a parameter, so keep those.
                taken = self.client.get_run(run.info.run_id).data.params
                mlflow.log_params({k: v for k, v in params.items() if k not in taken})
                mlflow.log_metrics(metrics)
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name=self.model_name,  # the UI lists logged models by name: not every one "model"
                    signature=infer_signature(example, proba),
                    input_example=example.head(5),
                    registered_model_name=self.model_name,
                    serialization_format="skops",
                    skops_trusted_types=skops_trusted_types,
                    pip_requirements=_pip_requirements(),
                )
                version = str(info.registered_model_version)
                mlflow.set_tag("registered_version", version)
            tags = {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6f}" for k, v in metrics.items()} | version_tags
            tags["training_run_id"] = run.info.run_id
            for k, v in tags.items():
                self.client.set_model_version_tag(self.model_name, version, k, v)
            if description:
                self.client.update_model_version(self.model_name, version, description=description)
            if not (self.client.get_registered_model(self.model_name).description or "").strip():
                self.client.update_registered_model(self.model_name, description=MODEL_DESCRIPTION)
            return self._resolved(self.client.get_model_version(self.model_name, version), "pin")

    def rename_run(self, run_id: str, name: str) -> None:
        """Give a run its final name, once what it did is known (training: ``train v3 · 2026-12-06 00:06:26 UTC
        · ROC AUC 0.81``)."""
        with self._calls(f"renaming run {run_id}"):
            self.client.update_run(run_id, name=name)

    def annotate(self, version: str, *, tags: dict[str, str], line: str, replace_prefix: str) -> None:
        """Set ``tags`` on ``version`` and put ``line`` in its description in place of the line that starts
        with ``replace_prefix`` (appended when there is none), so a repeated annotation does not accumulate."""
        with self._calls(f"annotating version {version}"):
            for k, v in tags.items():
                self.client.set_model_version_tag(self.model_name, version, k, v)
            old = self.client.get_model_version(self.model_name, version).description or ""
            kept = [p for p in old.split("\n\n") if p.strip() and not p.startswith(replace_prefix)]
            self.client.update_model_version(self.model_name, version, description="\n\n".join([*kept, line]))

    # -- promote / roll back ---------------------------------------------------------------------
    def _current(self) -> ResolvedVersion | None:
        try:
            return self.resolve()
        except NoProductionVersion:
            return None

    def promote(
        self,
        version: str,
        *,
        actor: str,
        force: bool = False,
        metric: str = "roc_auc",
        policy: LoadPolicy = DEFAULT_POLICY,
        check_inputs: Callable[[list[str]], None] | None = None,
        live_check: Callable[[ResolvedVersion, ResolvedVersion], LiveEvidence] | None = None,
    ) -> tuple[str | None, str]:
        """Make ``version`` production (alias and stage) in ``actor``'s name; returns (previous, new).

        Unless ``force``, refuses a candidate the evidence says is worse than production, and one the job would
        refuse to load (a pickle, types the ``policy`` does not trust, or inputs ``check_inputs`` rejects), so
        a promotion cannot break the next run. The evidence is live when ``live_check(candidate, production)``
        has enough of it (a verdict); otherwise (too few conversions, no SQL store, no check) the holdout
        ``metric``: lower than production's is refused. What decided, and a ``--force``, are recorded on the
        version (tags ``promoted_on``, ``promotion_forced``, and its description line).
        """
        version = str(version)
        with self._calls(f"promoting version {version}"):
            candidate = self._version(version)
            current = self._current()
            previous = current.version if current else None
            if previous == version and current is not None and current.how == "alias":
                return previous, version
            evidence = None
            if current is not None and current.version != version and live_check is not None:
                evidence = live_check(candidate, current)
            decided = evidence is not None and evidence.decided
            refusals: list[str] = []
            if current is not None and evidence is not None and evidence.verdict == "a_better":
                refusals.append(
                    f"version {version} ranks leads significantly worse than production version "
                    f"{current.version} on live data: {evidence.summary}"
                )
            elif current is not None and not decided:
                refusals += self._worse_on_holdout(candidate, current, metric=metric)
            if not force and refusals:
                raise PromotionRefused(
                    refusals[0], hint="keep production; or promote anyway with --force (recorded on the version)"
                )
            if not force:
                self._refuse_unloadable(candidate, policy=policy, check_inputs=check_inputs)
            basis = "live" if decided else "holdout"
            why = f"on live evidence: {evidence.summary}" if decided and evidence is not None else ""
            if force and refusals:
                why = f"with --force, past this refusal: {refusals[0]}"
            elif force:
                why = f"with --force{'; ' + why if why else ''}"
            extra = {TAG_PROMOTED_ON: basis, TAG_PROMOTION_FORCED: str(force).lower()}
            self._make_production(version, actor=actor, previous=previous, why=why, tags=extra)
            return previous, version

    def _version(self, version: str) -> ResolvedVersion:
        try:
            return self._resolved(self.client.get_model_version(self.model_name, version), "pin")
        except MlflowException as exc:
            if _is_missing(exc):
                raise NoProductionVersion(
                    f"version {version} of {self.model_name} does not exist",
                    hint="list versions with `lead-scorer registry list`",
                ) from exc
            raise

    def _worse_on_holdout(self, candidate: ResolvedVersion, current: ResolvedVersion, *, metric: str) -> list[str]:
        """Why a candidate whose holdout ``metric`` is below production's (or unknown, when production's is
        known) is refused; empty when it is not."""
        key = f"{METRIC_TAG_PREFIX}{metric}"
        cur, cand = current.tags.get(key), candidate.tags.get(key)
        if cur is not None and (cand is None or float(cand) < float(cur)):
            return [
                f"version {candidate.version} has {metric} {cand or 'unknown'} on its holdout, lower than "
                f"production version {current.version}'s {cur}"
            ]
        return []

    def _refuse_unloadable(
        self,
        candidate: ResolvedVersion,
        *,
        policy: LoadPolicy,
        check_inputs: Callable[[list[str]], None] | None,
    ) -> None:
        """A candidate the job would refuse to load, read from its MLmodel file (nothing is downloaded)."""
        with self._fluent():
            info = mlflow.models.get_model_info(candidate.uri)
        try:
            _check_loadable(candidate, info.flavors, info.signature, policy=policy)
            if check_inputs is not None:
                check_inputs(list(info.signature.inputs.input_names()))
        except ModelError as exc:
            raise PromotionRefused(
                f"version {candidate.version} would not load in the job: {exc.message}",
                hint=f"{exc.hint}; or promote anyway with --force" if exc.hint else "promote with --force",
            ) from exc

    def _make_production(
        self,
        version: str,
        *,
        actor: str,
        previous: str | None,
        rolled_back_from: str | None = None,
        why: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        """Alias, stage and the registered model's tag; then the version's stamp (who, when, what it replaced)
        in its tags and its description."""
        self.client.set_registered_model_alias(self.model_name, ALIAS, version)
        self._set_stage(version)
        self.client.set_registered_model_tag(self.model_name, TAG_LAST_PROMOTED, version)
        stamp = {TAG_PROMOTED_BY: actor, TAG_PROMOTED_AT: datetime.now(UTC).isoformat(timespec="milliseconds")}
        stamp |= tags or {}
        if rolled_back_from is not None:
            stamp[TAG_ROLLED_BACK_FROM] = rolled_back_from
        elif previous is not None and previous != version:
            stamp[TAG_PREVIOUS] = previous
        for k, v in stamp.items():
            self.client.set_model_version_tag(self.model_name, version, k, v)
        described = self.client.get_model_version(self.model_name, version).description or ""
        line = (
            f"Promoted to production by {actor} at {stamp[TAG_PROMOTED_AT][:16]} UTC"
            + (f", replacing version {previous}" if previous and previous != version else "")
            + (" (a rollback)" if rolled_back_from is not None else "")
            + (f", {why}" if why else "")
            + ("" if why.endswith(".") else ".")
        )
        self.client.update_model_version(self.model_name, version, description=f"{described}\n\n{line}".strip())
        if previous and previous != version:
            # The replaced version says so too: its page otherwise still read "promoted to production".
            left = self.client.get_model_version(self.model_name, previous).description or ""
            gone = (
                f"Replaced in production by version {version} at {stamp[TAG_PROMOTED_AT][:16].replace('T', ' ')} UTC "
                f"({actor}" + (", a rollback" if rolled_back_from is not None else "") + ")."
            )
            self.client.update_model_version(self.model_name, previous, description=f"{left}\n\n{gone}".strip())

    def _set_stage(self, version: str) -> None:
        """Mirror the alias in the legacy stage, so either view of the UI shows production.

        Others in Production are archived one by one: ``archive_existing_versions=True`` fails on a
        PostgreSQL-backed MLflow 3.17 server (``operator does not exist: integer <> character varying``).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            for other in self.client.get_latest_versions(self.model_name, stages=[STAGE]):
                if str(other.version) != version:
                    self.client.transition_model_version_stage(self.model_name, str(other.version), "Archived")
            self.client.transition_model_version_stage(self.model_name, version, STAGE)

    # -- challenger ----------------------------------------------------------------------------------
    def challenge(
        self,
        version: str,
        *,
        actor: str,
        force: bool = False,
        policy: LoadPolicy = DEFAULT_POLICY,
        check_inputs: Callable[[list[str]], None] | None = None,
    ) -> str | None:
        """Point the challenger alias at ``version`` in ``actor``'s name; returns the version it left (or None).

        Unless ``force``, refuses (`PromotionRefused`) a version the job would refuse to load, as `promote`
        does: a challenger the run cannot load is only reported, so it is better caught here. The version's tags
        and description say who made it challenger and when.
        """
        version = str(version)
        with self._calls(f"making version {version} challenger"):
            candidate = self._version(version)
            before = self.resolve_challenger()
            if not force:
                self._refuse_unloadable(candidate, policy=policy, check_inputs=check_inputs)
            self.client.set_registered_model_alias(self.model_name, self.challenger_alias, version)
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            self.client.set_model_version_tag(self.model_name, version, TAG_CHALLENGER_BY, actor)
            self.client.set_model_version_tag(self.model_name, version, TAG_CHALLENGER_AT, at)
            described = self.client.get_model_version(self.model_name, version).description or ""
            line = f"Made {self.challenger_alias} by {actor} at {at[:16]} UTC" + (
                f", replacing version {before.version}." if before and before.version != version else "."
            )
            self.client.update_model_version(self.model_name, version, description=f"{described}\n\n{line}".strip())
        return before.version if before else None

    def clear_challenger(self) -> str | None:
        """Remove the challenger alias; returns the version that carried it (None: there was none)."""
        before = self.resolve_challenger()
        if before is not None:
            with self._calls("clearing the challenger"):
                self.client.delete_registered_model_alias(self.model_name, self.challenger_alias)
        return before.version if before else None

    def rollback(self, *, actor: str) -> tuple[str, str]:
        """Restore the version that was production before the current one, in ``actor``'s name; returns
        (from, to). No holdout or load check: the version passed them when it was promoted."""
        current = self.resolve()
        last = self._last_promoted(besides=current.version)
        ours = current.tags.get(TAG_PROMOTED_AT)
        if last is not None and (ours is None or ours < last[0]):
            # Production was moved outside lead-scorer (the MLflow UI writes no tags): undo that move.
            target: str | None = last[1]
        else:
            target = current.tags.get(TAG_PREVIOUS) or (last[1] if last else None)
        if not target:
            raise PromotionRefused(
                f"production version {current.version} records no previous production version",
                hint="promote the version you want explicitly: `lead-scorer registry promote VERSION --force`",
            )
        with self._calls(f"rolling back to version {target}"):
            self._version(target)
            self._make_production(target, actor=actor, previous=current.version, rolled_back_from=current.version)
        return current.version, target

    def _last_promoted(self, *, besides: str) -> tuple[str, str] | None:
        """(promoted_at, version) of the version lead-scorer promoted most recently, other than ``besides``."""
        with self._calls("listing versions"):
            promoted = [
                (mv.tags[TAG_PROMOTED_AT], int(mv.version))
                for mv in self.client.search_model_versions(f"name='{self.model_name}'")
                if (mv.tags or {}).get(TAG_PROMOTED_AT) and str(mv.version) != besides
            ]
        if not promoted:
            return None
        at, version = max(promoted)
        return at, str(version)

    def versions(self) -> list[dict[str, Any]]:
        """Every version, newest first, with its stage, aliases, holdout ROC AUC and newest live one."""
        with self._calls("listing versions"):
            try:
                aliases = self.client.get_registered_model(self.model_name).aliases or {}
            except MlflowException as exc:
                if _is_missing(exc):
                    return []
                raise
            by_version: dict[str, list[str]] = {}
            for alias, v in aliases.items():
                by_version.setdefault(str(v), []).append(alias)
            rows = []
            for mv in self.client.search_model_versions(f"name='{self.model_name}'"):
                tags = dict(mv.tags or {})
                rows.append(
                    {
                        "version": str(mv.version),
                        "stage": mv.current_stage,
                        "aliases": sorted(by_version.get(str(mv.version), [])),
                        "roc_auc": tags.get(f"{METRIC_TAG_PREFIX}roc_auc"),
                        # The newest live figures (`lead-scorer evaluate`, the daily check), when measured.
                        "live_roc_auc": tags.get("live_roc_auc"),
                        "live_roc_auc_ci": tags.get("live_roc_auc_ci"),
                        "live_as_of": tags.get("live_as_of"),
                        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
                        "promoted_by": tags.get(TAG_PROMOTED_BY),
                        "run_id": mv.run_id,
                    }
                )
        return sorted(rows, key=lambda r: int(r["version"]), reverse=True)
