"""`lead-scorer spark run` in local mode against `lead-scorer run`, on the same benchmark data.

    .venv/bin/python -m benchmarks.spark_bench [--sizes 1000,100000] [--repeat 3] [--master local[2]]

For each size: benchmark data (`benchmarks.data.build`, time layout) in a PostgreSQL 16 listening on loopback
TCP (Spark's JDBC driver cannot use pgserver's Unix socket), a model trained and promoted in a local MLflow
store, then, each ``--repeat`` times with every score reset in between, as fresh processes:

- ``run``: ``lead-scorer run --select all --population everyone``;
- ``spark``: ``lead-scorer spark run --population everyone --master MASTER`` (JDBC in, staged UPDATEs out);
- ``lake``: the same on Parquet copies of the users and events, writing a Parquet score table (no database).

Medians of wall time (process start to exit: imports, JVM, model load and MLflow included) and of the
database server's CPU (`benchmarks.run.ServerCpu`); every run's scores are checked against the first
``run``'s (max |Δ|). Written to ``benchmarks/results/spark.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import data
from benchmarks.run import ROOT, ServerCpu, code_version, machine, run_proc
from tests.pg_tcp import TcpPostgres

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "spark.md"
LEAD_SCORER = [str(Path(sys.executable).parent / "lead-scorer")]


def _env(url: str | None, tracking: str, model: str, experiment: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SUPABASE_URL", "MLFLOW_TRACKING_URI")}
    env |= {
        "MLFLOW_TRACKING_URI": tracking,
        "LEAD_SCORER_MODEL_NAME": model,
        "LEAD_SCORER_SCORING_EXPERIMENT": experiment,
        "PYSPARK_PYTHON": sys.executable,
        "LEAD_SCORER_DB_STATEMENT_TIMEOUT_S": "600",
    }
    if url is not None:
        env["DATABASE_URL"] = url
    return env


def _export(url: str, lake: Path) -> None:
    """The users and events as a lake holds them: one Parquet file each, read with the store's own engine."""
    engine = data.long_engine(url)
    with engine.connect() as conn:
        pd.read_sql("SELECT user_id, visitor_id, converted_at FROM users", conn).to_parquet(lake / "users.parquet")
        pd.read_sql("SELECT visitor_id, event_type, created_at FROM events", conn).to_parquet(lake / "events.parquet")
    engine.dispose()


def bench(size: int, *, repeat: int, master: str, work: Path, pg: TcpPostgres, server: ServerCpu | None) -> dict:
    from benchmarks.methods import train
    from registry import Registry

    url = pg.new_database(f"spark_{size}_{uuid.uuid4().hex[:6]}")
    built = data.build(url, size, layout="time")
    print(f"built {size:,} users / {built['events']:,} events in {built['seconds']:.0f} s", flush=True)
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    model = f"bench_spark_{size}"
    train(url, tracking, model, (work / "artifacts").as_uri())
    Registry(tracking_uri=tracking, model_name=model).promote("1", force=True, actor="benchmark")
    lake = work / f"lake-{size}"
    lake.mkdir()
    _export(url, lake)
    out: dict[str, Any] = {"users": size, "events": built["events"], "runs": {}}
    reference: np.ndarray | None = None
    commands = {
        "run": [*LEAD_SCORER, "run", "--select", "all", "--population", "everyone", "--no-progress"],
        "spark": [*LEAD_SCORER, "spark", "run", "--population", "everyone", "--master", master],
        "lake": [
            *LEAD_SCORER,
            "spark",
            "run",
            "--population",
            "everyone",
            "--master",
            master,
            f"--users=parquet:{lake / 'users.parquet'}",
            f"--events=parquet:{lake / 'events.parquet'}",
            f"--output=parquet:{lake / 'scores'}",
        ],
    }
    for i in range(repeat):
        for name, cmd in commands.items():
            data.reset_scores(url)
            env = _env(None if name == "lake" else url, tracking, model, f"bench-{name}-{size}")
            proc = run_proc(cmd, env=env, cwd=work, log=work / f"{name}-{size}-{i}.log", result=None, server=server)
            if name == "lake":
                table = pd.read_parquet(lake / "scores").sort_values("user_id")
                scores = np.full(size, np.nan)
                scores[table["user_id"].to_numpy() - 1] = table["lead_score"].to_numpy()
            else:
                scores, _ = data.read_scores(url)
            if reference is None:
                reference = scores
            delta = float(np.nanmax(np.abs(scores - reference))) if len(scores) == len(reference) else float("nan")
            same = bool((np.isnan(scores) == np.isnan(reference)).all())
            row = out["runs"].setdefault(name, [])
            row.append({"wall_s": proc.wall_s, "cpu_s": proc.cpu_s, "db_cpu_s": proc.db_cpu_s, "delta": delta})
            print(
                f"{size:>9,} {name:5} #{i + 1}: {proc.wall_s:6.1f} s, DB CPU {proc.db_cpu_s or 0:5.1f} s, "
                f"max |Δ| {delta:.1e}{'' if same else ', different users scored!'}",
                flush=True,
            )
    return out


def _median(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def report(results: list[dict], *, args: argparse.Namespace, started: float) -> str:
    m = machine()
    lines = [
        "# Benchmark: `lead-scorer spark run` (local mode) against `lead-scorer run`",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python -m benchmarks.spark_bench "
        f"--sizes {args.sizes} --repeat {args.repeat} --master '{args.master}'` "
        f"({(time.perf_counter() - started) / 60:.0f} min in all). Code: {code_version()}.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM, {m['os']}, Python {m['python']}, Java 17, "
        "pyspark 4.3.0; PostgreSQL 16 (pgserver's build) on loopback TCP, on the same machine. **Shared with other "
        "work while it ran** (another engineer's benchmarks and test suites), so times are noisy; each figure is "
        "the median of the runs.",
        "",
        "Each run is a fresh process, timed from start to exit (imports, JVM start, model load, MLflow included). "
        "*run*: `lead-scorer run --select all --population everyone`; *spark*: `lead-scorer spark run "
        f"--population everyone --master {args.master}` (users over JDBC in key ranges, events over JDBC in visitor "
        "ranges, staged `UPDATE … FROM` per chunk); *lake*: the same Spark job on Parquet copies of the users "
        "and events, writing a Parquet score table (no database). *DB CPU s*: the PostgreSQL server's CPU over "
        "the run (every backend, `ServerCpu`). *max |Δ|*: every user's score against the first *run*'s.",
        "",
        "| users | events | method | runs | wall s | users/s | DB CPU s | DB CPU s per 1M users | max abs Δ |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for res in results:
        for name, rows in res["runs"].items():
            wall, db = _median(rows, "wall_s"), _median(rows, "db_cpu_s")
            delta = max(r["delta"] for r in rows)
            lines.append(
                f"| {res['users']:,} | {res['events']:,} | {name} | {len(rows)} | {wall:.1f} | "
                f"{res['users'] / wall:,.0f} | {db:.1f} | {db / res['users'] * 1e6:,.0f} | {delta:.1e} |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="spark-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        with TcpPostgres(work / "pg") as pg:
            server = ServerCpu(pg.pid)
            for size in (int(s) for s in args.sizes.split(",")):
                results.append(bench(size, repeat=args.repeat, master=args.master, work=work, pg=pg, server=server))
    text = report(results, args=args, started=started)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
