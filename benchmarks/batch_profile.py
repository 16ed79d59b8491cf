"""Where a batch of the job's time goes, step by step, on a benchmark database (PostgreSQL).

    python -m benchmarks.batch_profile --url URL --model DIR [--batches 20] [--batch-size 2000]

``DIR`` is a model the benchmark exported (``model_<users>`` in its ``--workdir``). For key pages spread over
the users table, the job's own steps are timed one after the other (the job overlaps the next batch's read
with this batch's work; here each step runs alone, so the figures add up):

- ``page``: the key page (`SqlStore.select_users`, ``--select all``);
- ``read``: the page's events in two halves on two connections at once, as the job reads them; within each
  half ``execute`` (the statement until its result is in the client: the database's work and the transfer)
  and the rest (``fetchall`` into Python tuples, columns into numpy, types normalized: `split_dropped`);
- ``read_alone``: the same two halves one after the other on one connection, each half's ``execute``;
- ``features`` (`FeatureCatalog.features`), ``predict`` (``predict_proba``), ``reasons`` (the job's
  `reasons_json`), ``write`` (`SqlStore.write_scores`: the update-only write of every score, with reasons).

Prints one JSON line per batch and medians at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from benchmarks.methods import load_model
from models import FeatureCatalog
from scorer.page import reasons_json
from scorer.stores.base import EventRead, ScoreWrite, Selector
from scorer.stores.sql import SqlStore


def profile(url: str, model_dir: Path, *, batches: int, batch_size: int) -> list[dict[str, float]]:
    pipeline, names, version = load_model(model_dir)
    model = SimpleNamespace(pipeline=pipeline, input_names=names)
    catalog = FeatureCatalog()
    store = SqlStore(url)
    store.open().check()
    executes: dict[int, float] = {}

    def before(conn: Any, _cursor: Any, _statement: Any, _parameters: Any, context: Any, _many: bool) -> None:
        context._bench_t0 = time.perf_counter()

    def after(conn: Any, _cursor: Any, _statement: Any, _parameters: Any, context: Any, _many: bool) -> None:
        import threading

        executes[threading.get_ident()] = time.perf_counter() - context._bench_t0

    sa.event.listen(store.engine, "before_cursor_execute", before)
    sa.event.listen(store.engine, "after_cursor_execute", after)
    with store.engine.connect() as conn:
        lo, hi = conn.exec_driver_sql("SELECT min(user_id), max(user_id) FROM users").one()
    out: list[dict[str, float]] = []
    pool = ThreadPoolExecutor(max_workers=2)
    for b in range(batches):
        as_of = datetime.now(UTC)
        since = catalog.since(as_of)
        after_id = lo - 1 + (hi - lo) * b // batches
        row: dict[str, float] = {"after": after_id}
        t = time.perf_counter()
        page = store.select_users(Selector(select="all"), after=after_id, limit=batch_size)
        row["page_ms"] = (time.perf_counter() - t) * 1000
        visitors = sorted({v for v in page.visitor_ids if v is not None})
        halves = [visitors[0::2], visitors[1::2]]

        def timed(part: list[str], since: datetime = since, as_of: datetime = as_of) -> tuple[EventRead, float, float]:
            import threading

            t0 = time.perf_counter()
            read = store.read_events(part, since=since, as_of=as_of)
            return read, time.perf_counter() - t0, executes.get(threading.get_ident(), float("nan"))

        t = time.perf_counter()
        results = list(pool.map(timed, halves))
        row["read_ms"] = (time.perf_counter() - t) * 1000
        row["read_execute_ms"] = max(r[2] for r in results) * 1000
        row["read_rest_ms"] = max(r[1] - r[2] for r in results) * 1000
        read = EventRead.combine([r[0] for r in results])
        row["events"] = read.events_read
        t = time.perf_counter()
        alone = [timed(part) for part in halves]
        row["read_alone_ms"] = (time.perf_counter() - t) * 1000
        row["read_alone_execute_ms"] = sum(r[2] for r in alone) * 1000
        t = time.perf_counter()
        features = catalog.features(read.grain, visitor_ids=page.visitor_ids, as_of=as_of, names=names)
        row["features_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        scores = pipeline.predict_proba(features[names])[:, 1]
        row["predict_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        reasons = reasons_json(model, features, catalog)  # type: ignore[arg-type]
        row["reasons_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        identity = f"profile/{version}"
        ids = list(page.user_ids)
        write = ScoreWrite(user_ids=ids, scores=scores, model=identity, scored_at=as_of, reasons=reasons)
        store.write_scores(write)
        row["write_ms"] = (time.perf_counter() - t) * 1000
        print(json.dumps({k: round(v, 1) for k, v in row.items()}), flush=True)
        out.append(row)
    pool.shutdown()
    store.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=2000)
    a = p.parse_args(argv)
    rows = profile(a.url, a.model, batches=a.batches, batch_size=a.batch_size)
    keys = [k for k in rows[0] if k != "after"]
    print(json.dumps({"median": {k: round(statistics.median(r[k] for r in rows), 1) for k in keys}}))


if __name__ == "__main__":
    main()
