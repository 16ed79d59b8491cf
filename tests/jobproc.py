"""A real `lead-scorer` child process whose JSON log lines are read as they come, with bounded waits."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from scorer.settings import ENV_FILE_VARIABLE

TIMEOUT = 120  # seconds for any single wait: a broken job fails the test instead of hanging it
LEAD_SCORER = str(Path(sys.executable).parent / "lead-scorer")


class Job:
    """A `lead-scorer` child process (``run`` unless told) whose stdout lines are read by a thread into a queue."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, *, command: str = "run") -> None:
        self.proc = subprocess.Popen(
            [LEAD_SCORER, command, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr = ""
        self._out = threading.Thread(target=self._pump_stdout, daemon=True)
        self._err = threading.Thread(target=self._pump_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def next_event(self) -> dict[str, Any] | None:
        """The next JSON log line (non-JSON lines are kept but skipped); None at end of stdout."""
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                self.kill()
                pytest.fail(f"no log line within {TIMEOUT}s; stdout so far:\n{''.join(self.stdout)}")
            if line is None:
                return None
            self.stdout.append(line)
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                return event

    def wait_for(self, name: str) -> dict[str, Any]:
        while (event := self.next_event()) is not None:
            if event.get("event") == name:
                return event
        self.finish()
        pytest.fail(f"stdout ended without an {name!r} event (exit {self.proc.returncode}):\n{self.output()}")

    def finish(self) -> int:
        """Read stdout to its end and wait for the exit code, both bounded."""
        while self.next_event() is not None:
            pass
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"lead-scorer did not exit within {TIMEOUT}s:\n{self.output()}")
        self._out.join(timeout=TIMEOUT)
        self._err.join(timeout=TIMEOUT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") == name:
                out.append(event)
        return out

    def output(self) -> str:
        return f"--- stdout\n{''.join(self.stdout)}--- stderr\n{self.stderr}"


def job_env(database_url: str, settings: Any, experiment: str) -> dict[str, str]:
    """The parent's environment without any lead-scorer configuration, plus this test's."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAD_SCORER_", "MLFLOW_", "SUPABASE_", "RENDER_")) and k != "DATABASE_URL"
    }
    return base | {
        "DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_SCORING_EXPERIMENT": experiment,
        "LEAD_SCORER_LOG_LEVEL": "INFO",
        "LEAD_SCORER_POPULATION": settings.population,
        ENV_FILE_VARIABLE: "",  # never the developer's .env (the job's cwd may be the checkout)
    }
