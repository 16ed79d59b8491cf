"""structlog set-up: JSON lines when stdout is not a terminal (Render, CI), readable on a terminal."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import stamina.instrumentation
import structlog
from structlog.typing import EventDict

__all__ = ["configure_logging", "redact_text"]

#: The user-info part of any URL (``//user:password@``): MLflow, psycopg and stamina quote the URLs they called.
_USERINFO = re.compile(r"(?<=//)[^/@\s'\"]+@")


def redact_text(text: str) -> str:
    """``http://user:password@host`` → ``http://***@host``, anywhere in ``text``."""
    return _USERINFO.sub("***@", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v) for v in value)
    return value


def _redact_event(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """Every value of every event, ours or a library's (stamina's retry lines carry the exception text)."""
    return {k: _redact(v) for k, v in event.items()}


class _RedactRecords(logging.Filter):
    """The same for the standard logging records MLflow and urllib3 write to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _on_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's retry line without the call's arguments: a batch's read lists ~1,000 ids (16 KB a line)."""
    first = str(details.caused_by).splitlines()[0] if str(details.caused_by) else ""
    structlog.get_logger("lead_scorer.retry").warning(
        "retry_scheduled",
        callable=".".join(details.name.replace(".<locals>.<lambda>", "").split(".")[-2:]),
        retry_num=details.retry_num,
        wait_for=round(details.wait_for, 2),
        waited_so_far=round(details.waited_so_far, 2),
        caused_by=f"{type(details.caused_by).__name__}: {first}"[:300],
    )


def configure_logging(*, json: bool | None = None, level: str = "INFO") -> None:
    """Configure once, at the edge. ``json=None`` decides by whether stdout is a terminal."""
    use_json = not sys.stdout.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A failure's traceback as structured data (frames, locals off), then redacted like the rest.
            *([structlog.processors.dict_tracebacks] if use_json else []),
            _redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # No file argument: each logger writes to the sys.stdout of the moment (test runners swap it).
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    stamina.instrumentation.set_on_retry_hooks([_on_retry])
    # MLflow and alembic are chatty on the root logger; keep their warnings, drop their info.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactRecords) for f in handler.filters):
            handler.addFilter(_RedactRecords())
    for noisy in ("mlflow", "alembic", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
