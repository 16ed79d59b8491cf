"""The docstrings' examples are doctests, run here: an example that no longer runs, or whose output is not
what the code prints, fails the suite. Every product module with a ``>>>`` is found and run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lead_errors", "registry", "models", "scorer")


def _modules_with_examples() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text():
                parts = path.relative_to(ROOT).with_suffix("").parts
                found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


MODULES = _modules_with_examples()


def test_the_examples_are_found() -> None:
    # Where the examples are today; a module that gains one is run without being listed here.
    assert {"lead_errors", "models.catalog", "models.reasons", "models.training", "scorer.mlproject"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True, verbose=False)
    assert result.attempted > 0, f"{name} has a '>>>' that doctest does not run"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
