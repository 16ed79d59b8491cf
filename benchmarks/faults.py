"""The fault trials of issue 25, rerunnable: each fault reproduced against a real PostgreSQL, pass or fail.

    .venv/bin/python -m benchmarks.faults                      # every trial once (2 min 6 s measured, 2 CPUs)
    .venv/bin/python -m benchmarks.faults --trial sigterm --trial restart --repeat 3
    .venv/bin/python -m benchmarks.faults --list               # the trials and the tests that are them

A trial is the test in ``tests/test_reliability.py`` that reproduces the fault (docs/reliability.md says what
each guarantees): the script runs them in one pytest process per repetition (its own temporary folder, no
parallel workers) and prints one line per trial and repetition, with its time, then exits 0 only if every one
passed. Bounded: ``--timeout-s`` per repetition (the process is killed past it, and its trials count as
failed), ``--repeat`` at most 20. Loopback only: PostgreSQL is a pgserver the tests start on a Unix socket (or
``TEST_DATABASE_URL``, refused unless it names this machine), MLflow a local SQLite store, Supabase the
PostgREST stand-in on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_reliability.py"


@dataclass(frozen=True)
class Trial:
    name: str
    fault: str
    tests: tuple[str, ...]


TRIALS = (
    Trial(
        "heavy-visitor",
        "one visitor with 2,000,000 events in the lookback (a packed counter holds 131,071), real and dry runs",
        ("test_a_visitor_with_two_million_events_is_scored_like_any_other",),
    ),
    Trial(
        "lost-lock",
        "the run lock's backend terminated mid-run and a second run started; REST: a lease the API could not "
        "give back, a lease another run took",
        (
            "test_a_run_whose_lock_session_is_terminated_stops_before_writing_beside_the_next",
            "test_a_rest_run_that_lost_the_api_frees_its_lease_within_a_minute",
            "test_a_rest_run_whose_lease_another_run_took_stops_before_writing",
        ),
    ),
    Trial(
        "sigterm",
        "SIGTERM to a real `lead-scorer run` whose write retries a row lock another session holds; over REST, "
        "whose requests all fail (503) and are retried",
        (
            "test_sigterm_ends_the_run_within_the_bound_while_its_write_retries_a_held_row_lock",
            "test_sigterm_ends_a_rest_run_whose_requests_keep_failing_within_the_bound",
        ),
    ),
    Trial(
        "restart",
        "the job's PostgreSQL stopped after the first batch and started again 6 s later",
        ("test_a_database_restart_within_the_retry_budget_costs_no_batch",),
    ),
)

_LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}


def check_loopback(url: str | None) -> None:
    """Refuse a TEST_DATABASE_URL that names another machine: the trials stop servers and kill sessions."""
    if not url:
        return
    host = make_url(url).host or ""
    if host not in _LOOPBACK and not host.startswith("/"):
        raise SystemExit(f"TEST_DATABASE_URL names {host!r}: the fault trials run against this machine only")


def _run_once(tests: list[str], *, timeout_s: float, workdir: Path) -> tuple[dict[str, tuple[bool, float]], str]:
    """One pytest process over ``tests``: {test: (passed, seconds)}, and its output's tail."""
    report = workdir / "report.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        TESTS,
        "-q",
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        f"--basetemp={workdir / 'tmp'}",
        f"--junitxml={report}",
        "-k",
        " or ".join(tests),
    ]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
        tail = (done.stdout + done.stderr)[-4000:]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return {}, f"timed out after {timeout_s:.0f} s\n{out[-4000:]}"
    results: dict[str, tuple[bool, float]] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "").split("[")[0]
            ok = not any(child.tag in ("failure", "error", "skipped") for child in case)
            was_ok, seconds = results.get(name, (True, 0.0))
            results[name] = (was_ok and ok, seconds + float(case.get("time", 0.0)))
    return results, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", action="append", choices=[t.name for t in TRIALS], help="repeatable; default all")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of each trial (1-20)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="bound on each repetition's pytest process")
    parser.add_argument("--list", action="store_true", help="print the trials and their tests, run nothing")
    args = parser.parse_args(argv)
    chosen = [t for t in TRIALS if not args.trial or t.name in args.trial]
    if args.list:
        for t in chosen:
            print(f"{t.name}: {t.fault}")
            for test in t.tests:
                print(f"    {TESTS}::{test}")
        return 0
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat is 1 to 20")
    check_loopback(os.environ.get("TEST_DATABASE_URL"))
    tests = [test for t in chosen for test in t.tests]
    failures = 0
    for rep in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="lead-scorer-faults-") as tmp:
            started = time.monotonic()
            results, tail = _run_once(tests, timeout_s=args.timeout_s, workdir=Path(tmp))
            elapsed = time.monotonic() - started
        for t in chosen:
            outcomes = [results.get(test) for test in t.tests]
            ok = all(o is not None and o[0] for o in outcomes)
            seconds = sum(o[1] for o in outcomes if o is not None)
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {t.name:<14} run {rep}/{args.repeat}  {seconds:6.1f} s  {t.fault}")
        if not all(r[0] for r in results.values()) or len(results) < len(tests):
            print(f"--- pytest's output (repetition {rep}, {elapsed:.0f} s in all):\n{tail}")
    print(f"{failures} of {len(chosen) * args.repeat} trials failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
