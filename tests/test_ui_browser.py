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

from registry import Registry
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
# The version, the start (date and time, UTC; the time's format is not pinned) and what happened.
RUN_NAME = re.compile(r"^score v[12] · \d{4}-\d\d-\d\d [\d:]+ UTC · .+$")
V1_RUN = re.compile(r"^score v1 · \d{4}-\d\d-\d\d [\d:]+ UTC · .+$")


def _chromium() -> str:
    """Debian's chromium: Playwright cannot download its own browser here, and CI installs this one."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("Debian's chromium is not installed and installing it needs root: apt-get install -y chromium")
    pytest.fail("chromium is missing although we are root: .ci/run installs it (apt-get install -y chromium)")


#: The story's scoring runs, in the order they ran.
RUNS = ("written", "nothing", "drift", "failed", "v2", "challenger")


@dataclass(frozen=True)
class Story:
    url: str
    experiment_id: str
    runs: dict[str, str]  # what happened -> run id
    model: str
    model_id: str  # version 1's logged model: every v1 run's model input
    training: tuple[str, str]  # (experiment id, run id) of version 1's training run


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The demo's mornings, small: version 1 trained and promoted; a run that writes every open lead, one right
    after it with nothing to do, one after half the visitors went quiet (drift, and a previous run to compare
    with), one where a user's row is refused (FAILED); version 2 trained and tried in a dry run (a run of
    another version, which "Scoring runs of this version" of version 1 must leave out)."""
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
        trained = train_model(train_options(settings, promote=True))
        run_scoring(run_options(settings))
        run_scoring(run_options(settings))  # nothing to do, within the same minute
        execute(db, "DELETE FROM events WHERE visitor_id IN (SELECT visitor_id FROM users WHERE user_id % 2 = 0)")
        everyone = settings.model_copy(update={"select": "all"})
        run_scoring(run_options(everyone))
        execute(
            db,
            "CREATE TRIGGER refuse BEFORE UPDATE OF lead_score ON users WHEN NEW.user_id = 7 "
            "BEGIN SELECT RAISE(ABORT, 'locked'); END",
        )
        execute(db, "DELETE FROM events WHERE visitor_id = (SELECT visitor_id FROM users WHERE user_id = 7)")
        run_scoring(run_options(everyone))
        train_model(train_options(settings, seed=1))
        run_scoring(run_options(everyone.model_copy(update={"dry_run": True, "model_version": "2"})))
        # Version 2 as the challenger: the next run of v1 shadow-scores it and says so.
        execute(db, "DROP TRIGGER refuse")
        Registry(tracking_uri=str(url), model_name=settings.model_name).challenge("2", actor="test")
        run_scoring(run_options(everyone))
        client = MlflowClient(tracking_uri=str(url))
        exp = client.get_experiment_by_name(settings.scoring_experiment)
        runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
        assert len(runs) == 6
        training = client.get_experiment_by_name(settings.training_experiment).experiment_id
        yield Story(
            str(url),
            exp.experiment_id,
            dict(zip(RUNS, [r.info.run_id for r in runs], strict=True)),
            settings.model_name,
            trained.version.model_id or "",
            (training, trained.version.run_id or ""),
        )


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


def _page(browser: object) -> tuple[object, object]:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()


def _run_page(story: Story, run_id: str, experiment_id: str | None = None) -> str:
    return (
        f"{story.url}/#/experiments/{experiment_id or story.experiment_id}/runs/{run_id}?workflowType=machine_learning"
    )


@pytest.mark.slow
def test_the_printed_url_leads_through_runs_version_and_back(browser: object, story: Story) -> None:
    from playwright.sync_api import expect

    context, page = _page(browser)
    runs = story.runs

    # 1. The URL the demo and docs/operations.md give: the scoring runs, by name, with no switch to find first. Every
    # name differs, though three runs started in one minute, and says what happened.
    printed = ui_url(story.url, experiment_id=story.experiment_id)
    assert printed is not None
    page.goto(printed)
    names = page.get_by_role("link", name=RUN_NAME)
    expect(names).to_have_count(6)
    expect(page.get_by_text("6 matching runs")).to_be_visible()
    texts = names.all_inner_texts()
    assert len(set(texts)) == len(RUNS), texts
    outcomes = sorted(t.rsplit(" UTC · ", 1)[1] for t in texts)
    assert "nothing to do" in outcomes and "FAILED 1 user" in outcomes, outcomes
    assert sum(bool(re.fullmatch(r"[\d,]+ written", o)) for o in outcomes) == 3, outcomes
    assert any(re.fullmatch(r"dry run · [\d,]+ written", o) for o in outcomes), outcomes
    # The assistant's side panel (an LLM chat, unused here) takes a third of the width; closed, the pages
    # lay out as on a wider screen. The UI remembers it for the tabs that follow.
    chat = page.get_by_placeholder("Ask a question...")
    chat.wait_for()
    page.get_by_role("button", name="Close", exact=True).click()
    expect(chat).to_be_hidden()
    _shot(page, "runs-table.png")

    # 2. The run after the drift: its description says what happened, with which version, and what it is
    # compared with (a link whose text is another run's name, not this page's title). The run has its model
    # input (the pipeline's logged model), as the UI's own API call returns it; the 3.17 UI lists a run's models
    # only from the run's own experiment, so the page does not show it (docs/mlflow-ui.md).
    page.goto(_run_page(story, runs["drift"]))
    note = page.get_by_text(re.compile(r"^Rescored \d+ open leads with lead_scoring_pipeline v1 in [\d.,]+ s: "))
    expect(note).to_be_visible()
    title = page.get_by_role("heading", name=V1_RUN)
    expect(title).to_be_visible()
    note.scroll_into_view_if_needed()
    _shot(page, "run-page.png")
    previous = page.get_by_role("link", name=V1_RUN)
    expect(previous).to_have_attribute("href", re.compile(rf"/runs/{runs['written']}\?workflowType=machine_learning$"))
    assert previous.inner_text() != title.inner_text()
    inputs = page.evaluate(
        "async (id) => (await (await fetch(`ajax-api/2.0/mlflow/runs/get?run_id=${id}`)).json()).run.inputs",
        runs["drift"],
    )
    assert [m["model_id"] for m in inputs.get("model_inputs", [])] == [story.model_id], inputs

    # 3. One click to the version (the UI opens a description's links in a new tab).
    with context.expect_page() as opened:
        page.get_by_role("link", name=f"{story.model} v1").click()
    version = opened.value
    expect(version).to_have_url(re.compile(rf"#/models/{story.model}/versions/1$"))
    expect(version.get_by_text(re.compile(r"^Trained on \d+ leads as of"))).to_be_visible()
    expect(version.get_by_text(re.compile(r"^Promoted to production by "))).to_be_visible()
    _shot(version, "model-version.png")

    # 4. And one click back to the runs that used it: version 1's four, not version 2's dry run.
    with context.expect_page() as opened:
        version.get_by_role("link", name="Scoring runs of this version").click()
    back = opened.value
    expect(back).to_have_url(re.compile(rf"#/experiments/{story.experiment_id}/runs\?"))
    expect(back.get_by_text("5 matching runs")).to_be_visible()
    expect(back.get_by_role("link", name=V1_RUN)).to_have_count(5)
    expect(back.get_by_role("link", name=re.compile(r"^score v2 · "))).to_have_count(0)

    # 5. The score histogram with the tier thresholds, as the artifact viewer shows it.
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("score_histogram.svg").click()
    image = page.get_by_role("img", name="score_histogram.svg")
    expect(image).to_be_visible()
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 0, "the histogram did not render"
    svg = image.evaluate("async img => await (await fetch(img.src)).text()")
    # The two tier thresholds, each a dashed line across the bars and named at its top.
    assert svg.count('stroke-dasharray="4 3"') == 2, svg[-800:]
    assert "warm ≥ 0.2" in svg and "hot ≥ 0.5" in svg
    _shot(page, "histogram.png")
    context.close()


@pytest.mark.slow
def test_runs_with_nothing_to_do_a_failure_and_a_training_say_so(browser: object, story: Story) -> None:
    from playwright.sync_api import expect

    context, page = _page(browser)
    # A run with nothing to do says so in its name and its description.
    page.goto(_run_page(story, story.runs["nothing"]))
    expect(page.get_by_role("heading", name=re.compile(r" UTC · nothing to do$"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Nothing to do: no open lead changed since its last score"))).to_be_visible()

    # A failed run: its name counts the users, its description says where to look.
    page.goto(_run_page(story, story.runs["failed"]))
    expect(page.get_by_role("heading", name=re.compile(r" UTC · FAILED 1 user$"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"1 user\(s\) failed"))).to_be_visible()
    expect(page.get_by_text("failed_users.json")).to_be_visible()

    # A run with a challenger: its description says what the shadow scores showed, its metrics carry them.
    page.goto(_run_page(story, story.runs["challenger"]))
    shadowed = re.compile(r"Challenger v2 shadow-scored [\d,]+ leads \(into lead_score_shadow")
    expect(page.get_by_text(shadowed)).to_be_visible()
    expect(page.get_by_text("challenger/rank_corr", exact=True).first).to_be_visible()

    # The training run: which version it registered, when, and how well it ranks the holdout.
    training_experiment, training_run = story.training
    page.goto(_run_page(story, training_run, training_experiment))
    expect(
        page.get_by_role("heading", name=re.compile(r"^train v1 · \d{4}-\d\d-\d\d [\d:]+ UTC · ROC AUC 0\.\d\d$"))
    ).to_be_visible()
    context.close()
