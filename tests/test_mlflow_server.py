"""MLflow in production: the job, training and the registry commands against a real `mlflow server` over HTTP.

The session's server (SQLite backend, proxied artifacts; ``mlflow_server`` in tests/conftest.py) serves the
module; tests that kill a server or need basic auth start their own. Each test uses its own model name and
experiments, so none sees another's registry state.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from lead_errors import ModelError
from models import FeatureCatalog, make_pipeline
from registry import Registry
from scorer.app import run_scoring
from scorer.cli import app
from scorer.edge import run_options, train_options
from scorer.mlproject import ParameterError, to_argv
from scorer.stats import ScoreStats
from scorer.trainer import train_model
from tests.jobproc import LEAD_SCORER, Job, job_env
from tests.mlflow_server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerURL, start_mlflow_server
from tests.support import Mlflow, execute, make_product, snapshot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(mlflow_server: ServerURL) -> ServerURL:
    return mlflow_server  # the session's (tests/conftest.py)


def _settings(url: str, db: str, **overrides: Any) -> Any:
    return Mlflow(tracking_uri=url, artifacts="").settings(db, **overrides)


def _runs(settings: Any) -> list[Any]:
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.scoring_experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]) if exp else []


def _cli(args: list[str], settings: Any, **env: str) -> Any:
    base = {
        "LEAD_SCORER_LOG_LEVEL": "WARNING",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_TRAINING_EXPERIMENT": settings.training_experiment,
    }
    return CliRunner().invoke(app, args, env=base | env, catch_exceptions=False)


def _versions_in_table(url: str) -> set[str]:
    return {v.split("/")[0] for v in snapshot(url)["lead_score_model_version"].dropna().astype(str)}


# -- promotion, the MLflow UI, rollback ---------------------------------------------------------------------------


def test_promote_ui_alias_move_and_rollback_each_reach_the_next_run(server, sqlite_url):
    make_product(sqlite_url, users=500, seed=41)
    settings = _settings(server, sqlite_url, batch_size=200)
    client = MlflowClient(tracking_uri=server)
    train_model(train_options(settings))
    promoted = _cli(["registry", "promote", "1", "--actor", "ana"], settings)
    assert promoted.exit_code == 0 and "production is now version 1 (was none)" in promoted.output
    summaries = [run_scoring(run_options(settings))]

    train_model(train_options(settings, seed=1, top_event_types=8))
    client.set_model_version_tag(settings.model_name, "2", "holdout_roc_auc", "0.999999")  # a better candidate
    assert _cli(["registry", "promote", "2"], settings).exit_code == 0
    summaries.append(run_scoring(run_options(settings)))
    assert _versions_in_table(sqlite_url) == {"2"}

    # Someone trains version 3 and moves the alias in the MLflow UI (the same call the UI makes).
    train_model(train_options(settings, seed=2, top_event_types=6))
    client.set_registered_model_alias(settings.model_name, "production", "3")
    summaries.append(run_scoring(run_options(settings)))
    assert _versions_in_table(sqlite_url) == {"3"}

    # Rolling back undoes the UI's move: version 2, which lead-scorer promoted last, not version 1.
    back = _cli(["registry", "rollback"], settings)
    assert back.exit_code == 0 and "production is now version 2 (was 3)" in back.output, back.output
    summaries.append(run_scoring(run_options(settings)))
    assert _versions_in_table(sqlite_url) == {"2"}

    assert [s.users_scored for s in summaries] == [500, 500, 500, 500]
    runs = _runs(settings)
    assert [r.data.tags["model_version"] for r in runs] == ["1", "2", "3", "2"]
    assert [r.data.metrics["users_scored"] for r in runs] == [500, 500, 500, 500]
    assert {r.data.tags["model_resolved_by"] for r in runs} == {"alias"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    v1 = client.get_model_version(settings.model_name, "1").tags
    v2 = client.get_model_version(settings.model_name, "2").tags
    assert v1["promoted_by"] == "ana" and v1["promoted_at"]
    assert v2["previous_production_version"] == "1" and v2["rolled_back_from"] == "3"


def test_a_stage_moved_in_the_ui_after_a_promotion_is_honoured(server, sqlite_url):
    make_product(sqlite_url, users=150, seed=52)
    settings = _settings(server, sqlite_url)
    train_model(train_options(settings, promote=True))  # alias and stage on version 1
    train_model(train_options(settings, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        MlflowClient(tracking_uri=server).transition_model_version_stage(
            settings.model_name, "2", "Production", archive_existing_versions=False
        )
    summary = run_scoring(run_options(settings))
    assert summary.model_version == "2" and summary.users_scored == 150
    assert _runs(settings)[0].data.tags["model_resolved_by"] == "stage"
    assert _versions_in_table(sqlite_url) == {"2"}


def test_runs_link_to_their_model_and_log_drift_and_tiers(server, sqlite_url):
    make_product(sqlite_url, users=400, seed=42)
    settings = _settings(server, sqlite_url, hot_threshold=0.6, warm_threshold=0.3)
    outcome = train_model(train_options(settings, promote=True))
    assert outcome.version.source.startswith("models:/m-")
    run_scoring(run_options(settings))
    # Half the visitors go quiet: the next run's scores shift, and the PSI against the first run says so.
    execute(sqlite_url, "DELETE FROM events WHERE visitor_id IN (SELECT visitor_id FROM users WHERE user_id % 2 = 0)")
    run_scoring(run_options(settings.model_copy(update={"select": "all"})))

    first, second = _runs(settings)
    client = MlflowClient(tracking_uri=server)
    assert client.get_run(first.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    model_id = first.data.tags["model_id"]
    # search_runs leaves model inputs out; get_run has them.
    assert [m.model_id for m in client.get_run(first.info.run_id).inputs.model_inputs] == [model_id]
    linked = {(m.key, m.run_id) for m in client.get_logged_model(model_id).metrics or []}
    assert ("users_scored", first.info.run_id) in linked and ("users_scored", second.info.run_id) in linked

    scores = snapshot(sqlite_url)["lead_score"].to_numpy(dtype=float)
    m = second.data.metrics
    # Shares and indices are logged to 4 decimals.
    assert m["tier_hot_share"] == pytest.approx((scores >= 0.6).mean(), abs=1e-4)
    assert m["tier_warm_share"] == pytest.approx(((scores >= 0.3) & (scores < 0.6)).mean(), abs=1e-4)
    assert m["tier_hot_share"] + m["tier_warm_share"] + m["tier_cold_share"] == pytest.approx(1.0, abs=3e-4)
    assert "score_psi_reference" in first.data.metrics and "score_psi_previous" not in first.data.metrics
    stats = ScoreStats()
    stats.add(scores)
    first_deciles = [first.data.metrics[f"score_p{p}"] for p in range(10, 100, 10)]
    # Against what the first run's population held through its deciles (its tag), not 10 % each.
    first_shares = json.loads(first.data.tags["score_shares"])
    assert len(first_shares) == 9 and first_shares == sorted(first_shares)
    assert (
        m["score_psi_previous"] == pytest.approx(stats.psi(first_deciles, first_shares), abs=2e-3)
        and m["score_psi_previous"] > 0.05
    )
    assert second.data.tags["score_psi_previous_run"] == first.info.run_id
    tags = client.get_model_version(settings.model_name, "1").tags
    reference, shares = json.loads(tags["reference_deciles"]), json.loads(tags["reference_shares"])
    assert m["score_psi_reference"] == pytest.approx(stats.psi(reference, shares), abs=1e-4)


def test_lower_holdout_auc_is_refused_unless_forced(server, sqlite_url):
    make_product(sqlite_url, users=300, seed=43)
    settings = _settings(server, sqlite_url)
    train_model(train_options(settings, promote=True))
    train_model(train_options(settings, seed=2))
    client = MlflowClient(tracking_uri=server)
    v1_auc = float(client.get_model_version(settings.model_name, "1").tags["holdout_roc_auc"])
    client.set_model_version_tag(settings.model_name, "2", "holdout_roc_auc", f"{v1_auc - 0.05:.6f}")

    refused = _cli(["registry", "promote", "2"], settings)
    assert refused.exit_code == 7
    assert "lower than production version 1" in refused.output and "--force" in refused.output
    assert run_scoring(run_options(settings)).model_version == "1"

    forced = _cli(["registry", "promote", "2", "--force"], settings)
    assert forced.exit_code == 0
    tags = client.get_model_version(settings.model_name, "2").tags
    assert tags["previous_production_version"] == "1" and tags["promoted_by"]
    assert run_scoring(run_options(settings)).model_version == "2"


def test_legacy_stage_set_in_the_ui_is_honoured(server, sqlite_url):
    make_product(sqlite_url, users=150, seed=44)
    settings = _settings(server, sqlite_url)
    train_model(train_options(settings))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        MlflowClient(tracking_uri=server).transition_model_version_stage(settings.model_name, "1", "Production")
    summary = run_scoring(run_options(settings))
    assert summary.users_scored == 150 and summary.model_version == "1"
    assert _runs(settings)[0].data.tags["model_resolved_by"] == "stage"


def test_a_promotion_during_a_run_does_not_change_its_model(server, sqlite_url):
    make_product(sqlite_url, users=600, seed=45)
    settings = _settings(server, sqlite_url, batch_size=100)
    train_model(train_options(settings, promote=True))
    train_model(train_options(settings, seed=3))
    registry = Registry(tracking_uri=server, model_name=settings.model_name)

    def promote_v2_once(report: Any) -> None:
        if report.step == 1:
            registry.promote("2", force=True, actor="test")

    during = run_scoring(run_options(settings), on_batch=promote_v2_once)
    assert during.users_scored == 600 and during.model_version == "1"
    assert _versions_in_table(sqlite_url) == {"1"}
    after = run_scoring(run_options(settings))
    assert after.model_version == "2" and after.users_scored == 600
    assert [r.data.tags["model_version"] for r in _runs(settings)] == ["1", "2"]


# -- safe loading and the legacy import ---------------------------------------------------------------------------


def _legacy_pipeline(path: Path, columns: list[str]) -> Path:
    """A pipeline saved with joblib, the way the original job's lead_scoring_pipeline_v1.joblib was."""
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.poisson(3, (300, len(columns))).astype(float), columns=columns)
    pipe = make_pipeline().fit(x, (x[columns[0]] + rng.normal(0, 2, 300) > 3).astype(int))
    joblib.dump(pipe, path)
    return path


def test_import_joblib_needs_trust_then_registers_a_skops_version_the_job_uses(server, sqlite_url, tmp_path):
    make_product(sqlite_url, users=200, seed=46)
    settings = _settings(server, sqlite_url)
    names = FeatureCatalog().feature_names(event_types=["pricing_view", "page_view"])
    legacy = _legacy_pipeline(tmp_path / "lead_scoring_pipeline_v1.joblib", names)
    registry = Registry(tracking_uri=server, model_name=settings.model_name)

    untrusted = _cli(["registry", "import-joblib", str(legacy)], settings)
    assert untrusted.exit_code == 2
    assert "runs any code" in untrusted.output and "--trust" in untrusted.output
    assert registry.versions() == []

    imported = _cli(["registry", "import-joblib", str(legacy), "--trust"], settings)
    assert imported.exit_code == 0, imported.output
    assert "version 1 (skops)" in imported.output
    # Where version 1's files are, asked of this server (not of MLflow's process-wide URI: nothing sets it).
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    mlmodel = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{client.get_model_version_download_uri(settings.model_name, '1')}/MLmodel",
        dst_path=str(tmp_path / "dl"),
        tracking_uri=server,
    )
    assert "serialization_format: skops" in Path(mlmodel).read_text()

    # The skops copy predicts exactly what the joblib original does.
    probe = pd.DataFrame(np.random.default_rng(5).poisson(4, (50, len(names))).astype(float), columns=names)
    copy = registry.load(registry.resolve(pin="1"))
    np.testing.assert_array_equal(copy.predict_scores(probe), joblib.load(legacy).predict_proba(probe)[:, 1])

    assert _cli(["registry", "promote", "1", "--force"], settings).exit_code == 0
    summary = run_scoring(run_options(settings))  # the default: skops only, and it loads
    assert summary.users_scored == 200 and summary.model_version == "1"


def test_a_model_asking_to_trust_more_types_loads_only_when_allowed(server, sqlite_url, tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline as sk_pipeline

    make_product(sqlite_url, users=120, seed=53)
    settings = _settings(server, sqlite_url)
    names = FeatureCatalog().feature_names(event_types=["pricing_view"])
    rng = np.random.default_rng(2)
    x = pd.DataFrame(rng.poisson(3, (300, len(names))).astype(float), columns=names)
    pipe = sk_pipeline(HistGradientBoostingClassifier(max_iter=5)).fit(x, x[names[0]] > 3)
    joblib.dump(pipe, tmp_path / "hgb.joblib")

    imported = _cli(["registry", "import-joblib", str(tmp_path / "hgb.joblib"), "--trust"], settings)
    assert imported.exit_code == 0 and "LEAD_SCORER_SKOPS_TRUSTED_TYPES='[" in imported.output
    extra = json.loads(imported.output.split("LEAD_SCORER_SKOPS_TRUSTED_TYPES='")[1].split("'")[0])
    refused = _cli(["registry", "promote", "1"], settings)
    assert refused.exit_code == 7 and "asks to trust types" in refused.output
    assert _cli(["registry", "promote", "1", "--force"], settings).exit_code == 0

    before = snapshot(sqlite_url)
    with pytest.raises(ModelError, match="asks to trust types the job does not allow"):
        run_scoring(run_options(settings))
    assert snapshot(sqlite_url).equals(before)
    allowed = run_scoring(run_options(settings.model_copy(update={"skops_trusted_types": extra})))
    assert allowed.users_scored == 120


def test_import_joblib_refuses_what_the_job_cannot_use(server, tmp_path):
    settings = _settings(server, "sqlite://")
    joblib.dump({"not": "a model"}, tmp_path / "dict.joblib")
    no_proba = _cli(["registry", "import-joblib", str(tmp_path / "dict.joblib"), "--trust"], settings)
    assert no_proba.exit_code == 3 and "no predict_proba" in no_proba.output
    alien = _legacy_pipeline(tmp_path / "alien.joblib", ["events_7d", "lifetime_value_eur"])
    unknown = _cli(["registry", "import-joblib", str(alien), "--trust"], settings)
    assert unknown.exit_code == 3 and "lifetime_value_eur" in unknown.output
    assert Registry(tracking_uri=server, model_name=settings.model_name).versions() == []


def test_pickled_versions_load_only_when_the_operator_allows_it(server, sqlite_url):
    import mlflow

    make_product(sqlite_url, users=100, seed=47)
    settings = _settings(server, sqlite_url)
    names = FeatureCatalog().feature_names(event_types=["pricing_view"])
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.poisson(2, (200, len(names))).astype(float), columns=names)
    pipe = make_pipeline().fit(x, (x[names[0]] > 2).astype(int))
    mlflow.set_tracking_uri(server)
    mlflow.set_experiment(settings.training_experiment)
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.log_model(
            pipe,
            name="model",
            signature=mlflow.models.infer_signature(x, pipe.predict_proba(x)[:, 1]),
            registered_model_name=settings.model_name,
            serialization_format="cloudpickle",
        )
    refused_promotion = _cli(["registry", "promote", "1"], settings)
    assert refused_promotion.exit_code == 7 and "would not load in the job" in refused_promotion.output
    Registry(tracking_uri=server, model_name=settings.model_name).promote("1", force=True, actor="test")
    before = snapshot(sqlite_url)

    with pytest.raises(ModelError, match="cloudpickle") as refused:
        run_scoring(run_options(settings))
    assert "runs whatever code" in str(refused.value) and "LEAD_SCORER_ALLOW_PICKLE" in str(refused.value)
    assert snapshot(sqlite_url).equals(before) and _runs(settings) == []

    allowed = run_scoring(run_options(settings.model_copy(update={"allow_pickle": True})))
    assert allowed.users_scored == 100


# -- basic auth ---------------------------------------------------------------------------------------------------


def test_basic_auth_server_with_right_and_wrong_credentials(tmp_path, sqlite_url, monkeypatch):
    make_product(sqlite_url, users=120, seed=48)
    with start_mlflow_server(tmp_path / "auth-server", auth=True) as url:
        settings = _settings(url, sqlite_url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN_USERNAME)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        train_model(train_options(settings, promote=True))
        assert run_scoring(run_options(settings)).users_scored == 120

        wrong = "not-the-password-5e1d"
        env = job_env(sqlite_url, settings, settings.scoring_experiment) | {
            "MLFLOW_TRACKING_USERNAME": ADMIN_USERNAME,
            "MLFLOW_TRACKING_PASSWORD": wrong,
        }
        before = snapshot(sqlite_url)
        refused = subprocess.run(
            [LEAD_SCORER, "run", "--select", "all"], env=env, capture_output=True, text=True, timeout=120
        )
        assert refused.returncode == 4, refused.stderr
        assert "MLflow refused" in refused.stderr and "MLFLOW_TRACKING_USERNAME" in refused.stderr
        assert wrong not in refused.stdout + refused.stderr
        assert snapshot(sqlite_url).equals(before)


# -- an unreachable or lost server --------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung server or a dropped route."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", ["refused", "silent", "refused-with-password-in-url"])
def test_unreachable_server_fails_fast_and_writes_nothing(kind, request, sqlite_url, mlflow_local):
    make_product(sqlite_url, users=100, seed=49)
    port = request.getfixturevalue("silent_port") if kind == "silent" else _closed_port()
    userinfo = "scorer:hunter2-in-url@" if "password" in kind else ""
    settings = mlflow_local.settings(sqlite_url)
    env = job_env(sqlite_url, settings, settings.scoring_experiment) | {
        "MLFLOW_TRACKING_URI": f"http://{userinfo}127.0.0.1:{port}"
    }
    before = snapshot(sqlite_url)
    started = time.monotonic()
    result = subprocess.run([LEAD_SCORER, "run"], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    assert "cannot reach the MLflow tracking server" in result.stderr and "MLFLOW_TRACKING_URI" in result.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s to give up"
    assert "hunter2" not in result.stdout + result.stderr
    assert snapshot(sqlite_url).equals(before)


def test_server_lost_mid_run_still_writes_every_score_and_exits_5(tmp_path, sqlite_url):
    users, batch = 6_000, 50
    make_product(sqlite_url, users=users, seed=50, events_per_user=6.0)
    with start_mlflow_server(tmp_path / "doomed-server") as url:
        settings = _settings(url, sqlite_url)
        train_model(train_options(settings, promote=True))
        env = job_env(sqlite_url, settings, settings.scoring_experiment) | {
            # Fewer client retries than the default keep the test short; the job's own retry still runs.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        }
        job = Job(["--batch-size", str(batch)], env, cwd=tmp_path)
        job.wait_for("batch")
        url.kill()
        code = job.finish()

    assert code == 5, job.output()
    (loaded,) = job.events("model_loaded")  # one resolve, one download, one load, each timed
    assert {"resolve_s", "download_s", "load_s"} <= loaded.keys()
    assert job.events("batch_metrics_paused"), f"the server was not lost mid-run\n{job.output()}"
    assert sum(b["scored"] for b in job.events("batch")) == users
    (finished,) = job.events("run_finished")
    assert finished["users_scored"] == users and finished["status"] == "FINISHED"
    assert job.events("run_record_lost")
    assert snapshot(sqlite_url)["lead_score"].notna().sum() == users


# -- the MLflow project -------------------------------------------------------------------------------------------


def test_mlproject_parameters_are_validated_by_the_command():
    assert to_argv("score", ["select=all", "batch_size=5000.0", "limit=", "dry_run=true", "model_version=3"]) == [
        "run",
        "--select",
        "all",
        "--batch-size",
        "5000",
        "--dry-run",
        "--model-version",
        "3",
    ]
    assert to_argv("train", ["as_of=2026-10-01", "seed=0", "promote=false"]) == [
        "train",
        "--as-of",
        "2026-10-01",
        "--seed",
        "0",
    ]
    for entry, bad, message in [
        ("score", "batch_size=2.5", "whole number"),
        ("score", "select=sometimes", "one of unscored, stale, all"),
        ("score", "dry_run=maybe", "true or false"),
        ("score", "model_version=latest", "version number"),
        ("train", "as_of=yesterday", "date like"),
        ("score", "batch=10", "unknown parameter"),
    ]:
        with pytest.raises(ParameterError, match=message):
            to_argv(entry, [bad])


def _mlflow_run(
    server: str, settings: Any, experiment: str, *params: str, entry: str = "score"
) -> subprocess.CompletedProcess[str]:
    env = job_env(settings.database_url.get_secret_value(), settings, settings.scoring_experiment) | {
        "MLFLOW_TRACKING_URI": server,
        # `python` in the MLproject's command is this environment's.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    cmd = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", entry, "--env-manager", "local"]
    cmd += ["--experiment-name", experiment]
    for p in params:
        cmd += ["-P", p]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_mlflow_run_score_logs_into_the_run_mlflow_created(server, sqlite_url):
    make_product(sqlite_url, users=300, seed=51)
    settings = _settings(server, sqlite_url)
    train_model(train_options(settings, promote=True))
    experiment = f"mlproject-{uuid.uuid4().hex[:8]}"

    bad = _mlflow_run(server, settings, experiment, "batch_size=2.5")
    assert bad.returncode != 0
    assert "invalid MLproject parameter: batch_size must be a whole number" in bad.stderr
    assert snapshot(sqlite_url)["lead_score"].isna().all()

    done = _mlflow_run(server, settings, experiment, "select=all", "batch_size=100")
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    assert len(runs) == 1, "the job made a run of its own instead of using mlflow run's"
    run = runs[0]
    assert run.data.tags["mlflow.project.entryPoint"] == "score"
    assert run.data.params["batch_size"] == "100" and run.data.params["select"] == "all"
    assert run.data.tags["model_version"] == "1" and run.data.metrics["users_scored"] == 300
    assert [m.step for m in client.get_metric_history(run.info.run_id, "batch/users")] == [1, 2, 3]
    assert snapshot(sqlite_url)["lead_score"].notna().all()
    assert _runs(settings) == []  # nothing went to the default scoring experiment


def test_mlflow_run_train_registers_from_the_run_mlflow_created(server, sqlite_url):
    make_product(sqlite_url, users=400, seed=54)
    settings = _settings(server, sqlite_url)
    experiment = f"mlproject-train-{uuid.uuid4().hex[:8]}"

    done = _mlflow_run(server, settings, experiment, "promote=true", "top_event_types=8", entry="train")
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=server)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.data.tags["mlflow.project.entryPoint"] == "train" and run.info.status == "FINISHED"
    assert run.data.params["top_event_types"] == "8" and "roc_auc" in run.data.metrics
    registry = Registry(tracking_uri=server, model_name=settings.model_name)
    production = registry.resolve()
    assert production.version == "1" and production.run_id == run.info.run_id


# -- secrets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lose_server", [False, True], ids=["whole-run", "server-dies-mid-run"])
def test_passwords_in_both_urls_appear_in_no_output_and_no_record(tmp_path, pg_url, lose_server, monkeypatch):
    """A password in MLFLOW_TRACKING_URI (basic auth) and one in DATABASE_URL: every byte the job prints, and
    every tag and parameter of its MLflow run, is free of both, also when the server dies mid-run (retries)."""
    from sqlalchemy.engine import make_url

    db_secret = "db-Pa55-in-url-91c2"
    db_url = make_url(pg_url).set(password=db_secret).render_as_string(hide_password=False)
    make_product(pg_url, users=3_000 if lose_server else 300, seed=52, events_per_user=4.0)
    with start_mlflow_server(tmp_path / "auth-secrets", auth=True) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN_USERNAME)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        settings = _settings(url, pg_url)
        train_model(train_options(settings, promote=True))
        with_password = str(url).replace("http://", f"http://{ADMIN_USERNAME}:{ADMIN_PASSWORD}@")
        env = job_env(db_url, settings, settings.scoring_experiment) | {
            "MLFLOW_TRACKING_URI": with_password,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        }
        job = Job(["--batch-size", "50"], env, cwd=tmp_path)
        if lose_server:
            job.wait_for("batch")
            url.kill()
        code = job.finish()
        printed = "".join(job.stdout) + job.stderr
        assert code == (5 if lose_server else 0), job.output()
        for secret in (ADMIN_PASSWORD, db_secret):
            assert secret not in printed, f"{secret!r} printed"
        assert "View run" not in printed  # MLflow's own line, which carried the URI
        if not lose_server:
            (recorded,) = job.events("run_recorded")
            assert recorded["url"].startswith(str(url)) and "@" not in recorded["url"]
            client = MlflowClient(tracking_uri=str(url))
            (run,) = _runs(settings)
            stored = json.dumps([run.data.tags, run.data.params, run.info.run_name])
            for secret in (ADMIN_PASSWORD, db_secret):
                assert secret not in stored
            assert client.get_run(run.info.run_id).info.status == "FINISHED"
