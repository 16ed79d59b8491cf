"""Run the real ``lead-scorer`` CLI (``scorer.cli:main``) in this process, counting SQL statements.

    BENCH_STATS=out.json python -m benchmarks.counted run --select all

Every statement SQLAlchemy sends to the database named by ``DATABASE_URL`` is counted (an
executemany of N parameter sets counts N); MLflow's own tracking database is not. The count and the
process's own timings are written to ``$BENCH_STATS`` at exit. The CLI code path is untouched.
"""

from __future__ import annotations

import json
import os
import sys
import time

T_START = time.perf_counter()


def peak_rss_mib() -> float | None:
    """This process's own peak RSS (``VmHWM``). Not ``ru_maxrss`` from ``wait4``: on Linux that also counts
    the parent's memory at ``fork``, so every child of a large benchmark process looked as large as it."""
    try:
        for line in open("/proc/self/status"):  # noqa: SIM115 - a short read of a proc file
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _install() -> dict[str, float]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    stats: dict[str, float] = {"statements": 0, "roundtrips": 0}
    target = os.environ.get("DATABASE_URL")
    want = make_url(target).database if target else None

    @sa.event.listens_for(sa.Engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        if want is None or conn.engine.url.database != want:
            return  # MLflow's own database, or no SQL store at all (the REST store: HTTP is counted outside)
        stats["roundtrips"] += 1
        stats["statements"] += len(parameters) if executemany and parameters else 1

    return stats


def main() -> None:
    stats = _install()
    out = os.environ.get("BENCH_STATS")

    def _dump() -> None:
        if out:
            stats["process_s"] = time.perf_counter() - T_START
            stats["peak_rss_mib"] = peak_rss_mib() or 0.0
            with open(out, "w") as fh:
                json.dump(stats, fh)

    from scorer.cli import main as cli_main

    sys.argv = ["lead-scorer", *sys.argv[1:]]
    # Written as the CLI returns, not in an exit hook: the console script ends with os._exit once the hooks
    # registered after it started have run (`scorer.cli._skip_teardown`), and this one was registered before.
    try:
        cli_main()
    finally:
        _dump()


if __name__ == "__main__":
    main()
