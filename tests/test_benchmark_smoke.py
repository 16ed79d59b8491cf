"""The benchmark cannot rot: the real `benchmarks.run` at a tiny size (the full run is `python3 dev.py bench`).

400 users, because training needs five conversions in its horizon: the generator's users table is a
hash of the user id, and 17 of the 367 users training keeps convert there, on every run.

PostgreSQL only, with the REST row and the day-2 rows, to stay near two minutes: each method is a fresh process,
and the job's own start (imports, model load, MLflow run) is ~7-10 s. The SQLite paths run with
`--backends sqlite`."""

from __future__ import annotations

import re

import pytest

from benchmarks import run


def test_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path, pg_server_url, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_DATABASE_URL", pg_server_url)  # the session's PostgreSQL, not a second server
    out = tmp_path / "latest.md"
    argv = ["--sizes", "400", "--backends", "postgresql", "--repeat", "1"]
    code = run.main([*argv, "--out", str(out), "--workdir", str(tmp_path / "work")])

    assert code == 0  # non-zero also when any method's scores differ from the job's
    text = out.read_text()
    assert "Machine: " in text and "CPUs" in text and "Python 3." in text
    for label in ("(a) original loop", "(b) floor", "(c) lead-scorer run"):
        assert f"| postgresql | 400 | {label} | 1 |" in text, text
    assert "| postgresql | 400 | (c) via REST (20 ms/request) | 1 |" in text, text
    assert "| postgresql | 400 | (c) fixed cost: `run --limit 1` (one user, dry run) | 1 |" in text, text
    ratios = re.search(r"\| postgresql \| 400 \| ([\d.]+) \| [\d.]+ \| [\d.]+, [\d.]+ \| ([\d.]+) \|", text)
    assert ratios and float(ratios[2]) > 0, text  # (a)/fixed: what no job with this start-up can beat
    diffs = [float(d) for d in re.findall(r"\| (\d\.\de[+-]\d\d) \|", text)]
    assert len(diffs) == 3 and max(diffs) <= run.SCORE_TOLERANCE, text  # (a), (b), REST
    # Day 2: a day after a complete run the daily run rereads some users and writes at most those; the
    # benchmark itself fails (code 1) if the scores it left are not within the tolerance of a full rescore.
    counts = r"\| 1 \| [\d.]+ \| [\d.]+ \| ([\d,]+) \| ([\d,]+) \|"  # runs, wall, loop, users read, rows written
    day2 = re.search(r"\| postgresql \| 400 \| day 2: `run` \(stale\) " + counts, text)
    assert day2, text
    read, written = (int(g.replace(",", "")) for g in day2.groups())
    assert 0 < read <= 400 and written <= read, text
    rerun = re.search(r"\| postgresql \| 400 \| same-day rerun([^|]*)" + counts, text)
    assert rerun, text
    assert "crossed UTC midnight" in rerun[1] or rerun.groups()[1:] == ("0", "0"), text  # same day: nothing to do
