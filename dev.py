#!/usr/bin/env python3
"""Set up the project's environment from the lock file, then run something in it.

    python3 dev.py demo      # the whole job on a laptop: SQLite data, a local MLflow store
    python3 dev.py test      # ruff, the docs' strict build, mypy, then the tests (real PostgreSQL, real MLflow)
    python3 dev.py test -m "not slow"   # the editing loop: everything but the slowest end-to-end tests
    python3 dev.py bench     # the benchmark (see benchmarks/README.md)

Needs only Python >= 3.11. The environment lives in .venv and is rebuilt when the lock file changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
LOCK = ROOT / "requirements" / "dev.lock"


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the machine has
        sys.exit(f"lead-scorer needs Python >= 3.11 (this is {sys.version.split()[0]})")
    python = BIN / "python"
    if not python.exists():
        print("creating .venv …", flush=True)
        venv.create(VENV, with_pip=True)
    want = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / ".installed-lock"
    if stamp.exists() and stamp.read_text() == want:
        return
    print("installing the locked dependencies into .venv …", flush=True)
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes", "-r", LOCK)
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", ".")
    stamp.write_text(want)


def pytest_args(rest: list[str]) -> list[str]:
    """pytest-xdist, one worker per CPU, unless the caller chose (``-n 0`` runs serially, ``-p no:xdist``
    without xdist); ``--dist loadgroup`` keeps each ``xdist_group`` (a Spark session, one cached venv) on one
    worker unless the caller picked another distribution."""
    if "no:xdist" in rest:
        return list(rest)
    workers = [] if any(a.startswith(("-n", "--numprocesses")) for a in rest) else ["-n", "auto"]
    dist = [] if any(a.startswith("--dist") for a in rest) else ["--dist", "loadgroup"]
    return [*workers, *dist, *rest]


def build_docs(env: dict[str, str]) -> int:
    """``mkdocs build --strict`` into a directory thrown away after: a broken link, a missing anchor or a page
    left out of mkdocs.yml's nav fails the test command before pytest starts."""
    with tempfile.TemporaryDirectory(prefix="lead-scorer-site-") as site:
        cmd = [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", site]
        return subprocess.run(cmd, cwd=ROOT, env=env | {"NO_MKDOCS_2_WARNING": "1"}).returncode


def lint(env: dict[str, str]) -> int:
    """``ruff check .`` (rules in pyproject.toml)."""
    return subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, env=env).returncode


def type_check(env: dict[str, str], *, cwd: Path = ROOT) -> int:
    """mypy over the product code as ``[tool.mypy]`` in ``cwd``'s pyproject.toml says (which packages, the strict
    rooms): one type error fails the test command before pytest starts."""
    return subprocess.run([str(BIN / "mypy")], cwd=cwd, env=env).returncode


#: What `python3 dev.py test` runs before pytest, in this order; the first that fails ends it.
CHECKS: tuple[Callable[[dict[str, str]], int], ...] = (lint, build_docs, type_check)


def run_tests(
    rest: list[str], env: dict[str, str], *, checks: Sequence[Callable[[dict[str, str]], int]] = CHECKS
) -> int:
    """The ``checks``, then pytest with ``rest``; the first non-zero code is the command's."""
    for check in checks:
        code = check(env)
        if code:
            return code
    return subprocess.run([str(BIN / "python"), "-m", "pytest", *pytest_args(rest)], cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench", "setup"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ)
    if command == "setup":
        return 0
    if command == "demo":
        return subprocess.run([str(BIN / "lead-scorer"), "demo", *rest], cwd=ROOT, env=env).returncode
    if command == "bench":
        return subprocess.run([str(BIN / "python"), "-m", "benchmarks.run", *rest], cwd=ROOT, env=env).returncode
    return run_tests(rest, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
