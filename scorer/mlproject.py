"""The MLproject's entry points: MLflow passes every parameter as text and validates none of them, so
this module checks each one against its type and hands a clean command line to `lead-scorer`.

    mlflow run . -e score --env-manager local -P select=all -P batch_size=5000
    # → python -m scorer.mlproject score select=all batch_size=5000 limit= dry_run=false model_version=
    # → lead-scorer run --select all --batch-size 5000

An empty value means "not set" (MLproject parameters cannot be absent). ``mlflow run`` exports
``MLFLOW_RUN_ID``; the job then logs into that run instead of creating its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from lead_errors import SettingsError

__all__ = ["ParameterError", "to_argv"]


#: An MLproject parameter with a value its type does not allow: invalid settings, as the CLI's own.
ParameterError = SettingsError


def _integer(minimum: int) -> Callable[[str, str], str]:
    # MLflow's own "float" type would accept 2000.5; a batch size or a seed is a whole number.
    def check(name: str, raw: str) -> str:
        try:
            value = float(raw)
        except ValueError as exc:
            raise ParameterError(f"{name} must be a whole number, got {raw!r}") from exc
        if not value.is_integer() or value < minimum:
            raise ParameterError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
        return str(int(value))

    return check


def _flag(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ParameterError(f"{name} must be true or false, got {raw!r}")


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def check(name: str, raw: str) -> str:
        if raw not in allowed:
            raise ParameterError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    return check


def _date(name: str, raw: str) -> str:
    from datetime import date

    try:
        date.fromisoformat(raw)
    except ValueError as exc:
        raise ParameterError(f"{name} must be a date like 2026-10-01, got {raw!r}") from exc
    return raw


def _version(name: str, raw: str) -> str:
    if not raw.isdigit():
        raise ParameterError(f"{name} must be a registered version number such as 3, got {raw!r}")
    return raw


# parameter → (CLI option, check); a check returning a bool makes the option a flag.
_ENTRY_POINTS: dict[str, tuple[str, dict[str, tuple[str, Callable[[str, str], Any]]]]] = {
    "score": (
        "run",
        {
            "select": ("--select", _choice("unscored", "stale", "all")),
            "batch_size": ("--batch-size", _integer(1)),
            "limit": ("--limit", _integer(1)),
            "dry_run": ("--dry-run", _flag),
            "model_version": ("--model-version", _version),
        },
    ),
    "train": (
        "train",
        {
            "as_of": ("--as-of", _date),
            "horizon_days": ("--horizon-days", _integer(1)),
            "top_event_types": ("--top-event-types", _integer(1)),
            "promote": ("--promote", _flag),
            "challenger": ("--challenger", _flag),
            "seed": ("--seed", _integer(0)),
        },
    ),
}


def to_argv(entry_point: str, params: list[str]) -> list[str]:
    """The `lead-scorer` arguments for an entry point's ``name=value`` parameters.

    >>> to_argv("score", ["select=all", "batch_size=5000.0", "limit=", "dry_run=false"])
    ['run', '--select', 'all', '--batch-size', '5000']
    """
    if entry_point not in _ENTRY_POINTS:
        raise ParameterError(f"unknown entry point {entry_point!r}; the MLproject has: {', '.join(_ENTRY_POINTS)}")
    command, spec = _ENTRY_POINTS[entry_point]
    argv = [command]
    for item in params:
        name, sep, raw = item.partition("=")
        if not sep or name not in spec:
            raise ParameterError(f"unknown parameter {name!r} for {entry_point}; it takes: {', '.join(spec)}")
        raw = raw.strip()
        if not raw:
            continue
        option, check = spec[name]
        value = check(name, raw)
        if value is True:
            argv.append(option)
        elif value is not False:
            argv += [option, value]
    return argv


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit(f"usage: python -m scorer.mlproject {{{'|'.join(_ENTRY_POINTS)}}} name=value ...")
    try:
        cli_args = to_argv(args[0], args[1:])
    except ParameterError as exc:
        from scorer.cli import exit_code_for

        print(f"error: invalid MLproject parameter: {exc}", file=sys.stderr)
        sys.exit(exit_code_for(exc))
    from scorer.cli import app

    app(args=cli_args, prog_name="lead-scorer")


if __name__ == "__main__":
    main()
