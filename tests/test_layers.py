"""The rooms and who may import whom (docs/architecture.md), as import-linter contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_nothing_imports_upward() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_module_imports_another_modules_private_names() -> None:
    """A name that starts with ``_`` is its module's own: one another module needs gets a public name in the
    module that owns it (Spark borrows `scorer.app.resolve_and_load`, `scorer.job.which_changed`, …)."""
    import ast

    ours = ("scorer", "models", "registry")
    borrowed = []
    for path in sorted(p for package in ours for p in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in ours:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        borrowed.append(f"{path.relative_to(ROOT)}: from {node.module} import {alias.name}")
    assert borrowed == []
