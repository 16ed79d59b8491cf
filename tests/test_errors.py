"""One error hierarchy (lead_errors), one exit-code table (scorer.cli.EXIT_CODES), and the documented table
(docs/operations.md) held to it; the codes seen through the real command line."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lead_errors
from lead_errors import (
    BatchesFailed,
    ExitCode,
    LeadScorerError,
    ModelError,
    NoProductionVersion,
    PromotionRefused,
    ServiceUnavailable,
    StoreError,
    TrainingError,
)
from scorer.cli import EXIT_CODES, EXIT_CODES_HELP, EXIT_MEANINGS, app, exit_code_for
from scorer.edge import train_options
from scorer.trainer import train_model
from tests.support import execute, make_product

ROOT = Path(__file__).resolve().parent.parent
KINDS = [
    obj
    for obj in vars(lead_errors).values()
    if inspect.isclass(obj) and issubclass(obj, LeadScorerError) and obj is not LeadScorerError
]


def _instance(kind: type[LeadScorerError]) -> LeadScorerError:
    return kind(["x"]) if kind is lead_errors.UnknownFeatureError else kind("x")  # type: ignore[arg-type]


def _cli(args: list[str], env: dict[str, str]) -> object:
    base = {"LEAD_SCORER_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(app, args, env=base | env, catch_exceptions=False)


# --- the hierarchy and the table -------------------------------------------------------------------------


def test_every_kind_has_a_code_and_a_bug_has_its_own() -> None:
    assert len(KINDS) >= 15
    for kind in KINDS:
        assert exit_code_for(_instance(kind)) != ExitCode.INTERNAL, kind
    # Anything else is a bug, and so is the bare base class: it says nothing about what failed.
    assert exit_code_for(ZeroDivisionError()) == ExitCode.INTERNAL
    assert exit_code_for(LeadScorerError("x")) == ExitCode.INTERNAL


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (lead_errors.SettingsError, 2),
        (NoProductionVersion, 3),
        (lead_errors.UnknownFeatureError, 3),
        (TrainingError, 3),
        (lead_errors.TransientError, 4),
        (lead_errors.AuthError, 4),
        (ServiceUnavailable, 4),
        (lead_errors.TrackingError, 5),
        (lead_errors.RunLocked, 6),
        (PromotionRefused, 7),
        (BatchesFailed, 1),
    ],
)
def test_the_codes(kind: type[LeadScorerError], code: int) -> None:
    assert exit_code_for(_instance(kind)) == code


def test_the_most_specific_kind_wins() -> None:
    class Refused(ModelError):
        pass

    assert exit_code_for(Refused("x")) == ExitCode.MODEL
    from scorer.spark import SparkJobFailed

    assert exit_code_for(SparkJobFailed("x")) == ExitCode.BATCHES_FAILED
    # MLflow being down is not a failing store: store handling (split, retry, count) must never catch it.
    assert not issubclass(ServiceUnavailable, StoreError)
    # A promotion refused is not "some batches failed", nor a model the job cannot use.
    assert exit_code_for(PromotionRefused("x")) not in (ExitCode.BATCHES_FAILED, ExitCode.MODEL)


def test_no_code_means_two_things() -> None:
    described = [code for codes, _ in EXIT_MEANINGS for code in codes]
    assert sorted(described) == sorted(ExitCode), "every code described, once"
    assert set(EXIT_CODES.values()) <= set(ExitCode)
    # Outcomes, bugs and signals are not errors' codes: no error kind may exit with them.
    outcomes = {ExitCode.OK, ExitCode.INTERNAL, ExitCode.SIGINT, ExitCode.SIGTERM}
    assert not outcomes & set(EXIT_CODES.values())


def test_errors_show_their_hint_and_keep_their_cause() -> None:
    err = lead_errors.SchemaError("table users does not exist", hint="check LEAD_SCORER_USERS_TABLE")
    assert str(err) == "table users does not exist\n  hint: check LEAD_SCORER_USERS_TABLE"
    assert str(StoreError("plain")) == "plain"
    assert (err.message, err.hint) == ("table users does not exist", "check LEAD_SCORER_USERS_TABLE")


def test_the_old_names_are_the_same_classes() -> None:
    import models
    import registry
    from scorer.job import ScoreValueError
    from scorer.mlproject import ParameterError
    from scorer.tracking import TrackingError

    assert models.UnknownFeatureError is lead_errors.UnknownFeatureError
    assert models.TrainingError is TrainingError
    assert ScoreValueError is lead_errors.ScoreValueError
    assert TrackingError is lead_errors.TrackingError
    assert exit_code_for(ParameterError("x")) == ExitCode.SETTINGS
    assert registry.NoProductionVersion is NoProductionVersion and registry.PromotionRefused is PromotionRefused
    # `except LeadScorerError` catches everything the registry raises.
    for raised in (NoProductionVersion("x"), PromotionRefused("x"), ServiceUnavailable("x"), ModelError("x")):
        with pytest.raises(LeadScorerError):
            raise raised


def test_no_error_is_a_value_error() -> None:
    # They used to be, loosely; nothing catches ValueError around them, and a broad `except ValueError`
    # must not turn a missing feature into "a bad value".
    assert not [kind for kind in KINDS if issubclass(kind, ValueError)]


# --- the documentation and --help say what the table says -----------------------------------------------

#: The one exit-code table of the project's documentation (the README links to it).
EXIT_CODE_PAGE = ROOT / "docs" / "operations.md"


def _doc_table(path: Path, heading: str) -> list[list[str]]:
    text = path.read_text()
    after = text[text.index(f"\n{heading}\n") :]
    end = after.find("\n#", 1)
    rows = re.findall(r"^\|(.+)\|$", after[: end if end > 0 else None], flags=re.MULTILINE)
    return [[cell.strip() for cell in row.split("|")] for row in rows[2:]]  # past the header and the rule


def _label(codes: tuple[ExitCode, ...]) -> str:
    return " / ".join(str(int(c)) for c in codes)


def test_the_documented_exit_code_table_is_the_clis() -> None:
    table = _doc_table(EXIT_CODE_PAGE, "## Exit codes")
    assert [row[:2] for row in table] == [[_label(codes), meaning] for codes, meaning in EXIT_MEANINGS]
    assert all(len(row) == 3 and row[2] for row in table), "every code says what to do"


def test_the_documentation_has_one_exit_code_table() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    holding = [p.relative_to(ROOT).as_posix() for p in pages if re.search(r"^\| *130 / 143 *\|", p.read_text(), re.M)]
    assert holding == ["docs/operations.md"]


def test_help_lists_every_code() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    shown = " ".join(result.output.replace("│", " ").split())
    for codes, meaning in EXIT_MEANINGS:
        assert f"{'/'.join(str(int(c)) for c in codes)} {' '.join(meaning.split()[:3])}" in shown, codes
    assert EXIT_CODES_HELP.startswith("Exit codes: 0 ")


# --- through the command line ----------------------------------------------------------------------------


def test_cli_no_production_model_exits_3_with_its_hint(sqlite_url, mlflow_local) -> None:
    make_product(sqlite_url, users=200, seed=61)
    settings = mlflow_local.settings(sqlite_url)
    train_model(train_options(settings), artifact_location=mlflow_local.artifacts)  # registered, never promoted
    env = {
        "DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_local.tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_SCORING_EXPERIMENT": settings.scoring_experiment,
    }
    result = _cli(["run"], env)
    assert result.exit_code == ExitCode.MODEL == 3, result.output
    assert f"error: {settings.model_name} has no production version" in result.output and "hint:" in result.output
    assert "registry promote" in result.output and "Traceback" not in result.output


def _train_env(url: str, settings) -> dict[str, str]:
    """`lead-scorer train`'s environment for the test's database and its own model and training experiment."""
    return {
        "DATABASE_URL": url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "LEAD_SCORER_MODEL_NAME": settings.model_name,
        "LEAD_SCORER_TRAINING_EXPERIMENT": settings.training_experiment,
    }


def test_cli_train_with_too_few_conversions_exits_3_with_its_reason(sqlite_url, mlflow_local) -> None:
    make_product(sqlite_url, users=200, seed=62)
    execute(sqlite_url, "UPDATE users SET converted_at = NULL")  # nobody converts: nothing to learn
    settings = mlflow_local.settings(sqlite_url)
    env = _train_env(sqlite_url, settings)
    result = _cli(["train"], env)
    assert result.exit_code == ExitCode.MODEL == 3, result.output
    assert re.search(r"error: 0 of \d+ users converted in the horizon", result.output), result.output
    assert "--horizon-days" in result.output and "Traceback" not in result.output


def test_cli_rollback_without_a_previous_version_is_refused(sqlite_url, mlflow_local) -> None:
    make_product(sqlite_url, users=200, seed=63)
    settings = mlflow_local.settings(sqlite_url)
    train_model(train_options(settings, promote=True), artifact_location=mlflow_local.artifacts)
    env = {"MLFLOW_TRACKING_URI": mlflow_local.tracking_uri, "LEAD_SCORER_MODEL_NAME": settings.model_name}
    result = _cli(["registry", "rollback"], env)
    assert result.exit_code == ExitCode.PROMOTION_REFUSED == 7, result.output
    assert "records no previous production version" in result.output and "hint:" in result.output


def test_every_train_choice_reaches_the_version_and_a_bad_one_exits_2(sqlite_url, mlflow_local) -> None:
    """`lead-scorer train`'s flags become `TrainOptions` at the edge, every one of them, and a library caller
    building `TrainOptions` itself gets the same run: the version records what was asked. A bad choice is
    refused where the options are made, for both callers: exit 2 naming the flag, nothing registered."""
    from dataclasses import replace
    from datetime import timedelta

    from mlflow import MlflowClient

    from registry import Registry
    from scorer.trainer import TrainOptions
    from tests.support import NOW

    make_product(sqlite_url, users=300, seed=64)
    settings = mlflow_local.settings(sqlite_url)
    env = _train_env(sqlite_url, settings)
    reg = Registry(tracking_uri=mlflow_local.tracking_uri, model_name=settings.model_name)
    for flags, message in (
        (["--horizon-days", "0"], "--horizon-days must be positive"),
        (["--promote", "--challenger"], "--promote and --challenger both given"),
    ):
        result = _cli(["train", *flags], env)
        assert result.exit_code == ExitCode.SETTINGS == 2, result.output
        assert f"error: {message}" in result.output and "Traceback" not in result.output
    with pytest.raises(lead_errors.SettingsError, match="--horizon-days must be positive"):
        replace(train_options(settings), horizon_days=-3)
    assert reg.versions() == []

    # The library: options made without the edge. (First, so the experiment gets the test's artifact folder.)
    base = train_options(settings)
    options = TrainOptions(store=base.store, model=base.model, actor="lib", horizon_days=14, promote=True)
    assert train_model(options, artifact_location=mlflow_local.artifacts).promoted
    # The command line: every flag given, none at its default.
    as_of = (NOW - timedelta(days=20)).date()
    flags = ["--as-of", f"{as_of:%Y-%m-%d}", "--horizon-days", "10", "--top-event-types", "4", "--seed", "3"]
    result = _cli(["train", *flags, "--challenger"], env)
    assert result.exit_code == 0, result.output

    client = MlflowClient(tracking_uri=mlflow_local.tracking_uri)
    got = {}
    for v in ("1", "2"):
        version = client.get_model_version(settings.model_name, v)
        params = client.get_run(version.run_id).data.params
        got[v] = {"horizon_tag": version.tags["horizon_days"], **params}
    assert got["1"]["horizon_tag"] == got["1"]["horizon_days"] == "14"
    assert (got["1"]["seed"], got["1"]["top_event_types"]) == ("0", "12")
    assert got["2"]["horizon_tag"] == got["2"]["horizon_days"] == "10"
    assert (got["2"]["seed"], got["2"]["top_event_types"]) == ("3", "4")
    assert got["2"]["as_of"] == f"{as_of.isoformat()}T00:00:00+00:00"  # a date on the command line is UTC
    assert reg.resolve().version == "1" and reg.resolve_challenger().version == "2"
