"""Types are checked by the test command (`dev.py`): mypy with the project's configuration runs after ruff and
the docs and before pytest, and one type error ends the command. The product itself passing is `dev.py test`'s
own run of it; here the configuration is shown to catch what it should on a project small enough to read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import dev

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_runs_before_pytest_and_its_failure_ends_the_test_command():
    assert [check.__name__ for check in dev.CHECKS] == ["lint", "build_docs", "type_check"]
    ran: list[str] = []

    def passes(_env: dict[str, str]) -> int:
        ran.append("passed")
        return 0

    def fails(_env: dict[str, str]) -> int:
        return 3

    # pytest would run this file's collection only (exit 0) if the failed check did not stop the command.
    code = dev.run_tests(["--collect-only", "-q", __file__], dict(os.environ), checks=(passes, fails, passes))
    assert (code, ran) == (3, ["passed"])


def test_the_projects_mypy_configuration_fails_on_a_type_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    """The real `[tool.mypy]` over four tiny packages: strict in `registry` (a def without annotations is an
    error), `check_untyped_defs` in `scorer` (an unannotated def is allowed, a wrong body inside it is not)."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in ("lead_errors", "registry", "models", "scorer"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "registry" / "__init__.py").write_text("def version(name):\n    return name\n")
    scorer = "def helper(x):\n    return x\n\n\ndef run():\n    return 1 + ''\n"
    (tmp_path / "scorer" / "__init__.py").write_text(scorer)

    code = dev.type_check(dict(os.environ), cwd=tmp_path)

    out = capfd.readouterr().out
    assert code == 1, out
    assert "registry/__init__.py:1: error: Function is missing a type annotation  [no-untyped-def]" in out
    assert 'scorer/__init__.py:6: error: Unsupported operand types for + ("int" and "str")  [operator]' in out
    assert "Found 2 errors in 2 files (checked 4 source files)" in out, out

    (tmp_path / "registry" / "__init__.py").write_text("def version(name: str) -> str:\n    return name\n")
    (tmp_path / "scorer" / "__init__.py").write_text("def helper(x):\n    return x\n")
    assert dev.type_check(dict(os.environ), cwd=tmp_path) == 0, capfd.readouterr().out
