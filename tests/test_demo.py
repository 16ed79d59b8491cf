"""`lead-scorer demo`: the first thing a new user types, run twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from scorer.cli import app
from tests.support import snapshot


def test_demo_runs_end_to_end_and_again(tmp_path):
    runner = CliRunner()
    env = {"LEAD_SCORER_LOG_LEVEL": "WARNING", "DATABASE_URL": "", "MLFLOW_TRACKING_URI": ""}
    first = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d"), "--users", "600"], env=env)
    assert first.exit_code == 0, first.output
    assert "generated 600 users" in first.output and "promoted" in first.output
    assert "scored 600 users with model v1" in first.output
    assert "top leads:" in first.output and "mlflow ui --backend-store-uri sqlite:///" in first.output
    assert (tmp_path / "d" / "leads.db").exists() and (tmp_path / "d" / "mlflow.db").exists()
    scores = snapshot(f"sqlite:///{tmp_path / 'd' / 'leads.db'}")["lead_score"]
    assert scores.notna().all() and scores.between(0, 1).all()

    second = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d")], env=env)
    assert second.exit_code == 0, second.output
    assert "reusing" in second.output and "scored 0 users" in second.output

    # --reset deletes the MLflow store under a live process's cached engine: run it as a user would, afresh.
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
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reset.returncode == 0, reset.stderr
    assert "generated 500 users" in reset.stdout and "scored 500 users" in reset.stdout
