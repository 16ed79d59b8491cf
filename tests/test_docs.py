"""The docstrings' examples are doctests, run here: an example that no longer runs, or whose output is not
what the code prints, fails the suite. Every product module with a ``>>>`` is found and run. And every link in
the README resolves (the site in docs/ is checked by its strict build)."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

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


# --- the README's links ------------------------------------------------------------------------------------
# The site in docs/ is built with `mkdocs build --strict` by the test command (dev.py), which checks its links
# and anchors; the README is outside the site, so its links are checked here, the same way.

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives a page's headings (Python-Markdown's toc slugs, of the heading's text)."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", page.read_text(), flags=re.MULTILINE)
    return {slugify(re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", h), "-") for h in headings}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not fetched (no network in tests)
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_every_readme_link_resolves() -> None:
    assert LINK.findall((ROOT / "README.md").read_text()), "the README links into docs/"
    assert _broken_links(ROOT / "README.md") == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A page\n\n## Exit codes\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](there.md) [ok](there.md#exit-codes) [no](gone.md) [no](there.md#nope) ![img](x.png)\n")
    assert _broken_links(page) == ["gone.md: no such file", "there.md#nope: no heading with that anchor"]


def test_the_readme_is_short() -> None:
    # The way in, not the manual: the rest lives in the site (issue 24).
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


TEXT = {".py", ".yaml", ".toml", ".md", ".sh"}


def test_every_docs_page_named_in_the_repository_exists() -> None:
    # render.yaml once pointed at a docs/operations.md that did not exist: a page named in a comment, a
    # docstring or a config file is a link too.
    tops = [p for p in ROOT.iterdir() if not p.name.startswith(".") and p.name not in ("lead-scorer-demo", "site")]
    files = [p for top in tops for p in ([top] if top.is_file() else top.rglob("*")) if p.suffix in TEXT]
    named = {
        (path.relative_to(ROOT).as_posix(), page)
        for path in files
        for page in re.findall(r"\bdocs/([\w.-]+\.md)\b", path.read_text(errors="replace"))
    }
    assert ("render.yaml", "operations.md") in named
    assert [(where, page) for where, page in sorted(named) if not (ROOT / "docs" / page).exists()] == []
