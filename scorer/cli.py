"""`lead-scorer`: a thin command line over `scorer.app` and `scorer.trainer`; settings are read here, once,
and turned into the library's options by `scorer.edge`."""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    # Typer 0.29 vendors click; its group's `invoke` takes that copy's Context (typer.Context subclasses it).
    from typer._click.core import Context as VendoredContext

from lead_errors import (
    BatchesFailed,
    ExitCode,
    LeadScorerError,
    ModelError,
    PromotionRefused,
    RunLocked,
    ServiceError,
    SettingsError,
    StoreError,
    TrackingError,
)
from scorer.logs import LEVELS, add_secrets, configure_logging, forget_secrets, redact_text, secrets_in
from scorer.settings import Settings, load_settings
from scorer.stop import StopSignal


class _ErrorEdge(TyperGroup):
    """The one place an error leaves a command: every command and sub-command (and the app's callback) runs
    inside `invoke`, so a project error exits with its code and hint and anything else, a bug wherever it is
    (a command's printing included), exits 70 with its redacted traceback. Click's own exits and usage errors
    (`typer.Exit`, a bad flag: 2) and Ctrl-C pass through as they are."""

    def invoke(self, ctx: VendoredContext) -> Any:
        try:
            # Before anything can fail and print, and inside the edge: a bug here is a bug like any other.
            # This invocation's secrets only: a test runs many in one process.
            forget_secrets()
            add_secrets(secrets_in(settings={}, environ=os.environ))
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # the last: click's usage errors (exit 2)
            raise
        except Exception as exc:
            raise _fail(exc) from exc


app = typer.Typer(
    cls=_ErrorEdge,
    help="Score every lead with the production model from the MLflow registry and write lead_score back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
registry_app = typer.Typer(help="Model versions: list, promote, roll back, challenge.", no_args_is_help=True)
db_app = typer.Typer(help="The SQL the job needs: print it or apply it.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
app.add_typer(db_app, name="db")

#: Error kind → exit code, the one place that says it. The most specific kind an error is wins (its class's
#: MRO is looked up in order), so a subclass may get a code of its own. No code means two things.
EXIT_CODES: Mapping[type[LeadScorerError], ExitCode] = MappingProxyType(
    {
        BatchesFailed: ExitCode.BATCHES_FAILED,
        SettingsError: ExitCode.SETTINGS,
        ModelError: ExitCode.MODEL,
        StoreError: ExitCode.UNREACHABLE,
        ServiceError: ExitCode.UNREACHABLE,
        TrackingError: ExitCode.TRACKING,
        RunLocked: ExitCode.BUSY,
        PromotionRefused: ExitCode.PROMOTION_REFUSED,
    }
)

#: What each code means, for --help and docs/operations.md (tests/test_errors.py holds its table to this).
EXIT_MEANINGS: tuple[tuple[tuple[ExitCode, ...], str], ...] = (
    ((ExitCode.OK,), "every selected user scored"),
    ((ExitCode.BATCHES_FAILED,), "some batches failed after retries, the others were written"),
    ((ExitCode.SETTINGS,), "invalid settings or usage (the message names the variable or flag)"),
    (
        (ExitCode.MODEL,),
        "no usable model: none in production, one the job must not or cannot load or feed, or (`train`) "
        "data that cannot train one",
    ),
    (
        (ExitCode.UNREACHABLE,),
        "the database or the MLflow server unreachable or refusing: wrong key or credentials, missing "
        "table/column/function",
    ),
    ((ExitCode.TRACKING,), "every score written, but the MLflow run record could not be saved"),
    ((ExitCode.BUSY,), "another run of the same model holds the database's run lock: this one did nothing"),
    (
        (ExitCode.PROMOTION_REFUSED,),
        "a promotion or rollback was refused: production is unchanged (`--force` overrides)",
    ),
    ((ExitCode.INTERNAL,), "a bug in lead-scorer: its traceback is printed"),
    ((ExitCode.SIGINT, ExitCode.SIGTERM), "stopped by SIGINT / SIGTERM after finishing the current batch"),
)

EXIT_CODES_HELP = (
    "Exit codes: "
    + "; ".join(f"{'/'.join(str(int(c)) for c in codes)} {meaning}" for codes, meaning in EXIT_MEANINGS)
    + "."
)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The code `lead-scorer` exits with when ``exc`` stops a command: anything not in `EXIT_CODES` is a bug."""
    for kind in type(exc).__mro__:
        code = EXIT_CODES.get(kind)
        if code is not None:
            return code
    return ExitCode.INTERNAL


def _fail(exc: BaseException) -> typer.Exit:
    """Print a clear error (never a secret; a traceback only for a bug) and pick the exit code."""
    code = exit_code_for(exc)
    if code == ExitCode.INTERNAL:
        # Not one of the project's errors: a bug. Its traceback (redacted) and a code of its own, not 1,
        # which means "some batches failed".
        trace = "".join(traceback.format_exception(exc))
        typer.echo(redact_text(f"internal error (a bug in lead-scorer, please report it):\n{trace}"), err=True)
    else:
        typer.echo(redact_text(f"error: {exc}"), err=True)
    return typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    """The settings, once per command; every secret they hold is redacted from here on (a ``.env`` file's too)."""
    settings = load_settings(**overrides)
    add_secrets(secrets_in(settings=dict(settings), environ={}))
    return settings


@app.callback()
def _main(
    json_logs: Annotated[
        bool | None, typer.Option("--json-logs/--console-logs", help="Log format; default: JSON unless a terminal.")
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="LEAD_SCORER_LOG_LEVEL")] = "INFO",
) -> None:
    if log_level.upper() not in LEVELS:
        raise SettingsError(
            f"LEAD_SCORER_LOG_LEVEL (--log-level) must be one of {', '.join(LEVELS)}",
            hint="set LEAD_SCORER_LOG_LEVEL=INFO (or unset it)",
        )
    configure_logging(json=json_logs, level=log_level.upper())
    # MLflow's client retries 7 times by default (~4 minutes against a dead server). Bound it unless the
    # operator chose otherwise, so an unreachable server fails in seconds, not minutes. MLflow reads these
    # from the environment only (no client or call argument takes them), so the CLI, the process's edge,
    # sets them for its own process; the library never writes the environment.
    for name, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
        # MLflow prints "View run … at <tracking URI>" to stdout, password included; the job logs a redacted one.
        ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"),
        # MLflow sets its own logger's level when it is first imported, which is after this (each command
        # imports it when it needs it): INFO lines such as "Creating initial MLflow database tables..." in the
        # demo's output. Its warnings stay.
        ("MLFLOW_LOGGING_LEVEL", "WARNING"),
    ):
        os.environ.setdefault(name, value)


TrackingOpt = Annotated[str | None, typer.Option("--tracking-uri", help="Overrides MLFLOW_TRACKING_URI.")]


@app.command(epilog=EXIT_CODES_HELP)
def run(
    select: Annotated[
        str | None,
        typer.Option(
            help="stale (default): no score, another model, or new events / a new day since it was scored; "
            "unscored: no score; all: everyone."
        ),
    ] = None,
    population: Annotated[
        str | None,
        typer.Option(help="leads (default): open leads only (no converted_at); everyone: customers too."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Users per batch (default 2000).")] = None,
    limit: Annotated[int | None, typer.Option(help="Score at most this many users.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Score but write nothing to the database.")] = False,
    model_version: Annotated[str | None, typer.Option(help="Pin a version instead of the production one.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="Overrides MLFLOW_TRACKING_URI.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Default: on a terminal.")] = None,
) -> None:
    """Score the selected users with the production model and write lead_score (DATABASE_URL)."""
    settings = _settings(
        select=select,
        population=population,
        batch_size=batch_size,
        limit=limit,
        dry_run=dry_run or None,
        model_version=model_version,
        mlflow_tracking_uri=tracking_uri,
    )
    stop = StopSignal()
    stop.install()
    code = _run_with_progress(settings, show=sys.stderr.isatty() if progress is None else progress, stop=stop)
    raise typer.Exit(code)


def _run_with_progress(settings: Settings, *, show: bool, stop: StopSignal | None = None, **kwargs: Any) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with _loading():
        from scorer.app import run_scoring
        from scorer.edge import run_options

    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not show,
    )
    task = bar.add_task("users", total=None)
    options = run_options(settings)
    with bar:
        summary = run_scoring(
            options,
            on_start=(lambda total: bar.update(task, total=total)) if show else None,
            on_batch=lambda r: bar.advance(task, r.users),
            stop=stop,
            **kwargs,
        )
    if summary.stopped and stop is not None and stop.signal is not None:
        return 128 + stop.signal
    return summary.exit_code


@app.command()
def explain(
    user_id: Annotated[str, typer.Argument(help="The user's id, as stored in the users table.")],
    model_version: Annotated[str | None, typer.Option(help="Pin a version instead of the production one.")] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Score one user from the live data with the production model and say why (nothing is written)."""
    with _loading():
        from scorer.app import explain_user
        from scorer.edge import explain_options

    settings = _settings(model_version=model_version, mlflow_tracking_uri=tracking_uri)
    out = explain_user(explain_options(settings), user_id)
    stored = "none" if out.stored_score is None else f"{out.stored_score:.4f} (model {out.stored_model})"
    typer.echo(f"user {out.user_id} (visitor {out.visitor_id or 'none'})")
    typer.echo(f"  score now   {out.score:.4f}  with {out.model.name} v{out.model.version}")
    typer.echo(f"  stored      {stored}")
    if out.reasons is None:
        typer.echo("  reasons     this model does not break its score down into reasons")
    elif not out.reasons:
        typer.echo("  reasons     nothing stands out: the score is close to the model's baseline")
    else:
        typer.echo("  reasons")
        for r in out.reasons:
            typer.echo(f"    {'+' if r.effect > 0 else '-'} {r.text}  ({r.effect:+.2f} log-odds)")
    typer.echo("  features")
    width = max(len(k) for k in out.features)
    for k, v in out.features.items():
        typer.echo(f"    {k:<{width}}  {v:g}")


@app.command(epilog=EXIT_CODES_HELP)
def train(
    as_of: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Cutoff date (UTC); default: horizon days ago.")
    ] = None,
    horizon_days: Annotated[int, typer.Option(help="Label: converted within this many days after the cutoff.")] = 30,
    top_event_types: Annotated[int, typer.Option(help="Event types (most frequent first) the model uses.")] = 12,
    promote: Annotated[bool, typer.Option("--promote", help="Promote the new version to production.")] = False,
    challenger: Annotated[
        bool,
        typer.Option(
            "--challenger", help="Make the new version the challenger: shadow-scored daily beside production."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed of the holdout split and the model.")] = 0,
    tracking_uri: Annotated[str | None, typer.Option(help="Overrides MLFLOW_TRACKING_URI.")] = None,
) -> None:
    """Train on the configured database (point in time), evaluate on a holdout, register a new version."""
    with _loading():
        from scorer.edge import train_options
        from scorer.trainer import train_model

    settings = _settings(mlflow_tracking_uri=tracking_uri)
    out = train_model(
        train_options(
            settings,
            as_of=as_of,
            horizon_days=horizon_days,
            top_event_types=top_event_types,
            promote=promote,
            challenger=challenger,
            seed=seed,
        )
    )
    m = out.result.metrics
    typer.echo(
        f"registered {out.version.name} version {out.version.version} on {out.users} users "
        f"(ROC AUC {m['roc_auc']:.3f}, PR AUC {m['pr_auc']:.3f}, top-decile lift {m['top_decile_lift']:.2f})"
        + (
            " and promoted it to production"
            if out.promoted
            else " and made it the challenger: the daily run shadow-scores it beside production"
            if out.challenger
            else f"; promote it with `lead-scorer registry promote {out.version.version}`"
        )
    )


@app.command(epilog=EXIT_CODES_HELP)
def evaluate(
    version: Annotated[
        str, typer.Option(help="The version to evaluate: a number, or production (default).")
    ] = "production",
    from_: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First cohort day (UTC); at or after the first honest day."),
    ] = None,
    to: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last cohort day; default: the last whose horizon has passed."),
    ] = None,
    every: Annotated[int, typer.Option(help="Days between cohorts.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    tracking_uri: TrackingOpt = None,
) -> None:
    """How a version's scores predicted who converted, on cohorts after its training (DATABASE_URL).

    A cohort is the leads open on a day T, labelled by whether they converted within the version's horizon H,
    scored on features as of T. Only honest cohorts count (T at or after the training cutoff plus H). Records an
    MLflow run (experiment lead-scorer/evaluation) and the latest live figures on the version.
    """
    with _loading():
        from scorer.edge import evaluate_options
        from scorer.evaluation import evaluate_version

    if as_json:  # stdout holds the one JSON object; the log lines go to stderr
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    settings = _settings(mlflow_tracking_uri=tracking_uri)
    out = evaluate_version(
        evaluate_options(settings),
        version=version,
        start=from_.date() if from_ else None,
        end=to.date() if to else None,
        every=every,
    )
    if as_json:
        typer.echo(json.dumps(out.as_json(), indent=2))
        return
    w = out.window
    typer.echo(
        f"version {out.version.version}: trained on leads of {w.as_of:%Y-%m-%d}, {w.horizon_days}-day horizon "
        f"({w.source}); honest cohorts from {w.first_honest_day:%Y-%m-%d}"
    )
    typer.echo(
        f"{'cohort day':<11} {'n':>9} {'converted':>9}  {'ROC AUC [95 % CI]':<22} {'lift [95 % CI]':<19} ECE [95 % CI]"
    )

    def cell(c: dict[str, Any], key: str, digits: int) -> str:
        ci = c[f"{key}_ci"]
        interval = f" [{ci[0]:.{digits}f}\N{EN DASH}{ci[1]:.{digits}f}]" if ci else ""
        return "-" if c[key] is None else f"{c[key]:.{digits}f}{interval}"

    for c in [*out.cohorts, {**out.pooled, "as_of": "pooled"}]:
        auc, lift, ece = cell(c, "roc_auc", 3), cell(c, "top_decile_lift", 2), cell(c, "ece", 3)
        typer.echo(f"{c['as_of']:<11} {c['n']:>9,} {c['positives']:>9,}  {auc:<22} {lift:<19} {ece}")
    pooled = out.pooled["roc_auc"]
    holdout = "no holdout figure (imported)" if out.holdout_auc is None else f"holdout ROC AUC {out.holdout_auc:.3f}"
    live = "no live AUC (a class is missing)" if pooled is None else f"live pooled ROC AUC {pooled:.3f}"
    typer.echo(f"{live} vs {holdout}; run {out.run_id}")


def _registry(tracking_uri: str | None, settings: Settings | None = None) -> Any:
    from scorer.edge import registry

    return registry(settings or _settings(mlflow_tracking_uri=tracking_uri))


@registry_app.command("list")
def registry_list(tracking_uri: TrackingOpt = None) -> None:
    """Every version with its stage, aliases, holdout ROC AUC and newest live ROC AUC (with its 95 % interval
    and cohort day: `lead-scorer evaluate` or the daily check measured it)."""
    reg = _registry(tracking_uri)
    rows = reg.versions()
    if not rows:
        typer.echo(f"no versions of {reg.model_name} yet: `lead-scorer train`")
        return
    typer.echo(
        f"{'version':>7}  {'aliases':<12} {'stage':<11} {'holdout':>7}  {'live roc_auc [95 %], cohort':<32} "
        "created           promoted_by"
    )
    for r in rows:
        typer.echo(
            f"{r['version']:>7}  {','.join(r['aliases']) or '-':<12} {_stage(r['stage']):<11} "
            f"{_auc(r['roc_auc']):>7}  {_live(r):<32} {r['created']:%Y-%m-%d %H:%M}  {r['promoted_by'] or '-'}"
        )


def _auc(raw: str | None) -> str:
    try:
        return f"{float(raw):.3f}" if raw else "-"
    except ValueError:
        return raw or "-"


def _live(row: dict[str, Any]) -> str:
    """e.g. "0.812 [0.781 to 0.843] 2026-11-05", with an en dash; "-" when never measured live."""
    if not row.get("live_roc_auc"):
        return "-"
    try:
        ci = json.loads(row.get("live_roc_auc_ci") or "null")
    except ValueError:
        ci = None
    interval = f" [{ci[0]:.3f}\N{EN DASH}{ci[1]:.3f}]" if ci else ""
    return f"{_auc(row['live_roc_auc'])}{interval} {row.get('live_as_of') or ''}".strip()


def _stage(stage: str | None) -> str:
    """MLflow spells "no stage" as the string "None"."""
    return stage if stage not in (None, "", "None") else "-"


@registry_app.command("promote")
def registry_promote(
    version: Annotated[str, typer.Argument(help="The version to make production.")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if its holdout ROC AUC is lower or the job would refuse it.")
    ] = False,
    actor: Annotated[
        str | None, typer.Option(help="Recorded as promoted_by; default: MLFLOW_TRACKING_USERNAME, then $USER.")
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Point the `production` alias (and the Production stage) at VERSION; the next run uses it.

    Refused (unless --force) when VERSION ranks leads significantly worse than production on live cohorts
    after both versions' training (with DATABASE_URL and at least LEAD_SCORER_MIN_CONVERSIONS conversions;
    otherwise when its holdout ROC AUC is lower), or when the job could not load it: a pickle, types outside
    the skops allowlist, or features the catalog cannot build. --force is recorded on the version.
    """
    with _loading():
        from models import FeatureCatalog
        from scorer.edge import actor as default_actor
        from scorer.edge import compare_options, load_policy
        from scorer.promotion import promotion_check

    settings = _settings(mlflow_tracking_uri=tracking_uri)
    reg = _registry(tracking_uri, settings)
    check = promotion_check(compare_options(settings))
    seen: list[Any] = []

    def live_check(candidate: Any, production: Any) -> Any:
        seen.append(check(candidate, production))
        return seen[-1]

    try:
        previous, new = reg.promote(
            version,
            force=force,
            actor=actor or default_actor(),
            policy=load_policy(settings),
            check_inputs=FeatureCatalog().check,
            live_check=live_check,
        )
    finally:
        for evidence in seen:  # what decided, before the outcome (or the refusal) is printed
            basis = "live evidence" if evidence.decided else "the holdout rule (no live verdict)"
            typer.echo(f"decided on {basis}: {evidence.summary}", err=True)
    typer.echo(f"production is now version {new} (was {previous or 'none'})" + (" (forced)" if force else ""))


@registry_app.command("compare", epilog=EXIT_CODES_HELP)
def registry_compare(
    a: Annotated[str | None, typer.Argument(help="Version A (default: production).")] = None,
    b: Annotated[str | None, typer.Argument(help="Version B (default: the challenger).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Versions A and B side by side: holdout figures; live ROC AUC on the same cohorts after both versions'
    training, with the paired difference B - A and its 95 % interval (DeLong); the latest shadow agreement; a
    verdict and what to do (DATABASE_URL). The comparison goes on B's version page.
    """
    with _loading():
        from scorer.edge import compare_options
        from scorer.promotion import compare_versions

    if as_json:  # stdout holds the one JSON object; the log lines go to stderr
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    settings = _settings(mlflow_tracking_uri=tracking_uri)
    out = compare_versions(compare_options(settings), a=a, b=b)
    doc = out.as_json()
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    live, sides = doc["live"], (doc["a"], doc["b"])
    typer.echo(f"{'':<34} {'A: v' + sides[0]['version']:>12} {'B: v' + sides[1]['version']:>12}")
    for key in ("roc_auc", "pr_auc", "top_decile_lift", "brier", "ece"):
        cells = [f"{s['holdout'][key]:.3f}" if key in s["holdout"] else "-" for s in sides]
        typer.echo(f"{'holdout ' + key:<34} {cells[0]:>12} {cells[1]:>12}")
    cells = [s["first_honest_day"] for s in sides]
    typer.echo(f"{'first honest day':<34} {cells[0]:>12} {cells[1]:>12}")
    aucs = ["-" if live[k] is None else f"{live[k]:.3f}" for k in ("roc_auc_a", "roc_auc_b")]
    typer.echo(f"{'live ROC AUC (same leads)':<34} {aucs[0]:>12} {aucs[1]:>12}")
    typer.echo(f"live: {out.summary()}")
    shadow = doc["shadow"]
    if shadow:
        corr = shadow.get("rank_corr")
        typer.echo(
            f"latest shadow ({shadow['started']}, run {shadow['run_id']}): "
            + ("no rank correlation" if corr is None else f"rank correlation {corr:.3f}")
            + (f", top-decile overlap {shadow['top_decile_overlap']:.0%}" if "top_decile_overlap" in shadow else "")
        )
    typer.echo(f"verdict: {doc['verdict']}: {doc['advice']}")


@registry_app.command("challenge")
def registry_challenge(
    version: Annotated[str | None, typer.Argument(help="The version to shadow-score beside production.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the challenger alias: no more shadow scores.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Set it even if the job would refuse to load it.")] = False,
    actor: Annotated[
        str | None, typer.Option(help="Recorded as challenger_by; default: MLFLOW_TRACKING_USERNAME, then $USER.")
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Point the challenger alias (LEAD_SCORER_CHALLENGER_ALIAS) at VERSION, or remove it with --clear.

    Each daily run scores the challenger beside production into lead_score_shadow (never into users) and logs
    the comparison under challenger/. Refused (unless --force) when the job could not load VERSION.
    """
    from models import FeatureCatalog
    from scorer.edge import actor as default_actor
    from scorer.edge import load_policy

    if clear == (version is not None):
        raise SettingsError("give a VERSION or --clear", hint="e.g. `lead-scorer registry challenge 7`")
    settings = _settings(mlflow_tracking_uri=tracking_uri)
    reg = _registry(tracking_uri, settings)
    if clear:
        was = reg.clear_challenger()
        typer.echo(f"no challenger now (was version {was})" if was else "there was no challenger")
        return
    assert version is not None
    was = reg.challenge(
        version,
        actor=actor or default_actor(),
        force=force,
        policy=load_policy(settings),
        check_inputs=FeatureCatalog().check,
    )
    typer.echo(f"challenger is now version {version} (was {was or 'none'}): the next run shadow-scores it")


@registry_app.command("rollback")
def registry_rollback(tracking_uri: TrackingOpt = None) -> None:
    """Restore the version that was production before the current one."""
    from scorer.edge import actor

    reg = _registry(tracking_uri)
    old, new = reg.rollback(actor=actor())
    typer.echo(f"rolled back: production is now version {new} (was {old})")


@registry_app.command("import-joblib")
def registry_import_joblib(
    path: Annotated[Path, typer.Argument(help="A scikit-learn pipeline saved with joblib.")],
    trust: Annotated[bool, typer.Option("--trust", help="I trust this file: loading a pickle runs its code.")] = False,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="The training cutoff it was fitted at (UTC); its live cohorts are honest from --as-of plus "
            "--horizon-days. Default: it counts as trained on everything up to today.",
        ),
    ] = None,
    horizon_days: Annotated[
        int | None, typer.Option(help="Its label: converted within this many days after the cutoff (default 30).")
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Register a legacy joblib pipeline as a new version, re-saved in the safe skops format."""
    with _loading():
        from scorer.edge import import_options
        from scorer.trainer import import_joblib

    options = import_options(
        _settings(mlflow_tracking_uri=tracking_uri), trust=trust, as_of=as_of, horizon_days=horizon_days
    )
    version = import_joblib(options, path)
    typer.echo(
        f"registered {path.name} as {version.name} version {version.version} (skops); "
        f"promote it with `lead-scorer registry promote {version.version} --force` (it has no holdout metrics)"
    )
    from registry import TAG_TRUSTED_TYPES

    extra = options.model.policy.untrusted(json.loads(version.tags.get(TAG_TRUSTED_TYPES) or "[]"))
    if extra:
        typer.echo(
            f"note: it asks to trust types outside the job's allowlist; the job loads it only with "
            f"LEAD_SCORER_SKOPS_TRUSTED_TYPES='{json.dumps(extra)}'"
        )


@db_app.command("sql")
def db_sql(
    dialect: Annotated[str, typer.Option(help="postgresql (Supabase) or sqlite.")] = "postgresql",
) -> None:
    """Print the SQL that adds the lead_score columns and indexes (paste into Supabase's SQL editor)."""
    from scorer.edge import store_options
    from scorer.schema import schema_sql

    names = store_options(_settings()).names
    if dialect not in ("postgresql", "sqlite"):
        raise SettingsError("--dialect must be postgresql or sqlite")
    typer.echo(schema_sql(dialect=dialect, names=names), nl=False)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply that SQL through DATABASE_URL. Applying it again is harmless."""
    import sqlalchemy as sa

    from scorer.edge import migrate_options
    from scorer.schema import migrate
    from scorer.stores.sql import engine_for, redact_url
    from scorer.stores.sqlite_files import sqlite_refusal

    options = migrate_options(_settings())
    url = options.database_url or ""  # never empty: migrate_options requires it
    try:
        engine = engine_for(url)
        done = migrate(engine, names=options.names)
        engine.dispose()
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        raise sqlite_refusal(url, first) or StoreError(
            f"the migration failed: {first}",
            hint="a lock timeout means the product held a table: apply it again at a quieter time (what was "
            "applied stays, and applying again is harmless; the indexes are built without blocking writes but "
            "wait for the transactions open on their table)",
        ) from exc
    typer.echo(f"applied {len(done)} statement(s) to {redact_url(url)}")


@app.command(epilog="A second run reuses DIR's data and model and scores what is stale; --reset starts over.")
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where the demo's databases live.")] = Path("lead-scorer-demo"),
    users: Annotated[int, typer.Option(help="Synthetic users to generate.")] = 5_000,
    reset: Annotated[bool, typer.Option("--reset", help="Delete DIR's data and model first.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 42,
) -> None:
    """Everything on a laptop: synthetic data in SQLite, a local MLflow store, train, promote, score."""
    from scorer.demo import run_demo
    from scorer.edge import actor

    code = run_demo(dir.resolve(), users=users, reset=reset, seed=seed, promoted_by=actor())
    raise typer.Exit(code)


spark_app = typer.Typer(help="Score on Apache Spark when one machine is not enough (lead-scorer[spark]).")
app.add_typer(spark_app, name="spark")


@spark_app.command("run", epilog=EXIT_CODES_HELP)
def spark_run(
    users: Annotated[str, typer.Option(help="db (DATABASE_URL over JDBC, in key ranges) or parquet:PATH.")] = "db",
    events: Annotated[str, typer.Option(help="db (DATABASE_URL over JDBC) or parquet:PATH.")] = "db",
    output: Annotated[
        str | None, typer.Option(help="db (update-only; the default for --users db) or parquet:PATH (a score table).")
    ] = None,
    master: Annotated[str | None, typer.Option(help="Spark master; default: spark-submit's, else local[*].")] = None,
    partitions: Annotated[int | None, typer.Option(help="Parallel reads and shuffle partitions.")] = None,
    group_users: Annotated[int, typer.Option(help="At most about this many users per pandas group.")] = 50_000,
    chunk_rows: Annotated[int, typer.Option(help="Users per staging write and UPDATE.")] = 5_000,
    jdbc_jar: Annotated[str | None, typer.Option(help="PostgreSQL JDBC jar (default: Debian's).")] = None,
    population: Annotated[str | None, typer.Option(help="leads (default) or everyone.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Score but write nothing.")] = False,
    model_version: Annotated[str | None, typer.Option(help="Pin a version instead of the production one.")] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Score the whole population (--select all) on Spark with the production model; one MLflow run."""
    settings = _settings(
        population=population, dry_run=dry_run or None, model_version=model_version, mlflow_tracking_uri=tracking_uri
    )
    from scorer.edge import run_options
    from scorer.spark import SparkOptions, require_pyspark, run_spark

    require_pyspark()  # first, as before the options: "install the extra" is the error that helps
    stop = StopSignal()
    stop.install()
    summary = run_spark(
        run_options(settings),
        SparkOptions(
            users=users,
            events=events,
            output=output,
            master=master,
            partitions=partitions,
            group_users=group_users,
            chunk_rows=chunk_rows,
            jdbc_jar=jdbc_jar,
        ),
        stop=stop,
    )
    if summary.stopped and stop.signal is not None:
        raise typer.Exit(128 + stop.signal)
    raise typer.Exit(summary.exit_code)


class _Console:
    """What only the console script does (`main`); the Typer app called as a library, or by a test's
    CliRunner, keeps the interpreter's defaults."""

    on = False
    exit_code: int | None = None


@contextmanager
def _loading() -> Iterator[None]:
    """mlflow, scikit-learn, skops and pandas make a few million long-lived objects as they load, and the
    cyclic collector walked all of them several times meanwhile (gen-2 passes: 1 to 2.5 s of every run's
    start, measured with gc.callbacks). In the console script it is off while they load, and what they made
    is then frozen out of its sight (`gc.freeze`): later passes see only what the run itself makes."""
    if not _Console.on:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _skip_teardown() -> None:
    """Registered as `main` starts, so it runs after every exit hook registered later (atexit runs them last
    in, first out: MLflow's, temporary directories' finalizers, worker pools'): everything is flushed and closed
    by then; what is left is the interpreter freeing every module's objects one by one, a second or more after
    a run's last line. A hook registered before `main` (logging's is the only one when the console script
    starts) would not run: logging is shut down here, and a wrapper that calls `main` does its own work when
    `main` returns (benchmarks/counted.py). Only for an exit code we set."""
    if _Console.exit_code is None or _measured():
        return
    logging.shutdown()  # registered by logging before us, so it would run after us
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_Console.exit_code)


def _measured() -> bool:
    """Whether coverage.py is recording this process: its data is written by an exit hook of the interpreter's
    own, which `os._exit` would skip (the test suite's `lead-scorer` children)."""
    coverage = sys.modules.get("coverage")
    return coverage is not None and coverage.Coverage.current() is not None


def main() -> None:
    """The console script `lead-scorer`."""
    _Console.on = True
    atexit.register(_skip_teardown)
    try:
        app()
    except KeyboardInterrupt:
        _Console.exit_code = 130
        sys.exit(130)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            _Console.exit_code = exc.code or 0
        raise


__all__ = ["EXIT_CODES", "EXIT_CODES_HELP", "EXIT_MEANINGS", "app", "exit_code_for", "main"]
