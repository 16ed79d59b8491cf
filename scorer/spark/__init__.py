"""Scale-out: the same registry version and feature catalog, scored on Apache Spark (``lead-scorer[spark]``).

pyspark is optional: this module imports it only when a run starts, and says how to install it when it
is missing (exit 2). The run itself is `scorer.spark._run.run_spark`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lead_errors import BatchesFailed, SettingsError

if TYPE_CHECKING:
    from scorer.app import RunOptions
    from scorer.job import RunSummary

__all__ = [
    "INSTALL_HINT",
    "Source",
    "SparkJobFailed",
    "SparkOptions",
    "install_hint",
    "require_pyspark",
    "run_spark",
]

INSTALL_HINT = "pip install 'lead-scorer[spark]'"


def install_hint() -> str:
    """How to get pyspark here: `INSTALL_HINT` where pip is; the job's image has no pip (and no Java), so there
    the way is another environment.

    >>> install_hint() in (INSTALL_HINT, IMAGE_HINT)
    True
    """
    import importlib.util

    return INSTALL_HINT if importlib.util.find_spec("pip") is not None else IMAGE_HINT


IMAGE_HINT = (
    "this installation has no pip (the job's image is made for `lead-scorer run`): run `lead-scorer spark` "
    "where Spark runs, from an environment with lead-scorer[spark] installed (docs/image.md)"
)


class SparkJobFailed(BatchesFailed):
    """A Spark job failed after its task retries. The key ranges whose tasks finished are written (update-only
    and idempotent, so the next run rewrites nothing twice); the MLflow run is FAILED."""


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where users or events come from, or where scores go: the database (``db``) or ``parquet:PATH``.

    >>> Source.parse("parquet:/lake/events", what="events")
    Source(kind='parquet', path='/lake/events')
    """

    kind: Literal["db", "parquet"]
    path: str | None = None

    @classmethod
    def parse(cls, text: str, *, what: str) -> Source:
        value = text.strip()
        if value in ("db", "database"):
            return cls(kind="db")
        if value.startswith("parquet:") and value[len("parquet:") :].strip():
            return cls(kind="parquet", path=value[len("parquet:") :].strip())
        raise SettingsError(
            f"--{what} {text!r} is neither db nor parquet:PATH",
            hint=f"e.g. --{what} db (DATABASE_URL, over JDBC) or --{what} parquet:/lake/{what}",
        )

    def __str__(self) -> str:
        return "db" if self.kind == "db" else f"parquet:{self.path}"


@dataclass(frozen=True, kw_only=True)
class SparkOptions:
    """What `run_spark` is told beside the run's options (`lead-scorer spark run`'s flags, `scorer.edge.spark_options`).

    ``users``/``events``: ``db`` (DATABASE_URL, over JDBC) or ``parquet:PATH``; ``output``: ``db`` (update-only,
    the default when users come from the database) or ``parquet:PATH`` (a score table, overwritten).
    ``partitions``: parallel JDBC reads and shuffle partitions (None: Spark's parallelism); ``group_users``: at
    most about this many users per pandas group; ``chunk_rows``: users per staging write and UPDATE.

    >>> SparkOptions(users="parquet:/lake/users", output="parquet:/lake/scores").group_users
    50000
    """

    users: str = "db"
    events: str = "db"
    output: str | None = None
    master: str | None = None
    partitions: int | None = None
    group_users: int = 50_000
    chunk_rows: int = 5_000
    jdbc_jar: str | None = None


def require_pyspark() -> None:
    """A `SettingsError` (exit 2) naming the extra to install when pyspark is missing: the first thing
    `lead-scorer spark run` says, before anything it would need pyspark for."""
    try:
        import pyspark  # noqa: F401 - only to know it is there
    except ImportError as exc:
        raise SettingsError("pyspark is not installed", hint=install_hint()) from exc


def run_spark(options: RunOptions, engine: SparkOptions | None = None, **kwargs: Any) -> RunSummary:
    """`scorer.spark._run.run_spark` (see there for the arguments), or `require_pyspark`'s error."""
    require_pyspark()
    from scorer.spark._run import run_spark as run

    return run(options, engine, **kwargs)
