"""`lead-scorer demo`: the first thing a new user types, run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from typer.testing import CliRunner

from scorer.cli import app
from tests.support import execute, snapshot


def test_demo_runs_end_to_end_and_again(tmp_path):
    runner = CliRunner()
    env = {"LEAD_SCORER_LOG_LEVEL": "WARNING", "DATABASE_URL": "", "MLFLOW_TRACKING_URI": ""}
    first = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d"), "--users", "600"], env=env)
    assert first.exit_code == 0, first.output
    assert "generated 600 users" in first.output and "promoted" in first.output
    users = snapshot(f"sqlite:///{tmp_path / 'd' / 'leads.db'}")
    leads = users["converted_at"].isna()
    assert f"selected {leads.sum():,} open leads" in first.output and "with model v1" in first.output
    assert "top open leads, and why:" in first.output and "mlflow ui --backend-store-uri sqlite:///" in first.output
    assert (tmp_path / "d" / "leads.db").exists() and (tmp_path / "d" / "mlflow.db").exists()
    assert users.loc[leads, "lead_score"].notna().all() and users.loc[leads, "lead_score"].between(0, 1).all()
    assert users.loc[~leads, "lead_score"].isna().all()  # customers are not leads

    second = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d")], env=env)
    assert second.exit_code == 0, second.output
    assert "reusing" in second.output and "selected 0 open leads" in second.output and "nothing to do" in second.output

    # The daily command after a quiet open lead shows buying signals: it rescores that lead, and only it.
    url = f"sqlite:///{tmp_path / 'd' / 'leads.db'}"
    quiet = users[leads & users["visitor_id"].notna()].sort_values("lead_score").iloc[0]
    rows = [("pricing_view", 8), ("demo_request", 4), ("invite_sent", 4), ("signup_started", 3), ("feature_used", 10)]
    for kind, n in rows:
        for _ in range(n):
            execute(
                url,
                "INSERT INTO events (visitor_id, event_type, created_at) VALUES (:v, :t, :c)",
                params={"v": quiet["visitor_id"], "t": kind, "c": datetime.now(UTC)},
            )
    run_env = env | {
        "DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'd' / 'mlflow.db'}",
        "LEAD_SCORER_LOG_LEVEL": "INFO",
    }
    daily = runner.invoke(app, ["--json-logs", "run"], env=run_env)
    assert daily.exit_code == 0, daily.output
    finished = next(json.loads(line) for line in daily.output.splitlines() if '"run_finished"' in line)
    assert finished["users_selected"] == 1 and finished["users_changed"] == 1
    after = snapshot(url)
    mine = after["user_id"] == quiet["user_id"]
    assert after.loc[mine, "lead_score"].iloc[0] > quiet["lead_score"] + 0.3
    pd.testing.assert_frame_equal(after[~mine].reset_index(drop=True), users[~mine].reset_index(drop=True))
    reasons = " ".join(r["reason"] for r in json.loads(after.loc[mine, "lead_score_reasons"].iloc[0]))
    assert any(k in reasons for k in ("pricing view", "demo request", "invite sent", "signup started", "feature used"))
    explained = runner.invoke(
        app, ["explain", str(quiet["user_id"])], env=run_env | {"LEAD_SCORER_LOG_LEVEL": "WARNING"}
    )
    assert explained.exit_code == 0, explained.output
    assert "reasons" in explained.output and "evt_pricing_view_7d" in explained.output

    # --reset deletes the MLflow store under a live process's cached engine: run it as a user would, afresh,
    # from a shell set up for the real job: the demo keeps to its own directory, whatever is exported.
    real_job = {
        "DATABASE_URL": "postgresql://job:secret@127.0.0.1:9/product",
        "SUPABASE_URL": "https://project.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_not-the-demos",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "LEAD_SCORER_MODEL_NAME": "the_real_model",
        "LEAD_SCORER_SCORING_EXPERIMENT": "the-real/scoring",
    }
    reset = subprocess.run(
        [
            str(Path(sys.executable).parent / "lead-scorer"),
            "demo",
            "--dir",
            str(tmp_path / "d"),
            "--users",
            "500",
            "--reset",
        ],
        env=os.environ | {"LEAD_SCORER_LOG_LEVEL": "WARNING"} | real_job,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reset.returncode == 0, reset.stderr
    # A fresh process whose MLflow store is created anew: MLflow's own INFO lines stay out of the output.
    assert "Creating initial MLflow database tables" not in reset.stdout + reset.stderr, reset.stderr
    assert " INFO mlflow" not in reset.stdout + reset.stderr, reset.stderr
    assert "generated 500 users" in reset.stdout and "scores written, 0 unchanged" in reset.stdout
    registry = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'd' / 'mlflow.db'}")
    assert [m.name for m in registry.search_registered_models()] == ["lead_scoring_pipeline"]
    assert registry.get_experiment_by_name("lead-scorer/scoring") is not None


def test_the_demos_options_come_from_its_directory_not_the_environment(tmp_path, monkeypatch):
    """What the demo runs with is built from its paths alone: a shell with the real job's variables exported
    (a database, a Supabase project, an MLflow server, a model name) does not leak into it."""
    from scorer.app import open_store
    from scorer.demo import DemoPaths, build_demo, demo_options

    for name, value in {
        "DATABASE_URL": "postgresql://job:secret@127.0.0.1:9/product",
        "SUPABASE_URL": "https://project.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_not-the-demos",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "LEAD_SCORER_MODEL_NAME": "the_real_model",
        "LEAD_SCORER_BATCH_SIZE": "7",
    }.items():
        monkeypatch.setenv(name, value)
    paths = DemoPaths(tmp_path / "d")
    build_demo(paths, users=50)
    run, train = demo_options(paths, promoted_by="ana")
    assert run.store == train.store and run.model == train.model and train.actor == "ana"
    assert run.store.database_url == paths.database_url
    assert run.store.supabase_url is None and run.store.supabase_key is None
    assert run.model.tracking_uri == paths.tracking_uri and run.model.model_name == "lead_scoring_pipeline"
    assert run.job.batch_size == 2_000
    store = open_store(run.store)  # one store, the demo's: not "both DATABASE_URL and SUPABASE_URL"
    try:
        assert store.kind == "sql" and str(paths.leads_db) in store.describe()
    finally:
        store.close()
