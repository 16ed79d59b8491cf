"""The benchmark's own scoring programs, each run in a fresh subprocess so its peak RSS is its own.

    python -m benchmarks.methods naive --url URL --model DIR --result OUT.json
    python -m benchmarks.methods floor --url URL --model DIR --result OUT.json
    python -m benchmarks.methods sqlfloor --url URL --model DIR --result OUT.json
    python -m benchmarks.methods train --url URL --tracking-uri URI --model-name NAME --result OUT.json

(a) ``naive`` is the seed's loop made correct, what a user writes first: key pages of 100 users, their
raw event rows, features grouped in pandas, one UPDATE statement per user. (b) ``sqlfloor`` is the least
work there is: every feature computed by PostgreSQL in one statement (`scorer.stores.pg_features`), one
``predict_proba``, one bulk write. (b0) ``floor`` is the job's own method done in one go: one aggregate
read of everyone's events at the daily grain, the features in Python (`FeatureCatalog.features`), one
``predict_proba``, one bulk write. All use the job's feature catalog and the production model (exported once
with joblib, as the seed loaded ``lead_scoring_pipeline_v1.joblib``), so their scores equal the job's.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks.counted import peak_rss_mib
from benchmarks.data import long_engine
from models import DailyGrain, FeatureCatalog, normalize_event_type
from scorer.stores.pg_features import GUARD, check_packed, feature_sql

NAIVE_BATCH = 100


def load_model(model_dir: Path) -> tuple[Any, list[str], str]:
    import joblib

    meta = json.loads((model_dir / "model.json").read_text())
    return joblib.load(model_dir / "model.joblib"), list(meta["input_names"]), str(meta["version"])


def _ts(value: datetime, pg: bool) -> Any:
    # SQLite keeps timestamps as UTC text; this form compares correctly with the stored one.
    return value if pg else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _setup(url: str, model_dir: Path) -> tuple[Any, ...]:
    """What (a) and (b) share: (start, pipeline, input names, version, catalog, as_of, since, engine, is_pg)."""
    started = time.perf_counter()
    pipeline, names, version = load_model(model_dir)
    catalog = FeatureCatalog()
    as_of = datetime.now(UTC)
    engine = long_engine(url)  # one statement over every event can take longer than the store's 60 s bound
    pg = engine.dialect.name == "postgresql"
    return started, pipeline, names, version, catalog, as_of, catalog.since(as_of), engine, pg


def naive(url: str, model_dir: Path) -> dict[str, Any]:
    """(a) The original loop, made correct (keyset pages, complete reads, update-only writes)."""
    started, pipeline, names, version, catalog, as_of, since, engine, pg = _setup(url, model_dir)
    page_q = sa.text("SELECT user_id, visitor_id FROM users WHERE user_id > :after ORDER BY user_id LIMIT :n")
    events_q = sa.text(
        "SELECT visitor_id, event_type, created_at FROM events WHERE visitor_id IN :vids AND created_at >= :since"
    ).bindparams(sa.bindparam("vids", expanding=True))
    update_q = sa.text(
        "UPDATE users SET lead_score = :score, lead_score_model_version = :version, lead_scored_at = :at "
        "WHERE user_id = :uid"
    )
    statements = users = 0
    after = 0
    t_loop = time.perf_counter()
    with engine.connect() as conn:
        while True:
            page = conn.execute(page_q, {"after": after, "n": NAIVE_BATCH}).all()
            statements += 1
            if not page:
                break
            after = page[-1][0]
            uids = [r[0] for r in page]
            vids = [r[1] for r in page]
            present = sorted({v for v in vids if v is not None})
            rows: list[Any] = []
            if present:
                # The driver's tuples, as the job's store reads them: pandas is slow on SQLAlchemy Rows, and
                # that is not what this comparison is about.
                rows = conn.execute(events_q, {"vids": present, "since": _ts(since, pg)}).cursor.fetchall()
                statements += 1
            raw = pd.DataFrame(rows, columns=["visitor_id", "event_type", "created_at"])
            # Features in pandas from raw rows: normalize, drop what has no type or time or is in the
            # future, group into (visitor, type, UTC day) counts, then the catalog.
            raw["event_type"] = raw["event_type"].str.strip().str.lower()
            raw["created_at"] = pd.to_datetime(raw["created_at"], utc=True, format="ISO8601")
            raw = raw[raw["event_type"].notna() & (raw["event_type"] != "") & raw["created_at"].notna()]
            raw = raw[raw["created_at"] < pd.Timestamp(as_of)]
            raw = raw.assign(day=raw["created_at"].dt.date)
            daily = raw.groupby(["visitor_id", "event_type", "day"]).size().rename("n").reset_index()
            features = catalog.build(daily, visitor_ids=vids, as_of=as_of, names=names)
            scores = pipeline.predict_proba(features[names])[:, 1]
            params = [
                {"score": float(s), "version": version, "at": _ts(as_of, pg), "uid": uid}
                for uid, s in zip(uids, scores, strict=True)
            ]
            conn.execute(update_q, params)  # one UPDATE statement per user
            statements += len(params)
            conn.commit()
            users += len(uids)
    engine.dispose()
    end = time.perf_counter()
    return {"users": users, "statements": statements, "loop_s": end - t_loop, "inner_s": end - started}


def floor(url: str, model_dir: Path) -> dict[str, Any]:
    """(b0) One aggregate read of every needed event at the daily grain, the features in Python, one
    predict_proba, one bulk write."""
    started, pipeline, names, version, catalog, as_of, since, engine, pg = _setup(url, model_dir)
    t_loop = time.perf_counter()
    timings: dict[str, float] = {}
    raw_conn = engine.raw_connection()
    try:
        dbapi = raw_conn.driver_connection
        cur = dbapi.cursor()
        cur.execute("SELECT user_id, visitor_id FROM users ORDER BY user_id")
        users = pd.DataFrame(cur.fetchall(), columns=["user_id", "visitor_id"])
        if pg:
            # The day as a day number, as the job's store reads it: integers parse faster than dates.
            agg = (
                "SELECT visitor_id, lower(trim(event_type)), "
                "(created_at AT TIME ZONE 'UTC')::date - DATE '1970-01-01', count(*) "
                "FROM events WHERE created_at >= {since} AND created_at < {as_of} "
                "AND visitor_id IS NOT NULL AND trim(event_type) <> '' GROUP BY 1, 2, 3"
            )
            buf = io.BytesIO()
            lit = "'{}'::timestamptz"
            # CSV: a type with a tab or a newline left in it (trim() takes spaces only) arrives as stored.
            with cur.copy(
                "COPY ("
                + agg.format(since=lit.format(since.isoformat()), as_of=lit.format(as_of.isoformat()))
                + ") TO STDOUT (FORMAT csv)"
            ) as copy:
                for chunk in copy:
                    buf.write(chunk)
            buf.seek(0)
            daily = pd.read_csv(
                buf,
                header=None,
                names=["visitor_id", "event_type", "day", "n"],
                dtype={"visitor_id": object, "event_type": object, "day": "int64", "n": "int64"},
                na_filter=False,
            )
        else:
            cur.execute(
                "SELECT visitor_id, lower(trim(event_type)), "
                "CAST(julianday(date(created_at)) - 2440587.5 AS INTEGER), count(*) FROM events "
                "WHERE julianday(created_at) >= julianday(?) AND julianday(created_at) < julianday(?) "
                "AND visitor_id IS NOT NULL AND trim(event_type) <> '' GROUP BY 1, 2, 3",
                (_ts(since, False), _ts(as_of, False)),
            )
            daily = pd.DataFrame(cur.fetchall(), columns=["visitor_id", "event_type", "day", "n"])
        timings["read_s"] = time.perf_counter() - t_loop
        t = time.perf_counter()
        vids = users["visitor_id"].tolist()
        # The database's lower(trim()) only pre-aggregates; the job's normalization decides (as in the job's
        # stores: every Unicode whitespace trimmed), and what it leaves blank is dropped.
        codes, spellings = pd.factorize(daily["event_type"].to_numpy(dtype=object))
        normal = np.array([normalize_event_type(t) or "" for t in spellings] + [""], dtype=object)[codes]
        daily = daily[normal != ""].assign(event_type=normal[normal != ""])
        grain = DailyGrain.from_arrays(
            visitor_id=daily["visitor_id"].to_numpy(dtype=object),
            event_type=daily["event_type"].to_numpy(dtype=object),
            day=daily["day"].to_numpy(dtype="int64"),
            n=daily["n"].to_numpy(dtype="float64"),
        )
        features = catalog.features(grain, visitor_ids=vids, as_of=as_of, names=names)
        timings["features_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = pipeline.predict_proba(features[names])[:, 1]
        timings["predict_s"] = time.perf_counter() - t
        t = time.perf_counter()
        uids = users["user_id"].to_numpy()
        if pg:
            _pg_write(cur, uids, scores, version, as_of)
            statements = 5  # users, events, temp table, COPY, UPDATE
        else:
            cur.executemany(
                "UPDATE users SET lead_score = ?, lead_score_model_version = ?, lead_scored_at = ? WHERE user_id = ?",
                [(s, version, _ts(as_of, False), u) for u, s in zip(uids.tolist(), scores.tolist(), strict=True)],
            )
            statements = 2 + len(uids)  # users, events, one executemany of one UPDATE per user
        dbapi.commit()
        timings["write_s"] = time.perf_counter() - t
    finally:
        raw_conn.close()
        engine.dispose()
    end = time.perf_counter()
    return {
        "users": len(users),
        "statements": statements,
        "loop_s": end - t_loop,
        "inner_s": end - started,
        **timings,
    }


def _pg_write(cur: Any, uids: np.ndarray, scores: np.ndarray, version: str, as_of: datetime) -> None:
    """Every score in one write: COPY into a temporary table, then one UPDATE … FROM (three statements)."""
    cur.execute("CREATE TEMP TABLE bench_scores (user_id bigint, score double precision) ON COMMIT DROP")
    text = "".join(f"{u}\t{s!r}\n" for u, s in zip(uids.tolist(), scores.tolist(), strict=True))
    with cur.copy("COPY bench_scores FROM STDIN") as copy:
        copy.write(text)
    cur.execute(
        "UPDATE users AS u SET lead_score = s.score, lead_score_model_version = %s, lead_scored_at = %s "
        "FROM bench_scores AS s WHERE u.user_id = s.user_id",
        (version, as_of),
    )


def read_sql_features(cur: Any, catalog: FeatureCatalog, names: list[str], as_of: datetime) -> pd.DataFrame:
    """Every user's features from `benchmarks.sql_features.feature_sql` (one statement, streamed out with
    COPY and parsed by pandas): ``user_id``, then ``names`` as float64."""
    buf = io.BytesIO()
    with cur.copy(f"COPY ({feature_sql(catalog, names, as_of=as_of)}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    frame = pd.read_csv(buf, header=None, names=["user_id", *names, GUARD])
    check_packed(frame[GUARD])
    return frame.drop(columns=[GUARD]).astype({name: "float64" for name in names})


def sql_floor(url: str, model_dir: Path) -> dict[str, Any]:
    """(b) Every feature computed by PostgreSQL in one statement, one predict_proba, one bulk write."""
    started, pipeline, names, version, catalog, as_of, _since, engine, pg = _setup(url, model_dir)
    if not pg:
        raise SystemExit("the SQL floor runs on PostgreSQL only")
    t_loop = time.perf_counter()
    timings: dict[str, float] = {}
    raw_conn = engine.raw_connection()
    try:
        dbapi = raw_conn.driver_connection
        cur = dbapi.cursor()
        features = read_sql_features(cur, catalog, names, as_of)
        timings["read_s"] = time.perf_counter() - t_loop
        t = time.perf_counter()
        scores = pipeline.predict_proba(features[names])[:, 1]
        timings["predict_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _pg_write(cur, features["user_id"].to_numpy(), scores, version, as_of)
        dbapi.commit()
        timings["write_s"] = time.perf_counter() - t
    finally:
        raw_conn.close()
        engine.dispose()
    end = time.perf_counter()
    return {
        "users": len(features),
        "statements": 4,  # the features, temp table, COPY, UPDATE
        "loop_s": end - t_loop,
        "inner_s": end - started,
        **timings,
    }


def train(url: str, tracking_uri: str, model_name: str, artifacts: str) -> dict[str, Any]:
    from scorer.edge import train_options
    from scorer.settings import load_settings
    from scorer.trainer import train_model

    started = time.perf_counter()
    settings = load_settings(
        database_url=url,
        mlflow_tracking_uri=tracking_uri,
        model_name=model_name,
        training_experiment=f"bench-training-{model_name}",
    )
    out = train_model(train_options(settings), artifact_location=artifacts)
    return {
        "users": out.users,
        "version": out.version.version,
        "roc_auc": out.result.metrics.get("roc_auc"),
        "inner_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.methods")
    p.add_argument("method", choices=["naive", "floor", "sqlfloor", "train"])
    p.add_argument("--url", required=True)
    p.add_argument("--model", type=Path)
    p.add_argument("--tracking-uri")
    p.add_argument("--model-name")
    p.add_argument("--artifacts")
    p.add_argument("--result", type=Path, required=True)
    a = p.parse_args(argv)
    if a.method == "naive":
        out = naive(a.url, a.model)
    elif a.method == "floor":
        out = floor(a.url, a.model)
    elif a.method == "sqlfloor":
        out = sql_floor(a.url, a.model)
    else:
        out = train(a.url, a.tracking_uri, a.model_name, a.artifacts)
    a.result.write_text(json.dumps(out | {"peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
