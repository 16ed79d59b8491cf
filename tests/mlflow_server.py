"""A real `mlflow server` on loopback for tests: SQLite backend store, proxied artifacts, optional basic auth.

    with start_mlflow_server(tmp_path) as url:
        ...  # MLFLOW_TRACKING_URI=url; the process (and its uvicorn workers) is gone afterwards

The server runs from the dev venv (full ``mlflow``); clients may be ``mlflow-skinny``, which is the point:
the production image can only reach a tracking server over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ADMIN_PASSWORD", "ADMIN_USERNAME", "MlflowServerError", "ServerURL", "start_mlflow_server"]

#: The basic-auth admin account of a server started with ``auth=True``.
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "test-admin-password-7f3a"  # a throwaway password for a loopback test server

_START_TIMEOUT_S = 90.0
_POLL_INTERVAL_S = 0.1
_STOP_TIMEOUT_S = 15.0
_PORT_ATTEMPTS = 3


class ServerURL(str):
    """The server's URL, which can also kill the server (a crash, for tests of a lost server)."""

    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, the way a crashed host loses them."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=_STOP_TIMEOUT_S)


class MlflowServerError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _server_env(root: Path, *, auth: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LEAD_SCORER_"))}
    env |= {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        # No huey job runner (GenAI jobs): one process less to start and stop.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONUNBUFFERED": "1",
    }
    if auth:
        ini = root / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            f"admin_username = {ADMIN_USERNAME}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env |= {
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key-for-a-loopback-server",
        }
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (the CLI spawns uvicorn workers), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def start_mlflow_server(root: Path, *, auth: bool = False, workers: int = 1) -> Iterator[ServerURL]:
    """Start ``mlflow server`` with its stores under ``root``; yield its ``http://127.0.0.1:PORT`` URL.

    Readiness is ``GET /health`` answering 200, polled until a bounded deadline; an early exit (e.g. the
    port was taken between choosing and binding it) is retried on another port. With ``auth=True`` the
    server runs ``--app-name basic-auth`` (users in ``root/basic_auth.db``; admin ``ADMIN_USERNAME`` /
    ``ADMIN_PASSWORD``), which needs Flask-WTF, the ``mlflow[auth]`` extra.
    """
    root.mkdir(parents=True, exist_ok=True)
    env = _server_env(root, auth=auth)
    log = root / "mlflow-server.log"
    last_error = "not started"
    for _attempt in range(_PORT_ATTEMPTS):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        if auth:
            cmd += ["--app-name", "basic-auth"]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not _healthy(url):
                if time.monotonic() > deadline:
                    raise MlflowServerError(f"mlflow server not healthy after {_START_TIMEOUT_S:.0f}s:\n{_tail(log)}")
                try:
                    # Waiting on the process doubles as the poll interval and notices an early exit at once.
                    proc.wait(timeout=_POLL_INTERVAL_S)
                except subprocess.TimeoutExpired:
                    continue
                break
            if proc.poll() is not None:
                last_error = f"mlflow server exited with {proc.returncode}:\n{_tail(log)}"
                if "already in use" in last_error:
                    continue
                raise MlflowServerError(last_error)
            served = ServerURL(url)
            served.proc = proc
            yield served
            return
        finally:
            _stop(proc)
    raise MlflowServerError(last_error)
