"""structlog set-up: JSON lines when stdout is not a terminal (Render, CI), readable on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # No file argument: each logger writes to the sys.stdout of the moment (test runners swap it).
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    # MLflow and alembic are chatty on the root logger; keep their warnings, drop their info.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
