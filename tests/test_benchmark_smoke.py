"""The benchmark cannot rot: the real `benchmarks.run` at a tiny size (the full run is `python3 dev.py bench`).

400 users, because training needs five conversions in its horizon: the generator's users table is a
hash of the user id, and 17 of the 367 users training keeps convert there, on every run.

PostgreSQL only, with the REST row and the day-2 rows, to stay near two minutes: each method is a fresh process,
and the job's own start (imports, model load, MLflow run) is ~7-10 s. The SQLite paths run with
`--backends sqlite`.

Beside it, at a tinier size: the SQL floor's generated statement (`scorer.stores.pg_features`) against the
catalog's numpy path on the generator's messy data (every whitespace character Python's ``str.strip()`` takes,
slug collisions, more types than the statement's bit words hold), and the generator's two layouts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from benchmarks import data, run


@pytest.mark.slow
def test_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path, pg_server_url, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_DATABASE_URL", pg_server_url)  # the session's PostgreSQL, not a second server
    out = tmp_path / "latest.md"
    argv = ["--sizes", "400", "--backends", "postgresql", "--repeat", "1"]
    code = run.main([*argv, "--out", str(out), "--workdir", str(tmp_path / "work")])

    assert code == 0  # non-zero also when any method's scores differ from the job's
    text = out.read_text()
    assert "Machine: " in text and "CPUs" in text and "Python 3." in text
    assert "--layout time" in text and "Data layout: **time**" in text and "(time layout)" in text, text
    for label in ("(a) original loop", "(b) SQL floor", "(b0) floor (grain in Python)", "(c) lead-scorer run"):
        assert f"| postgresql | 400 | {label} | 1 |" in text, text
    assert "| postgresql | 400 | (c) via REST (20 ms/request) | 1 |" in text, text
    assert "| postgresql | 400 | (c) fixed cost: `run --limit 1` (one user, dry run) | 1 |" in text, text
    # Prepared statements off: the same server through a socket link on port 6543 (a pgserver listens on a
    # Unix socket; a TCP TEST_DATABASE_URL has no socket to link to).
    pooled = run.pooler_url(pg_server_url, tmp_path / "links") is not None
    assert ("| postgresql | 400 | (c) prepared statements off (port 6543) | 1 |" in text) == pooled, text
    # (a)/(c), (c)/(b), (c)/(b0), loop ratios, (a)/fixed
    ratios = re.search(
        r"\| postgresql \| 400 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+, [\d.]+ \| ([\d.]+) \|", text
    )
    assert ratios and float(ratios[2]) > 0 and float(ratios[4]) > 0, text
    diffs = [float(d) for d in re.findall(r"\| (\d\.\de[+-]\d\d) \|", text)]
    assert len(diffs) == 4 + pooled and max(diffs) <= run.SCORE_TOLERANCE, text  # (a), (b), (b0), REST, noprep
    # The database's CPU over the job's run, per million users (the session's server runs on this machine).
    sizes = re.search(r"\| postgresql \| 400 \| \d+ \| [+-][\d.]+ % (?:\| [^|]+ ){5}\| ([\d,]+) \|", text)
    assert sizes and int(sizes[1].replace(",", "")) > 0, text
    assert "**The job's event read at 400 users**" in text and "Index Cond: (visitor_id = ANY" in text, text
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


def test_the_whitespace_the_sql_trims_is_what_python_strips():
    from scorer.stores.pg_features import WHITESPACE_SQL

    chars = {chr(int(h, 16)) for h in re.findall(r"\\u([0-9a-f]{4})", WHITESPACE_SQL)}
    assert chars == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    # The brief's list, spelled out: tab to carriage return, U+001C-U+001F, space, U+0085, U+00A0, U+1680,
    # U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
    listed = {*map(chr, [*range(9, 14), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)])}
    assert chars == listed | {*map(chr, [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])}


def _odd_events(url: str) -> None:
    """Rows the generator does not make: every whitespace character around a type, a type only punctuation
    (slug 'blank'), and one visitor with 70 distinct types (past the statement's 64 bits of type numbers)."""
    engine = data.long_engine(url)
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    with engine.begin() as conn:
        vids = [r[0] for r in conn.exec_driver_sql("SELECT visitor_id FROM users WHERE visitor_id IS NOT NULL LIMIT 9")]
        rows = []
        for k, ch in enumerate(spaces):
            rows.append({"v": vids[k % 3], "t": f"{ch}Demo_Request{ch}{ch}", "d": k % 40})
            rows.append({"v": vids[3], "t": f"{ch}---{ch}", "d": 2 + k})
        rows += [{"v": vids[4], "t": f"Kind {k:02d}", "d": k % 100} for k in range(70)]
        rows += [{"v": vids[5], "t": "Pricing View", "d": 0}, {"v": vids[5], "t": "pricing_view ", "d": 179}]
        rows += [{"v": vids[6], "t": "page_view", "d": 180}, {"v": vids[6], "t": "page_view", "d": 181}]
        conn.execute(
            sa.text(
                "INSERT INTO events (visitor_id, event_type, created_at) "
                "VALUES (:v, :t, now() - make_interval(days => :d) - interval '1 minute')"
            ),
            rows,
        )
    engine.dispose()


@pytest.mark.parametrize("clock", ["now", "midnight"])
def test_the_sql_floor_features_equal_the_catalogs(pg_url: str, clock: str):
    from benchmarks.methods import read_sql_features
    from models import FeatureCatalog
    from scorer.stores.sql import SqlStore

    data.build(pg_url, 300, layout="time")
    _odd_events(pg_url)
    catalog = FeatureCatalog()
    now = datetime.now(UTC)
    as_of = now if clock == "now" else now.replace(hour=0, minute=0, second=0, microsecond=0)
    store = SqlStore(pg_url)
    store.open().check()
    types = store.top_event_types(since=catalog.since(as_of), as_of=as_of, limit=100)
    assert {"pricing view", "pricing_view", "demo_request", "---"} <= set(types) and len(types) > 64
    names = catalog.feature_names(event_types=types)
    assert "evt_blank_7d" in names and "evt_pricing_view_30d" in names

    engine = data.long_engine(pg_url)
    with engine.connect() as conn:
        users = conn.exec_driver_sql("SELECT user_id, visitor_id FROM users ORDER BY user_id").all()
    raw = engine.raw_connection()
    try:
        got = read_sql_features(raw.driver_connection.cursor(), catalog, names, as_of)
    finally:
        raw.close()
        engine.dispose()
    got = got.sort_values("user_id").reset_index(drop=True)
    assert got["user_id"].tolist() == [u[0] for u in users]

    # The numpy path, as the job computes it: the store's read (normalized in Python), then the catalog.
    visitors = [u[1] for u in users]
    read = store.read_events(visitors, since=catalog.since(as_of), as_of=as_of)
    store.close()
    want = catalog.features(read.grain, visitor_ids=visitors, as_of=as_of, names=names)
    assert read.dropped["null_type"] > 0 and read.dropped["future"] > 0 and read.dropped["null_time"] > 0
    differs = [n for n in names if not np.array_equal(got[n].to_numpy(), want[n].to_numpy())]
    assert differs == [], differs
    assert want["distinct_types_90d"].max() > 64  # the visitor with 70 types went past the bits


def test_the_layouts(pg_url: str):
    def order(layout: str) -> tuple[int, int]:
        data.build(pg_url, 400, layout=layout)
        engine = data.long_engine(pg_url)
        with engine.connect() as conn:
            # Times out of order, among rows with a real past time, in the table's physical (insert) order.
            backwards = conn.exec_driver_sql(
                "SELECT count(*) FROM (SELECT created_at, lag(created_at) OVER (ORDER BY id) AS before FROM events "
                "WHERE created_at < now()) AS s WHERE created_at < before"
            ).scalar_one()
            # Visitors whose events are not stored together.
            split = conn.exec_driver_sql(
                "SELECT count(*) FROM (SELECT visitor_id, max(id) - min(id) + 1 - count(*) AS gaps FROM events "
                "GROUP BY visitor_id) AS s WHERE gaps > 0"
            ).scalar_one()
            shared = conn.exec_driver_sql(
                "SELECT count(*) FROM (SELECT visitor_id FROM users WHERE visitor_id IS NOT NULL "
                "GROUP BY visitor_id HAVING count(*) > 1) AS s"
            ).scalar_one()
            missing = conn.exec_driver_sql("SELECT count(*) FROM users WHERE visitor_id IS NULL").scalar_one()
        engine.dispose()
        assert shared > 0 and missing > 0
        return backwards, split

    backwards, split = order("time")
    assert backwards == 0 and split > 300  # time order: every visitor's events scattered
    backwards, split = order("visitor")
    assert backwards > 1000 and split == 0  # each visitor's events together
