"""The MLflow UI as an operator meets it each morning, in a real browser (Playwright driving Debian's chromium)
against a real `mlflow server`: the printed URL opens the scoring runs, a run's description says what happened
and links to its model version, the version page leads back to its runs, and the histogram renders.

``LEAD_SCORER_SCREENSHOTS=docs/screenshots`` also saves the pages as PNGs (docs/operations.md shows them); without it
nothing is written, so CI never rewrites tracked files.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from scorer.app import run_scoring
from scorer.edge import run_options, train_options
from scorer.settings import load_settings
from scorer.tracking import ui_url
from scorer.trainer import train_model
from tests.mlflow_server import start_mlflow_server
from tests.support import execute, make_product

pytestmark = pytest.mark.browser

# Without the background-networking switches chromium keeps dialling Google services, which a closed network
# refuses; --no-sandbox because CI runs as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# The UI's first load parses a few MB of JavaScript; generous, but every wait ends as soon as the page is there.
TIMEOUT_MS = 30_000
RUN_NAME = re.compile(r"^score v1 · \d{4}-\d\d-\d\d \d\d:\d\d UTC$")


def _chromium() -> str:
    """Debian's chromium: Playwright cannot download its own browser here, and CI installs this one."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("Debian's chromium is not installed and installing it needs root: apt-get install -y chromium")
    pytest.fail("chromium is missing although we are root: .ci/run installs it (apt-get install -y chromium)")


@dataclass(frozen=True)
class Story:
    url: str
    experiment_id: str
    runs: list[str]  # run ids, oldest first
    model: str


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The demo's morning, small: a trained and promoted version 1, then two daily runs, the second after half
    the visitors went quiet (so its note has drift and a previous run to compare with)."""
    root = tmp_path_factory.mktemp("ui")
    with start_mlflow_server(root / "mlflow") as url:
        db = f"sqlite:///{root / 'leads.db'}"
        make_product(db, users=400, seed=42)
        # The product's default names, as an operator's server has them (the server is this test's alone).
        settings = load_settings(
            database_url=db,
            mlflow_tracking_uri=str(url),
            model_name="lead_scoring_pipeline",
            scoring_experiment="lead-scorer/scoring",
            training_experiment="lead-scorer/training",
            population="leads",
        )
        train_model(train_options(settings), promote=True)
        run_scoring(run_options(settings))
        execute(db, "DELETE FROM events WHERE visitor_id IN (SELECT visitor_id FROM users WHERE user_id % 2 = 0)")
        run_scoring(run_options(settings.model_copy(update={"select": "all"})))
        client = MlflowClient(tracking_uri=str(url))
        exp = client.get_experiment_by_name(settings.scoring_experiment)
        runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
        yield Story(str(url), exp.experiment_id, [r.info.run_id for r in runs], settings.model_name)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _shot(page: object, name: str) -> None:
    where = os.environ.get("LEAD_SCORER_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / name))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_the_printed_url_leads_through_runs_version_and_back(browser: object, story: Story) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    first, second = story.runs

    # 1. The URL the demo and docs/operations.md give: the scoring runs, by name, with no switch to find first.
    printed = ui_url(story.url, experiment_id=story.experiment_id)
    assert printed is not None
    page.goto(printed)
    names = page.get_by_role("link", name=RUN_NAME)
    expect(names).to_have_count(2)
    expect(page.get_by_text("2 matching runs")).to_be_visible()
    # The assistant's side panel (an LLM chat, unused here) takes a third of the width; closed, the pages
    # lay out as on a wider screen. The UI remembers it for the tabs that follow.
    chat = page.get_by_placeholder("Ask a question...")
    chat.wait_for()
    page.get_by_role("button", name="Close", exact=True).click()
    expect(chat).to_be_hidden()
    _shot(page, "runs-table.png")

    # 2. The newest run: its description says what happened, with which version, and what it is compared with.
    names.first.click()
    expect(page).to_have_url(re.compile(rf"#/experiments/{story.experiment_id}/runs/{second}"))
    note = page.get_by_text(re.compile(r"^Rescored \d+ open leads \(\d+ changed\) with lead_scoring_pipeline v1 in"))
    expect(note).to_be_visible()
    note.scroll_into_view_if_needed()
    _shot(page, "run-page.png")
    previous = page.get_by_role("link", name=RUN_NAME)
    expect(previous).to_have_attribute("href", re.compile(rf"/runs/{first}\?workflowType=machine_learning$"))

    # 3. One click to the version (the UI opens a description's links in a new tab).
    with context.expect_page() as opened:
        page.get_by_role("link", name=f"{story.model} v1").click()
    version = opened.value
    expect(version).to_have_url(re.compile(rf"#/models/{story.model}/versions/1$"))
    expect(version.get_by_text(re.compile(r"^Trained on \d+ leads as of"))).to_be_visible()
    expect(version.get_by_text(re.compile(r"^Promoted to production by "))).to_be_visible()
    _shot(version, "model-version.png")

    # 4. And one click back to the runs that used it.
    with context.expect_page() as opened:
        version.get_by_role("link", name="Scoring runs of this version").click()
    back = opened.value
    expect(back).to_have_url(re.compile(rf"#/experiments/{story.experiment_id}/runs\?"))
    expect(back.get_by_role("link", name=RUN_NAME)).to_have_count(2)

    # 5. The score histogram with the tier thresholds, as the artifact viewer shows it.
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("score_histogram.svg").click()
    image = page.get_by_role("img", name="score_histogram.svg")
    expect(image).to_be_visible()
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 0, "the histogram did not render"
    _shot(page, "histogram.png")
    context.close()
