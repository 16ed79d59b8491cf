"""The benchmark: the job against the original loop and the floor, on PostgreSQL and SQLite.

    python3 dev.py bench [--sizes 10000,100000,1000000] [--backends postgresql,sqlite] [--repeat 3]

For each backend and size: build synthetic data in the database, train and promote a model (once
per size, on the first backend: the data come from one generator; a local MLflow store in a temporary
folder), export it for the benchmark's own programs, then run
each method ``--repeat`` times with the scores reset in between and report medians:

(a) ``naive``: the seed's loop made correct (`benchmarks.methods.naive`);
(b) ``sqlfloor``: every feature in one PostgreSQL statement, one predict_proba, one bulk write
    (`benchmarks.methods.sql_floor`, `scorer.stores.pg_features`);
(b0) ``floor``: one aggregate read at the daily grain, features in Python, one predict_proba, one bulk write
    (`benchmarks.methods.floor`);
(c) ``job``: ``lead-scorer run --select all --population everyone`` (`benchmarks.counted`, the real CLI);
    on PostgreSQL also with prepared statements off (``noprep``: the URL on port 6543, as on Supabase's
    transaction pooler, through a socket link to the same server).

The data's layout (``--layout``): ``time``, events appended in time order across visitors as a product writes
them (the default), or ``visitor``, each visitor's events together (`benchmarks.data`). On PostgreSQL every
run also records the database server's CPU time (`ServerCpu`), and the job's event read is explained
(``EXPLAIN ANALYZE``, `explain_event_read`).

Then day 2 (`Bench.day_two`): a day after a complete stale run, with new events for 5 % of the users, the
daily ``lead-scorer run`` (default selection: stale) and a same-day rerun, beside the full rescore.

Each run is a fresh subprocess, waited for alone, so its peak RSS (its own ``VmHWM``, which it reports
at exit) and its wall time (start to exit, imports and model load included) are its own. The scores (b) and (a)
write are compared with the job's. On PostgreSQL the job also runs through the Supabase REST store
against the PostgREST stand-in (20 ms per request, 1,000-row cap). The table is printed and written
to ``benchmarks/results/latest.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from benchmarks import data

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.md"
REST_KEY = "sb_secret_bench-service-role-key-0123456789"
REST_LATENCY_S = 0.020
REST_MAX_ROWS = 1000
SCORE_TOLERANCE = 1e-9  # same features, same model: only floating-point summation order may differ
LABELS = {
    "naive": "(a) original loop",
    "sqlfloor": "(b) SQL floor",
    "floor": "(b0) floor (grain in Python)",
    "job": "(c) lead-scorer run",
    "challenger": "(c) with a challenger shadow-scored",
    "live": "(c) with the daily live check due",
    "noprep": "(c) prepared statements off",
    "rest": "(c) via REST",
    "fixed": "(c) fixed cost: `run --limit 1`",
}
TRAIN_WORK_MEM = "32MB"  # for a training run that failed with the server's 4 MB (`Bench.train_or_retry`)
POOLER_PORT = 6543  # Supabase's transaction pooler: the SQL store turns prepared statements off on this port
EXPLAIN_BATCH = 2_000  # the job's default batch size: the key page whose event read is explained
#: The job's own counts, from its ``run_finished`` log line.
RUN_COUNTS = ("users_selected", "users_changed", "users_unchanged", "events_read")
DAY_SHARE = 0.05  # of the users with a visitor id get new events on day 2
DAY_TOLERANCE = 0.001  # the job's default LEAD_SCORER_SCORE_TOLERANCE: a score that moved less is not rewritten
# Variables of the caller that would change what the subprocesses do.
_SCRUB = ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "SUPABASE_SERVICE_ROLE_KEY", "MLFLOW_TRACKING_URI")


@dataclass
class Proc:
    """One subprocess: wall seconds from start to exit, peak RSS in MiB, its result file, its own CPU seconds
    (user + system) and the database server's over the same span (PostgreSQL, when measurable)."""

    wall_s: float
    rss_mib: float
    out: dict[str, Any]
    log: Path
    cpu_s: float | None = None
    db_cpu_s: float | None = None


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, is index 0)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


class ServerCpu:
    """CPU seconds used by one PostgreSQL server on this machine: the postmaster and every process it
    started (backends, parallel workers, autovacuum, checkpointer, …), live or exited.

    From /proc/<pid>/stat: utime + stime of the postmaster and of each live child (ppid = the postmaster),
    plus the postmaster's cutime + cstime, the CPU of children it has already reaped (a backend whose client
    disconnected). The difference of two readings is the server's CPU in between, whichever processes did
    the work and whether or not they still exist."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    @classmethod
    def find(cls, pg_server: Any, admin_url: str) -> ServerCpu | None:
        """The benchmark's own pgserver, or the server at ``admin_url`` if it runs here (its data directory's
        postmaster.pid); None if its processes cannot be seen."""
        pid: int | None = None
        if pg_server is not None:
            pid = pg_server.get_pid()
        else:
            try:
                engine = sa.create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"))
                with engine.connect() as conn:
                    data_dir = conn.exec_driver_sql("SHOW data_directory").scalar_one()
                engine.dispose()
                pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
            except (sa.exc.DBAPIError, OSError, ValueError, IndexError):
                return None
        if pid is None or _stat(pid) is None:
            return None
        return cls(pid)

    def seconds(self) -> float:
        own = _stat(self.pid)
        if own is None:
            return float("nan")
        ticks = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            f = _stat(entry.name)
            if f is not None and f[1] == str(self.pid):
                ticks += int(f[11]) + int(f[12])
        return ticks / self.tick


def pooler_url(url: str, link_dir: Path) -> str | None:
    """The same database through port 6543, where the SQL store turns prepared statements off (Supabase's
    transaction pooler): a symbolic link named for port 6543 beside nothing else, to the server's Unix socket.
    None when the server is reached over TCP (no socket to link to)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or ""
    if isinstance(host, tuple):
        host = host[0]
    if not host.startswith("/"):
        return None
    socket = Path(host) / f".s.PGSQL.{parsed.port or 5432}"
    link = link_dir / f".s.PGSQL.{POOLER_PORT}"
    if not socket.exists() or len(str(link)) > 100:  # sun_path holds 108 bytes
        return None
    link_dir.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(socket)
    query = {k: v for k, v in parsed.query.items() if k != "host"} | {"host": str(link_dir)}
    return parsed.set(port=POOLER_PORT, query=query).render_as_string(hide_password=False)


@dataclass
class Measure:
    backend: str
    users: int
    method: str
    runs: list[Proc] = field(default_factory=list)
    max_abs_diff: float | None = None  # vs the job's scores
    unscored: int | None = None
    note: str = ""

    def median(self, key: str) -> float:
        values = [self._get(p, key) for p in self.runs]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    @staticmethod
    def _get(p: Proc, key: str) -> float | None:
        if key in ("wall_s", "rss_mib", "cpu_s", "db_cpu_s"):
            return getattr(p, key)
        v = p.out.get(key)
        return None if v is None else float(v)


@dataclass
class Day:
    """Day 2 at one backend and size: the daily run a day after a complete one, and a rerun right after."""

    backend: str
    users: int
    day2: Measure
    rerun: Measure
    setup: dict[str, Any] = field(default_factory=dict)
    max_abs_diff: float | None = None  # the day-2 state against a full rescore at the same moment
    crossed_midnight: bool = False  # the rerun ran on another UTC day than the day-2 run: it rereads by design


def code_version() -> str:
    """The commit measured, and whether the job's code differed from it (read-only git, no index refresh)."""
    env = os.environ | {"GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "scorer", "models", "registry"], cwd=ROOT, env=env, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes to the job's code" if dirty else "")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        mem_gib = f"{int(mem.split()[1]) / 1024**2:.0f} GiB"
    except (OSError, StopIteration):
        mem_gib = "?"
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "memory": mem_gib,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def run_proc(
    cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path, result: Path | None, server: ServerCpu | None = None
) -> Proc:
    """Run ``cmd`` alone and wait for it with ``wait4``: the rusage is this child's, not all children's.
    With ``server``, the database server's CPU seconds over the run too."""
    db0 = server.seconds() if server is not None else None
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    db_cpu = None
    if server is not None and db0 is not None:
        time.sleep(0.3)  # the backends of the child's connections exit and are reaped (their CPU moves to cutime)
        db_cpu = server.seconds() - db0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:5])} … exited {proc.returncode}; log {log}:\n{tail}")
    out = json.loads(result.read_text()) if result is not None and result.exists() else {}
    # The child's own VmHWM when it reports it: ru_maxrss (KiB on Linux) also counts this process's memory
    # at fork, so it is only an upper bound.
    rss = out.get("peak_rss_mib") or usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime
    return Proc(wall_s=wall, rss_mib=float(rss), out=out, log=log, cpu_s=cpu, db_cpu_s=db_cpu)


def _batch_ms(log: Path) -> list[float]:
    """Each batch's time (``ms``: from waiting for its read to its write returning) from the job's JSON log."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"batch"' in line and '"ms"' in line:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("event") == "batch":
                out.append(float(rec["ms"]))
    return out


def explain_event_read(url: str, users: int, *, names: list[str]) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of the job's event read for one key page in the middle of the users: the
    statement the SQL store sends for one of the page's two halves of visitors (as the job splits a batch; the
    model's features ``names`` computed in the database, `scorer.stores.pg_features`),
    captured with a ``before_cursor_execute`` listener, explained with its parameters on a fresh connection
    (the plan of its first executions), and again under the generic plan a prepared statement may get."""
    from datetime import UTC, datetime

    from models import FeatureCatalog
    from scorer.contract import Names
    from scorer.stores.base import FeatureRequest, Selector
    from scorer.stores.sql import SqlStore

    store = SqlStore(url)
    store.open().check()
    catalog = FeatureCatalog()
    as_of = datetime.now(UTC)
    page = store.select_users(Selector(select="all"), after=users // 2, limit=EXPLAIN_BATCH)
    visitors = sorted({v for v in page.visitor_ids if v is not None})[0::2]
    seen: list[tuple[str, dict[str, Any]]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, dict(parameters)))

    sa.event.listen(store.engine, "before_cursor_execute", grab)
    try:
        t0 = time.perf_counter()
        request = FeatureRequest(catalog=catalog, names=names)
        read = store.read_events(visitors, since=catalog.since(as_of), as_of=as_of, features=request)
        read_ms = (time.perf_counter() - t0) * 1000
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", grab)
    statement, parameters = seen[-1]
    plans: dict[str, list[str]] = {}
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).all()
        plans["custom"] = [r[0] for r in rows]
        conn.rollback()
    plans["generic"] = _generic_plan(url, statement, parameters)
    store.close()
    names = Names()
    return {
        "visitors": len(visitors),
        "events_read": read.events_read,
        "read_ms": read_ms,
        "statement": statement,
        "plans": plans,
        "table": f"{names.events}",
    }


def _generic_plan(url: str, statement: str, parameters: dict[str, Any]) -> list[str]:
    """EXPLAIN ANALYZE of ``statement`` prepared, under the generic plan (as `tests/test_plans.py` does)."""
    import re

    import psycopg

    order: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[1] not in order:
            order.append(m[1])
        return f"${order.index(m[1]) + 1}"

    sql = re.sub(r"%\((\w+)\)s", number, statement)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # The simple query protocol: over the extended one the server would read $n as PREPARE's own arguments.
        result = conn.pgconn.exec_(f"PREPARE q AS {sql}".encode())
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
            return [f"PREPARE failed: {result.error_message!r}"]
        args = ", ".join("%s" for _ in order)
        cur = psycopg.ClientCursor(conn)
        rows = cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE q({args})", [parameters[k] for k in order]).fetchall()
    return [r[0] for r in rows]


def _run_finished(log: Path) -> dict[str, Any]:
    """The job's own summary: the ``run_finished`` JSON log line."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if '"run_finished"' in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {}
    return {}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
        self.artifacts = (work / "artifacts").as_uri()
        self.measures: list[Measure] = []
        self.training: list[dict[str, Any]] = []
        self.models: dict[int, tuple[str, Path]] = {}  # users -> (registered model name, exported model)
        self.builds: list[dict[str, Any]] = []
        self.days: list[Day] = []
        self.code_at_start = self.code = code_version()
        self.started = time.perf_counter()
        self.pg_server: Any = None
        self.pg_admin_url: str | None = None
        self.base_env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("LEAD_SCORER_")}
        self.base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.base_env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        self._seq = 0
        self._servers = contextlib.ExitStack()
        self._job_tracking_uri: str | None = None
        self.server_cpu: ServerCpu | None = None  # the PostgreSQL server's CPU, when its processes are visible
        self.explains: list[dict[str, Any]] = []
        self._links = Path(tempfile.mkdtemp(prefix="lsb-", dir="/tmp"))  # short: a socket path holds 108 bytes

    def job_tracking_uri(self) -> str:
        """An ``mlflow server`` over the benchmark's MLflow store, started once: the job reaches its
        tracking server over HTTP in production, and a SQLite file opened in the job's own process would
        charge it for MLflow's schema check (about a second) that a deployment never pays."""
        if self._job_tracking_uri is None:
            from tests.mlflow_server import start_mlflow_server

            self._job_tracking_uri = str(self._servers.enter_context(start_mlflow_server(self.work)))
        return self._job_tracking_uri

    # -- databases -------------------------------------------------------------------------------
    def pg_url(self, name: str) -> str:
        if self.pg_admin_url is None:
            given = os.environ.get("TEST_DATABASE_URL")
            if given:
                self.pg_admin_url = given
            else:
                import pgserver

                self.pg_server = pgserver.get_server(str(self.work / "pgdata"), cleanup_mode="stop")
                self.pg_admin_url = self.pg_server.get_uri()
            self.server_cpu = ServerCpu.find(self.pg_server, self.pg_admin_url)
        admin = sa.create_engine(
            make_url(self.pg_admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        return (
            make_url(self.pg_admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )

    def drop(self, backend: str, url: str) -> None:
        if self.args.keep:
            return
        if backend == "postgresql":
            admin = sa.create_engine(
                make_url(self.pg_admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
            )
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            admin.dispose()
        else:
            path = Path(make_url(url).database or "")
            # The job's run lock (a flock file beside the database) too.
            for p in (
                path,
                Path(f"{path}-wal"),
                Path(f"{path}-shm"),
                *path.parent.glob(f"{path.name}.lead-scorer-*.lock"),
            ):
                p.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self._links, ignore_errors=True)
        self._servers.close()
        if self.pg_server is not None:
            self.pg_server.cleanup()

    # -- subprocesses ------------------------------------------------------------------------------
    def _paths(self, tag: str) -> tuple[Path, Path]:
        self._seq += 1
        stem = self.work / "logs" / f"{self._seq:03d}-{tag}"
        stem.parent.mkdir(exist_ok=True)
        return stem.with_suffix(".log"), stem.with_suffix(".json")

    def progress(self) -> None:
        """Write the report with what is measured so far."""
        self.code = code_version()
        self.args.out.write_text(report(self, self.started, self.args))

    def server_for(self, url: str) -> ServerCpu | None:
        return self.server_cpu if make_url(url).get_backend_name() == "postgresql" else None

    def method(self, name: str, url: str, model_dir: Path) -> Proc:
        log, result = self._paths(name)
        cmd = [sys.executable, "-m", "benchmarks.methods", name, "--url", url, "--model", str(model_dir)]
        cmd += ["--result", str(result)]
        return run_proc(cmd, env=self.base_env, cwd=self.work, log=log, result=result, server=self.server_for(url))

    def job(
        self, env: dict[str, str], tag: str = "job", extra: tuple[str, ...] = (), select: str | None = "all"
    ) -> Proc:
        """``lead-scorer run`` over everyone (customers too, as (a) and (b) score them), ``--select all`` by
        default; ``select=None`` leaves the job's default (stale)."""
        log, result = self._paths(tag)
        env = self.base_env | {"MLFLOW_TRACKING_URI": self.job_tracking_uri()} | env | {"BENCH_STATS": str(result)}
        cmd = [sys.executable, "-m", "benchmarks.counted", "--json-logs", "run", "--population", "everyone"]
        cmd += [*(("--select", select) if select else ()), "--no-progress", *extra]
        server = self.server_for(env["DATABASE_URL"]) if "DATABASE_URL" in env else self.server_cpu
        proc = run_proc(cmd, env=env, cwd=self.work, log=log, result=result, server=server)
        finished = _run_finished(log)
        batches = _batch_ms(log)
        if batches:
            proc.out["batch_ms_median"] = statistics.median(batches)
            proc.out["batch_ms_p90"] = float(np.percentile(batches, 90))
        proc.out["users"] = finished.get("users_scored")
        proc.out["loop_s"] = finished.get("duration_s")
        for k in RUN_COUNTS:
            proc.out[k] = finished.get(k)
        return proc

    def train(self, url: str, model_name: str, *, work_mem: str | None = None) -> tuple[str, Proc]:
        """``train_model`` in a fresh process; with ``work_mem``, the database's default for new sessions is
        set to it for the run (``ALTER DATABASE … SET work_mem``) and reset afterwards."""
        log, result = self._paths("train")
        cmd = [sys.executable, "-m", "benchmarks.methods", "train", "--url", url, "--tracking-uri", self.tracking_uri]
        cmd += ["--model-name", model_name, "--artifacts", self.artifacts, "--result", str(result)]
        if work_mem is not None:
            self._database_setting(url, f"SET work_mem = '{work_mem}'")
        try:
            proc = run_proc(cmd, env=self.base_env, cwd=self.work, log=log, result=result, server=self.server_for(url))
        finally:
            if work_mem is not None:
                self._database_setting(url, "RESET work_mem")
        return str(proc.out["version"]), proc

    def _database_setting(self, url: str, clause: str) -> None:
        engine = data.long_engine(url)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{make_url(url).database}" {clause}')
        finally:
            engine.dispose()

    def train_or_retry(self, backend: str, url: str, model_name: str) -> tuple[str, Proc, str]:
        """Train with the server's defaults. On PostgreSQL a training read that hits the store's statement
        timeout is reported, and training runs again with more ``work_mem`` for its sessions: at 1M users in
        the time layout a read of 5,000 users' events needs a bitmap of ~73,000 heap pages, which 4 MB
        cannot hold exactly, and the lossy pages' recheck of ``visitor_id = ANY(…)`` (a linear search of
        5,000 ids per row) took 495 s for one read."""
        t0 = time.perf_counter()
        try:
            version, proc = self.train(url, model_name)
            return version, proc, ""
        except RuntimeError as exc:
            if backend != "postgresql" or "statement timeout" not in str(exc):
                raise
            failed = time.perf_counter() - t0
        say(f"   train: failed after {failed:.0f} s (statement timeout); again with work_mem {TRAIN_WORK_MEM}")
        version, proc = self.train(url, model_name, work_mem=TRAIN_WORK_MEM)
        note = (
            f"with the defaults it failed after {failed:.0f} s (a read hit the store's statement timeout); "
            f"figures with work_mem {TRAIN_WORK_MEM} for its sessions"
        )
        return version, proc, note

    def export_model(self, model_name: str, version: str, dest: Path) -> Path:
        """Promote the version, then save its pipeline with joblib for (a) and (b), as the seed kept it."""
        import joblib

        from registry import Registry

        reg = Registry(tracking_uri=self.tracking_uri, model_name=model_name)
        reg.promote(version, actor="benchmark")
        # The job's MLflow run goes to the default experiment: keep its artifacts in the work folder.
        reg.ensure_experiment("lead-scorer/scoring", artifact_location=self.artifacts)
        loaded = reg.load(reg.resolve())
        dest.mkdir(parents=True, exist_ok=True)
        joblib.dump(loaded.pipeline, dest / "model.joblib")
        (dest / "model.json").write_text(json.dumps({"input_names": loaded.input_names, "version": version}))
        return dest

    def make_challenger(self, url: str, model_name: str) -> None:
        """A second version, trained as the first (a new version and identity), under the challenger alias:
        what a weekly `train --challenger` leaves for the daily run to shadow-score."""
        from registry import Registry

        version, proc = self.train(url, model_name)
        Registry(tracking_uri=self.tracking_uri, model_name=model_name).challenge(version, actor="benchmark")
        say(f"   challenger: version {version}, trained in {proc.wall_s:.1f} s")

    def make_live_due(self, model_name: str) -> None:
        """Production's version as if trained 60 days ago on a 30-day horizon, never evaluated live: the next
        run has a matured cohort to check (yesterday's, the first honest day), as a daily run does once a week.
        Its tags are moved, not its pipeline: the scores are the job's."""
        from mlflow import MlflowClient

        from registry import TAG_AS_OF, TAG_HORIZON_DAYS, Registry

        version = Registry(tracking_uri=self.tracking_uri, model_name=model_name).resolve().version
        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        client.set_model_version_tag(model_name, version, TAG_AS_OF, (today - timedelta(days=61)).isoformat())
        client.set_model_version_tag(model_name, version, TAG_HORIZON_DAYS, "30")
        for tag in ("live_as_of", "live_roc_auc"):
            with contextlib.suppress(Exception):  # absent before the first run
                client.delete_model_version_tag(model_name, version, tag)

    # -- one backend at one size ---------------------------------------------------------------------
    def one(self, backend: str, users: int) -> None:
        a = self.args
        say(f"== {backend} {users:,} users")
        url = (
            self.pg_url(f"bench_{users}_{uuid.uuid4().hex[:8]}")
            if backend == "postgresql"
            else f"sqlite:///{self.work / f'bench_{users}.db'}"
        )
        built = data.build(url, users, layout=a.layout)
        self.builds.append({"backend": backend, **built})
        say(f"   data: {built['users']:,} users, {built['events']:,} events in {built['seconds']:.1f} s")

        if users in self.models:
            # Both backends hold data from the same generator: the version trained on the first one serves
            # the second, so training (minutes at 1M users) runs once per size.
            model_name, model_dir = self.models[users]
        else:
            model_name = f"bench_{users}_{uuid.uuid4().hex[:6]}"
            version, trained, note = self.train_or_retry(backend, url, model_name)
            self.training.append(
                {
                    "backend": backend,
                    "users": users,
                    "note": note,
                    "wall_s": trained.wall_s,
                    "rss_mib": trained.rss_mib,
                    "train_users": trained.out.get("users"),
                    "roc_auc": trained.out.get("roc_auc"),
                }
            )
            say(f"   train: {trained.wall_s:.1f} s, peak RSS {trained.rss_mib:.0f} MiB, version {version}")
            model_dir = self.export_model(model_name, version, self.work / f"model_{users}")
            self.models[users] = (model_name, model_dir)
            if a.challenger:
                self.make_challenger(url, model_name)

        # The daily live check off (`benchmarks.live` measures it): these figures are the scoring run's.
        job_env = {"DATABASE_URL": url, "LEAD_SCORER_MODEL_NAME": model_name, "LEAD_SCORER_LIVE_EVERY_DAYS": "0"}
        if a.challenger:
            # The job's own rows run with an alias no version holds: production alone, beside the challenger's.
            job_env["LEAD_SCORER_CHALLENGER_ALIAS"] = "bench_no_challenger"
        pooled = pooler_url(url, self._links) if backend == "postgresql" else None
        methods = ["naive"] if users <= a.naive_max else []
        methods += ["sqlfloor"] if backend == "postgresql" else []
        methods += ["floor", "job"] + (["noprep"] if pooled else []) + (["challenger"] if a.challenger else [])
        methods += ["live"] if a.live_check else []
        measures = {m: Measure(backend, users, m) for m in methods}
        if "noprep" in measures:
            measures["noprep"].note = f"port {POOLER_PORT}"
        scores: dict[str, np.ndarray] = {}
        repeat = a.repeat if users < a.large or a.large_repeat is None else a.large_repeat
        for r in range(repeat):
            for m in methods:
                data.reset_scores(url)
                if m == "job":
                    proc = self.job(job_env)
                elif m == "noprep":
                    proc = self.job(job_env | {"DATABASE_URL": pooled or url}, tag="noprep")
                elif m == "challenger":
                    proc = self.job(job_env | {"LEAD_SCORER_CHALLENGER_ALIAS": "challenger"}, tag="challenger")
                elif m == "live":
                    self.make_live_due(model_name)
                    proc = self.job(job_env | {"LEAD_SCORER_LIVE_EVERY_DAYS": "7"}, tag="live")
                else:
                    proc = self.method(m, url, model_dir)
                measures[m].runs.append(proc)
                say(f"   {m} #{r + 1}: {proc.wall_s:.2f} s, peak RSS {proc.rss_mib:.0f} MiB")
                if r == repeat - 1:
                    scores[m], measures[m].unscored = data.read_scores(url)
        for m in methods:
            if m != "job":
                measures[m].max_abs_diff = float(np.nanmax(np.abs(scores[m] - scores["job"])))
        if "naive" not in methods:
            skipped = Measure(backend, users, "naive", note=f"skipped above {a.naive_max:,} users (--naive-max)")
            self.measures.append(skipped)
        self.measures.extend(measures[m] for m in methods)
        self.measures.append(self.fixed(backend, job_env, users, repeat))

        if backend == "postgresql" and users == a.rest_size:
            self.measures.append(self.rest(url, model_name, users, scores["job"]))
        if backend == "postgresql":
            names = json.loads((model_dir / "model.json").read_text())["input_names"]
            self.explains.append({"users": users, **explain_event_read(url, users, names=names)})
        # Last: it moves the data a day and adds events, which the comparisons above must not see.
        if a.day_two_max is None or users <= a.day_two_max:
            self.progress()  # what is measured so far survives a stop during day 2 (minutes at 1M users)
            self.days.append(self.day_two(backend, url, job_env, users, repeat))
        self.drop(backend, url)

    def fixed(self, backend: str, env: dict[str, str], users: int, repeat: int) -> Measure:
        """What the job costs around its batches (start-up, model load, the MLflow run, exit): the same
        command scoring one user. No job can be more than (a) / this times faster than (a)."""
        measure = Measure(backend, users, "fixed", note="one user, dry run")
        for r in range(repeat):
            proc = self.job(env, tag="fixed", extra=("--limit", "1", "--dry-run"))
            measure.runs.append(proc)
            say(f"   fixed #{r + 1}: {proc.wall_s:.2f} s")
        return measure

    def day_two(self, backend: str, url: str, env: dict[str, str], users: int, repeat: int) -> Day:
        """What the daily run costs: a day after a complete stale run, with new events for ~5 % of users.

        1. From nothing, one stale run (untimed): every score and the checkpoint are written, as after
           yesterday's run. 2. A day passes: every stored time moves back 24 hours (`data.pass_a_day`).
        3. New events for a hash-chosen 5 % of the users with a visitor id, in the last few hours
        (`data.add_events`). 4. The state is kept in side tables (`data.snapshot_day`) and restored before
        each of ``repeat`` timed stale runs. 5. One rerun right after the last (same day: nothing to read).
        6. A check, untimed: ``--select all`` with tolerance 0 rescores and rewrites everyone; every score
        the day-2 run left must be within the tolerance of it."""
        day = Day(backend, users, Measure(backend, users, "day2"), Measure(backend, users, "rerun"))
        data.reset_scores(url)
        first = self.job(env, tag="day1", select=None)
        day.setup["first"] = first
        say(f"   day 1 (stale run from nothing, untimed): {first.wall_s:.2f} s, {first.out['users_selected']} read")
        day.setup["shift"] = data.pass_a_day(url)
        say(f"   a day passes: {day.setup['shift']['rows']} rows moved in {day.setup['shift']['seconds']:.1f} s")
        day.setup["added"] = data.add_events(url, share=DAY_SHARE)
        say(f"   new events: {day.setup['added']['events']:,} for {day.setup['added']['users']:,} users")
        data.snapshot_day(url)
        utc_day = "?"
        for r in range(repeat):
            data.restore_day(url)
            utc_day = time.strftime("%Y-%m-%d", time.gmtime())
            proc = self.job(env, tag="day2", select=None)
            day.day2.runs.append(proc)
            o = proc.out
            say(
                f"   day 2 #{r + 1}: {proc.wall_s:.2f} s, {o['users_selected']} read, {o['users_changed']} written, "
                f"{o['events_read']} events"
            )
        proc = self.job(env, tag="rerun", select=None)
        day.rerun.runs.append(proc)
        day.crossed_midnight = time.strftime("%Y-%m-%d", time.gmtime()) != utc_day
        o = proc.out
        say(f"   same-day rerun: {proc.wall_s:.2f} s, {o['users_selected']} read, {o['users_changed']} written")
        held, _ = data.read_scores(url)
        check = self.job(env | {"LEAD_SCORER_SCORE_TOLERANCE": "0"}, tag="check")
        fresh, unscored = data.read_scores(url)
        day.setup["check"] = check
        day.max_abs_diff = float(np.nanmax(np.abs(held - fresh))) if unscored == 0 else float("inf")
        say(f"   check: day-2 scores vs a full rescore now: {_below(day.max_abs_diff)}")
        return day

    def rest(self, url: str, model_name: str, users: int, job_scores: np.ndarray) -> Measure:
        """The job through the Supabase REST store, against the PostgREST stand-in over the same database."""
        from tests.postgrest_standin import PostgrestStandin

        measure = Measure("postgresql", users, "rest", note=f"{REST_LATENCY_S * 1000:.0f} ms/request")
        with PostgrestStandin(url, api_key=REST_KEY, max_rows=REST_MAX_ROWS) as server:
            server.latency = REST_LATENCY_S
            env = {
                "SUPABASE_URL": server.url,
                "SUPABASE_SERVICE_ROLE_KEY": REST_KEY,
                "LEAD_SCORER_MODEL_NAME": model_name,
                "LEAD_SCORER_LIVE_EVERY_DAYS": "0",
            }
            for r in range(self.args.repeat):
                data.reset_scores(url)
                server.reset()
                proc = self.job(env, tag="rest")
                proc.out["statements"] = len(server.requests)
                measure.runs.append(proc)
                say(f"   rest #{r + 1}: {proc.wall_s:.2f} s, {len(server.requests)} HTTP requests")
            if server.errors:
                raise RuntimeError(f"the PostgREST stand-in failed: {server.errors[0]}")
        got, measure.unscored = data.read_scores(url)
        measure.max_abs_diff = float(np.nanmax(np.abs(got - job_scores)))
        return measure


def say(msg: str) -> None:
    print(msg, flush=True)


def _f(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:  # NaN
        return "-"
    return f"{x:,.{digits}f}"


def report(bench: Bench, started: float, args: argparse.Namespace) -> str:
    m = machine()
    lines = [
        "# Benchmark: lead-scorer against the original loop and the floors",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python3 dev.py bench "
        f"--sizes {args.sizes} --backends {args.backends} --layout {args.layout} --repeat {args.repeat}"
        + (f" --large-repeat {args.large_repeat}" if args.large_repeat is not None else "")
        + (f" --rest-size {args.rest_size}" if args.rest_size_given else "")
        + (f" --day-two-max {args.day_two_max}" if args.day_two_max is not None else "")
        + (f" --naive-max {args.naive_max}" if args.naive_max != 100_000 else "")
        + (" --challenger" if args.challenger else "")
        + (" --live-check" if args.live_check else "")
        + "` "
        f"({(time.perf_counter() - started) / 60:.0f} min in all). Code: {bench.code}"
        + ("" if bench.code == bench.code_at_start else f" (at the start: {bench.code_at_start})")
        + ".",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM, {m['os']}, Python {m['python']}. "
        "Shared with other work while it ran, so times are noisy; each figure is the median of the runs "
        "counted in the *runs* column.",
        "",
        f"Data layout: **{args.layout}** ("
        + (
            "events appended in time order across visitors, as a product writes them: one visitor's events are "
            "scattered over the whole table"
            if args.layout == "time"
            else "each visitor's events stored together"
        )
        + "); ~1 % dirty rows, messy type spellings, heavy visitors, shared and missing visitor ids "
        "(`benchmarks/data.py`).",
        "",
        "Each run is a fresh process; *wall s* is from its start to its exit (imports, model load and, for the "
        "job, MLflow tracking included); *loop s* is the scoring alone (after the model is loaded). "
        "*statements / 1k users* counts SQL statements sent to the data database (an executemany of N rows "
        "counts N), or HTTP requests for the REST row. *peak RSS* is the process's own `VmHWM`, read by it at exit. "
        "*CPU s* is the process's own user + system time; *DB CPU s* the PostgreSQL server's over the same run "
        "(every server process, live or exited: `ServerCpu`). "
        "*max |Δ| vs job* compares every user's written score with the job's. The job records its run in an "
        "`mlflow server` on loopback (SQLite behind it), as a deployment reaches its tracking server over HTTP.",
        "",
        "| backend | users | method | runs | wall s | loop s | users/s | statements / 1k users | peak RSS MiB "
        "| CPU s | DB CPU s | max abs Δ vs job |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for x in bench.measures:
        if not x.runs:
            lines.append(f"| {x.backend} | {x.users:,} | {LABELS[x.method]} | 0 | {x.note} | | | | | | | |")
            continue
        wall = x.median("wall_s")
        n = x.median("users") or x.users
        per_k = x.median("statements") / n * 1000 if n else float("nan")
        diff = "-" if x.max_abs_diff is None else f"{x.max_abs_diff:.1e}"
        if x.unscored:
            diff += f" ({x.unscored} unscored!)"
        label = LABELS[x.method] + (f" ({x.note})" if x.note else "")
        cpu = f"| {_f(x.median('cpu_s'), 1)} | {_f(x.median('db_cpu_s'), 1)} "
        if x.method == "fixed":  # one user: per-user figures would say nothing
            lines.append(
                f"| {x.backend} | {x.users:,} | {label} | {len(x.runs)} | {_f(wall)} | - | - | - "
                f"| {_f(x.median('rss_mib'), 0)} {cpu}| - |"
            )
            continue
        lines.append(
            f"| {x.backend} | {x.users:,} | {label} | {len(x.runs)} | {_f(wall)} | {_f(x.median('loop_s'))} "
            f"| {_f(n / wall, 0)} "
            f"| {_f(per_k, 1)} | {_f(x.median('rss_mib'), 0)} {cpu}| {diff} |"
        )
    lines += [
        "",
        "Ratios of median wall times. *(a)/(c)*: how many times faster the job is than the original loop "
        "(higher is better); *(c)/(b)*: how many times the SQL floor's time the job takes (1.0 is the floor; "
        "issue 13's target: at most 1.3); *(c)/(b0)*: the same against the floor that builds features in Python; "
        "*(a)/fixed*: the most (a)/(c) could be if the batches took no time at all.",
        "",
        "| backend | users | (a)/(c): job is N times faster | (c)/(b): job / SQL floor | (c)/(b0): job / floor "
        "(grain in Python) | on loop s: (c)/(b), (c)/(b0) | (a)/fixed |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    by = {(x.backend, x.users, x.method): x for x in bench.measures}

    def ratio(num: Measure | None, den: Measure | None, key: str = "wall_s") -> str:
        if num is None or den is None or not num.runs or not den.runs:
            return "-"
        return _f(num.median(key) / den.median(key))

    for backend in args.backends.split(","):
        for users in sorted({x.users for x in bench.measures if x.backend == backend}):
            job, sqlf, floor, naive, fixed = (
                by.get((backend, users, k)) for k in ("job", "sqlfloor", "floor", "naive", "fixed")
            )
            if job is None:
                continue
            has_naive = naive is not None and naive.runs
            ac = naive.median("wall_s") / job.median("wall_s") if has_naive else None
            bound = naive.median("wall_s") / fixed.median("wall_s") if has_naive and fixed and fixed.runs else None
            lines.append(
                f"| {backend} | {users:,} | {_f(ac, 1) if ac else 'not run'} | {ratio(job, sqlf)} "
                f"| {ratio(job, floor)} | {ratio(job, sqlf, 'loop_s')}, {ratio(job, floor, 'loop_s')} "
                f"| {_f(bound, 1) if bound else '-'} |"
            )
    jobs = [x for x in bench.measures if x.method == "job" and x.runs]
    if jobs:
        lines += [
            "",
            "The job across sizes (default batch size): peak RSS and wall time against the smallest size, time "
            "per user, the database server's CPU per million users, and each batch's time from the job's log "
            "(`ms` of its `batch` lines: waiting for the batch's read, features, scores, reasons, its write).",
            "",
        ]
        lines += [
            "| backend | users | peak RSS MiB | RSS vs smallest | wall s | wall vs smallest | µs per user (loop) "
            "| job CPU s | DB CPU s | DB CPU s per 1M users | batch ms: median, p90 |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for backend in args.backends.split(","):
            mine = sorted((x for x in jobs if x.backend == backend), key=lambda x: x.users)
            if not mine:
                continue
            base, base_wall, base_users = mine[0].median("rss_mib"), mine[0].median("wall_s"), mine[0].users
            for x in mine:
                db = x.median("db_cpu_s")
                lines.append(
                    f"| {backend} | {x.users:,} | {_f(x.median('rss_mib'), 0)} "
                    f"| {(x.median('rss_mib') / base - 1) * 100:+.1f} % | {_f(x.median('wall_s'))} "
                    f"| {_f(x.median('wall_s') / base_wall, 1)} x for {x.users / base_users:,.0f} x the users "
                    f"| {_f(x.median('loop_s') / x.users * 1e6, 1)} | {_f(x.median('cpu_s'), 1)} | {_f(db, 1)} "
                    f"| {_f(db / x.users * 1e6, 0)} "
                    f"| {_f(x.median('batch_ms_median'), 0)}, {_f(x.median('batch_ms_p90'), 0)} |"
                )
    lines += _explains(bench)
    lines += _day_two(bench)
    if bench.training:
        lines += [
            "",
            "Training (`lead-scorer train`'s `train_model`, once per size on the first backend, not repeated).",
            "",
        ]
        lines += [
            "| backend | users | wall s | peak RSS MiB | training users | ROC AUC | note |",
            "|---|--:|--:|--:|--:|--:|---|",
        ]
        for t in bench.training:
            lines.append(
                f"| {t['backend']} | {t['users']:,} | {_f(t['wall_s'], 1)} | {_f(t['rss_mib'], 0)} "
                f"| {t.get('train_users') or 0:,} | {_f(t.get('roc_auc'), 3)} | {t.get('note') or ''} |"
            )
    if bench.builds:
        lines += [
            "",
            "Data: "
            + "; ".join(
                f"{b['backend']} {b['users']:,} users / {b['events']:,} events ({b['layout']} layout) built in "
                f"{b['seconds']:.0f} s"
                for b in bench.builds
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


def _explains(bench: Bench) -> list[str]:
    """The job's event read, explained (`explain_event_read`): the first lines of each plan."""
    lines: list[str] = []
    for e in bench.explains:
        lines += [
            "",
            f"**The job's event read at {e['users']:,} users**, explained: one half of a key page of "
            f"{EXPLAIN_BATCH:,} users from the middle of the table ({e['visitors']:,} visitors, "
            f"{e['events_read']:,} events, {e['read_ms']:.0f} ms through the store just before), with its "
            "parameters (the plan of a statement's first executions) and under a generic plan (what a prepared "
            "statement may switch to):",
            "",
            "```",
            *(ln for ln in e["plans"]["custom"] if "Buffers" not in ln and "Planning" not in ln),
            "```",
            "",
            "Generic plan:",
            "",
            "```",
            *(ln for ln in e["plans"]["generic"] if "Buffers" not in ln and "Planning" not in ln),
            "```",
        ]
    return lines


def _below(diff: float | None) -> str:
    """The day-2 check in words: the largest difference, and whether it is below the tolerance (strictly)."""
    if diff is None:
        return "not checked"
    ok = diff < DAY_TOLERANCE
    return f"max |Δ| {diff:.9f}, {'below' if ok else 'NOT below'} the tolerance {DAY_TOLERANCE}"


def _i(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:,.0f}"


def _day_two(bench: Bench) -> list[str]:
    """The day-2 table: the daily run and a same-day rerun beside the full rescore."""
    if not bench.days:
        return []
    lines = [
        "",
        "**Day 2: what a daily run costs.** A day after a complete stale run, with new events for "
        f"{DAY_SHARE:.0%} of the users with a visitor id, `lead-scorer run` with its default selection (stale) "
        "runs over everyone (`--population everyone`, as the rows above). The day passes without a fake clock: "
        "every stored time (events, scores, checkpoints, sign-ups, conversions) is moved back 24 hours in SQL, "
        "which is what the job sees when the clock moves a day forward. Each timed run starts from the same "
        "state (restored from side tables); the same-day rerun follows the last one. Beside them, the full "
        "rescore (the (c) row above: every score reset, then `--select all`). *written / users*: rows written "
        "as a share of all users.",
        "",
        "| backend | users | run | runs | wall s | loop s | users read | rows written | unchanged | events read "
        "| written / users | wall vs full |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    by = {(x.backend, x.users, x.method): x for x in bench.measures}
    notes = []
    for day in bench.days:
        full = by.get((day.backend, day.users, "job"))
        full_wall = full.median("wall_s") if full and full.runs else float("nan")
        rerun = "same-day rerun" + (" (crossed UTC midnight: a new day, so it rereads)" if day.crossed_midnight else "")
        rows = [("(c) full rescore: `run --select all`", full), ("day 2: `run` (stale)", day.day2), (rerun, day.rerun)]
        for label, x in rows:
            if x is None or not x.runs:
                continue
            wall = x.median("wall_s")
            lines.append(
                f"| {day.backend} | {day.users:,} | {label} | {len(x.runs)} | {_f(wall)} | {_f(x.median('loop_s'))} "
                f"| {_i(x.median('users_selected'))} | {_i(x.median('users_changed'))} "
                f"| {_i(x.median('users_unchanged'))} | {_i(x.median('events_read'))} "
                f"| {x.median('users_changed') / day.users:.1%} | {wall / full_wall:.2f} |"
            )
        added, shift, first = day.setup.get("added", {}), day.setup.get("shift", {}), day.setup.get("first")
        read = day.day2.median("users_selected")
        notes.append(
            f"{day.backend} {day.users:,}: new events {added.get('events', 0):,} for {added.get('users', 0):,} users "
            f"({added.get('users', 0) / day.users:.1%} of users, {added.get('users', 0) / read if read else 0:.1%} "
            f"of those day 2 read); the day passed in {shift.get('seconds', 0):.0f} s "
            f"({sum(shift.get('rows', {}).values()):,} rows moved, compacted after)"
            + (f"; the untimed day-1 stale run from nothing took {first.wall_s:.1f} s" if first else "")
            + f"; the scores day 2 left vs a full rescore right after (tolerance 0, every score rewritten): "
            f"{_below(day.max_abs_diff)}."
        )
    lines += [
        "",
        "A daily run rereads every user with an event within the lookback (180 days, plus the partial day) of "
        "its last check, new events or not: the feature windows move with the day, so those users' features "
        "changed. It writes only the scores that moved by the tolerance "
        f"({DAY_TOLERANCE}) or more. A rerun on the same day rereads only users with events since the last "
        "check: none here.",
        "",
        *(f"- {n}" for n in notes),
    ]
    return lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 dev.py bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="users per dataset, comma-separated")
    p.add_argument("--backends", default="postgresql,sqlite", help="postgresql, sqlite or both")
    p.add_argument("--repeat", type=int, default=3, help="runs of each method (the median is reported)")
    p.add_argument("--naive-max", type=int, default=100_000, help="skip (a) above this many users (it is slow)")
    p.add_argument(
        "--rest-size",
        type=int,
        default=None,
        help="PostgreSQL size for the REST row (0: none; default: the largest size up to 100,000)",
    )
    p.add_argument("--large", type=int, default=1_000_000, help="sizes from this many users up are 'large'")
    p.add_argument(
        "--large-repeat", type=int, default=None, help="runs of each method at large sizes (default --repeat)"
    )
    p.add_argument("--layout", choices=data.LAYOUTS, default="time", help="the events table's physical order")
    p.add_argument(
        "--day-two-max", type=int, default=None, help="run day 2 only up to this many users (default: every size)"
    )
    p.add_argument(
        "--challenger",
        action="store_true",
        help="also run the job with a challenger shadow-scored beside production (its cost against (c))",
    )
    p.add_argument(
        "--live-check",
        action="store_true",
        help="also run the job with the daily live check due (issue 22: its cost against (c))",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the markdown table goes")
    p.add_argument("--workdir", type=Path, default=None, help="keep databases, logs and MLflow here")
    p.add_argument("--keep", action="store_true", help="keep each size's database")
    a = p.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in a.sizes.split(",") if s]
    a.rest_size_given = a.rest_size is not None
    if a.rest_size is None:
        a.rest_size = max((s for s in sizes if s <= 100_000), default=0)
    a.size_list = sizes
    for b in a.backends.split(","):
        if b not in ("postgresql", "sqlite"):
            p.error(f"unknown backend {b!r}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so the PostgreSQL server this started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lead-scorer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, work.resolve())
    bench.started = started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for backend in args.backends.split(","):
            for users in args.size_list:
                bench.one(backend, users)
                bench.progress()  # what is measured so far survives a stop
    finally:
        bench.close()
    text = report(bench, started, args)
    print()
    print(text)
    args.out.write_text(text)
    say(f"written to {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    unequal = [x for x in bench.measures if (x.max_abs_diff or 0.0) > SCORE_TOLERANCE or x.unscored]
    for x in unequal:
        say(
            f"error: {x.backend} {x.users:,} {LABELS[x.method]}: scores differ from the job's by {x.max_abs_diff}"
            f" ({x.unscored} users unscored)"
        )
    wrong_days = []
    for d in bench.days:
        if d.max_abs_diff is None or d.max_abs_diff >= DAY_TOLERANCE:
            wrong_days.append(d)
            say(f"error: {d.backend} {d.users:,} day 2: scores differ from a full rescore by {d.max_abs_diff}")
        reread = d.rerun.median("users_selected")
        if reread and not d.crossed_midnight:
            wrong_days.append(d)
            say(f"error: {d.backend} {d.users:,} day 2: a same-day rerun read {reread:.0f} users (expected none)")
    return 1 if unequal or wrong_days else 0


if __name__ == "__main__":
    sys.exit(main())
