"""`lead-scorer spark run`: the whole population scored on Spark, recorded like `lead-scorer run`.

On the driver, as `scorer.app.run_scoring` does it: the run's options → the store checked and the run lock
taken → the production version resolved once and loaded safely (`scorer.app.resolve_and_load`), pinned → one
MLflow run opened by the same `scorer.run_record.RunRecord`. Then Spark: users in parallel key ranges (JDBC) or
Parquet, events to the daily grain in Spark SQL, one cogroup per key range scored by `scorer.spark._partition`
(the batch loop's `scorer.page.score_page`) with the broadcast model, written update-only per key range (or to a
Parquet score table). The groups' histograms, counts and failed users are summed into one `RunSummary`, and the
record ends as the single-machine run's does: FINISHED, FAILED (``failed_users.json``) or KILLED.

Spark scores everyone (``--select all``): there is no stale selection and no per-batch checkpoint; a run
that finishes marks the model's checkpoint complete, so the next single-machine stale run starts from it.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
import structlog
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sqlalchemy.engine import make_url

from lead_errors import SettingsError
from models import FeatureCatalog
from models.reasons import gives_reasons
from registry import ResolvedVersion
from scorer.app import (
    RunOptions,
    StoreOptions,
    open_store,
    require_temp_dir,
    resolve_and_load,
    scoring_tracker_for,
    store_id,
)
from scorer.contract import Names, qualified, quote_ident
from scorer.job import RunSummary, checkpoint_key, selector_for
from scorer.logs import redact_text
from scorer.run_record import RunRecord
from scorer.shadow import not_shadowed
from scorer.spark import Source, SparkJobFailed, SparkOptions
from scorer.spark._partition import GROUP_COUNTS, GroupPlan, PgWriter, Sink, group_scorer
from scorer.stats import BINS, ScoreStats
from scorer.stop import StopSignal
from scorer.stores.base import ScoreWrite, Selector
from scorer.stores.sql import SqlStore, redact_url

__all__ = ["DEFAULT_JDBC_JAR", "jdbc_target", "run_spark", "spark_session"]

log = structlog.get_logger("lead_scorer.spark")

#: Debian's libpostgresql-jdbc-java (what `.ci/run` installs); else `--jdbc-jar`, or `spark.jars.packages`
#: org.postgresql:postgresql from Maven Central.
DEFAULT_JDBC_JAR = "/usr/share/java/postgresql.jar"
_NUMERIC = {"smallint", "integer", "bigint", "numeric"}


def spark_session(*, master: str | None, jdbc_jar: str | None, partitions: int | None = None) -> SparkSession:
    """The session `run_spark` makes when it is given none: UTC (the catalog's days are UTC days), Arrow for
    the pandas groups, the JDBC driver on the class path. Under spark-submit the master is submit's.
    """
    builder = SparkSession.builder.appName("lead-scorer")
    if master:
        builder = builder.master(master)
    if (master or "").startswith("local"):
        # Local workers must run this interpreter (its venv has lead-scorer); pyspark reads only the variable,
        # when the context starts. On a cluster, PYSPARK_PYTHON names the executors' Python.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    if jdbc_jar:
        builder = builder.config("spark.jars", jdbc_jar)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def jdbc_target(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy/libpq PostgreSQL URL as Spark's JDBC URL and connection properties (the password goes in
    the properties, never in the URL Spark prints).

    >>> jdbc_target("postgresql://scorer:secret@db.example.com:5432/postgres?sslmode=require")[0]
    'jdbc:postgresql://db.example.com:5432/postgres'
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SettingsError(
            f"spark run reads and writes PostgreSQL, not {parsed.get_backend_name()} ({redact_url(url)})",
            hint="point DATABASE_URL at the PostgreSQL (Supabase) database, or use --users/--events parquet:PATH",
        )
    if not parsed.host:
        raise SettingsError(
            f"DATABASE_URL {redact_url(url)} names no TCP host (a Unix socket?), which JDBC cannot reach",
            hint="use postgresql://user:password@host:5432/db",
        )
    jdbc = f"jdbc:postgresql://{parsed.host}:{parsed.port or 5432}/{parsed.database or 'postgres'}"
    props = {"driver": "org.postgresql.Driver", "user": parsed.username or "", "fetchsize": "10000"}
    if parsed.password:
        props["password"] = str(parsed.password)
    for key in ("sslmode", "sslrootcert"):
        value = parsed.query.get(key)
        if isinstance(value, str):
            props[key] = value
    return jdbc, props


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(value: datetime) -> str:
    return f"TIMESTAMPTZ {_literal(value.astimezone(UTC).isoformat())}"


class _Db:
    """The driver's look at the database: key range, visitor quantiles, column types (one query each)."""

    def __init__(self, store: SqlStore, names: Names, *, leads_only: bool) -> None:
        self.engine = store.engine
        self.n = names
        self.leads_only = leads_only
        self.users = qualified(names.schema, names.users)
        self.events = qualified(names.schema, names.events)

    def _type(self, table: str, column: str) -> str:
        q = sa.text(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
            "AND column_name = :c"
        )
        with self.engine.connect() as conn:
            return str(conn.execute(q, {"s": self.n.schema, "t": table, "c": column}).scalar_one())

    def where(self) -> str:
        return f"WHERE {quote_ident(self.n.converted_at)} IS NULL" if self.leads_only else ""

    def key_range(self) -> tuple[int, int] | None:
        """The population's lowest and highest key, for numeric keys (JDBC reads those in key ranges)."""
        if self._type(self.n.users, self.n.user_id) not in _NUMERIC:
            return None
        uid = quote_ident(self.n.user_id)
        with self.engine.connect() as conn:
            lo, hi = conn.execute(sa.text(f"SELECT min({uid}), max({uid}) FROM {self.users} {self.where()}")).one()
        return (int(lo), int(hi)) if lo is not None else (0, 0)

    def visitor_bounds(self, parts: int) -> list[str]:
        """Visitor ids that cut the population's visitors in ``parts`` equal ranges (the events' partitions)."""
        if parts <= 1:
            return []
        vid = quote_ident(self.n.visitor_id)
        cuts = ", ".join(str(k / parts) for k in range(1, parts))
        extra = "AND" if self.where() else "WHERE"
        q = f"SELECT percentile_disc(ARRAY[{cuts}]) WITHIN GROUP (ORDER BY {vid}) FROM {self.users} {self.where()} "
        q += f"{extra} {vid} IS NOT NULL"
        with self.engine.connect() as conn:
            bounds = conn.execute(sa.text(q)).scalar_one() or []
        return sorted({str(b) for b in bounds if b is not None})

    def created_has_tz(self) -> bool:
        return "with time zone" in self._type(self.n.events, self.n.created_at)


def _users_db(
    spark: SparkSession, db: _Db, jdbc: str, props: dict[str, str], *, parts: int, key: tuple[int, int] | None
) -> DataFrame:
    n = db.n
    cols = ", ".join(
        f"{quote_ident(c)} AS {a}"
        for c, a in (
            (n.user_id, "user_id"),
            (n.visitor_id, "visitor_id"),
            (n.lead_score, "lead_score"),
            (n.model_version, "model_version"),
        )
    )
    table = f"(SELECT {cols} FROM {db.users} {db.where()}) AS lead_scorer_users"
    if key is not None:
        lo, hi = key
        return spark.read.jdbc(
            jdbc, table, column="user_id", lowerBound=lo, upperBound=hi + 1, numPartitions=parts, properties=props
        )
    # Keys with no order Spark can split (uuid, text): hash slices, each a scan of the users table.
    predicates = [f"mod(abs(hashtext(user_id::text)), {parts}) = {k}" for k in range(parts)]
    return spark.read.jdbc(jdbc, table, predicates=predicates, properties=props)


def _events_db(
    spark: SparkSession,
    db: _Db,
    jdbc: str,
    props: dict[str, str],
    *,
    parts: int,
    since: datetime,
    as_of: datetime,
) -> DataFrame:
    """Events in ``[since, as_of)`` plus those with no time or a later one (dropped and counted, as the SQL
    store counts them), each with its UTC day number computed by PostgreSQL as the SQL store computes it."""
    n = db.n
    created = quote_ident(n.created_at)
    if db.created_has_tz():
        day = f"(timezone('UTC', {created}))::date - DATE '1970-01-01'"
        at, frm = _ts(as_of), _ts(since)
    else:
        day = f"{created}::date - DATE '1970-01-01'"
        at = f"TIMESTAMP {_literal(as_of.astimezone(UTC).replace(tzinfo=None).isoformat())}"
        frm = f"TIMESTAMP {_literal(since.astimezone(UTC).replace(tzinfo=None).isoformat())}"
    vid = quote_ident(n.event_visitor_id)
    table = (
        f"(SELECT {vid}::text AS visitor_id, {quote_ident(n.event_type)}::text AS event_type, "
        f"CASE WHEN isfinite({created}) THEN {day} END AS day, {created} >= {at} AS future "
        f"FROM {db.events} WHERE {vid} IS NOT NULL AND ({created} >= {frm} OR {created} IS NULL)) AS lead_scorer_events"
    )
    bounds = db.visitor_bounds(parts)
    if not bounds:
        return spark.read.jdbc(jdbc, table, properties=props)
    # Visitor ranges cut at the population's quantiles: disjoint and complete in PostgreSQL's own order.
    edges = [_literal(b) for b in bounds]
    predicates = [f"visitor_id < {edges[0]}"]
    predicates += [f"visitor_id >= {a} AND visitor_id < {b}" for a, b in itertools.pairwise(edges)]
    predicates.append(f"visitor_id >= {edges[-1]}")
    return spark.read.jdbc(jdbc, table, predicates=predicates, properties=props)


def _users_parquet(spark: SparkSession, path: str, names: Names, *, leads_only: bool) -> DataFrame:
    frame = spark.read.parquet(path)
    have = set(frame.columns)
    for needed in (names.user_id, names.visitor_id):
        if needed not in have:
            raise SettingsError(f"the users at {path} have no column {needed!r}", hint="check LEAD_SCORER_*_COLUMN")
    if leads_only and names.converted_at in have:
        frame = frame.where(F.col(names.converted_at).isNull())
    return frame.select(
        F.col(names.user_id).alias("user_id"),
        F.col(names.visitor_id).cast("string").alias("visitor_id"),
        (F.col(names.lead_score) if names.lead_score in have else F.lit(None)).cast("double").alias("lead_score"),
        (F.col(names.model_version) if names.model_version in have else F.lit(None))
        .cast("string")
        .alias("model_version"),
    )


def _events_parquet(spark: SparkSession, path: str, names: Names, *, since: datetime, as_of: datetime) -> DataFrame:
    frame = spark.read.parquet(path)
    missing = [c for c in (names.event_visitor_id, names.event_type, names.created_at) if c not in frame.columns]
    if missing:
        raise SettingsError(f"the events at {path} have no column(s) {', '.join(missing)}")
    created = F.col(names.created_at).cast("timestamp")
    return frame.where(F.col(names.event_visitor_id).isNotNull() & ((created >= since) | created.isNull())).select(
        F.col(names.event_visitor_id).cast("string").alias("visitor_id"),
        F.col(names.event_type).cast("string").alias("event_type"),
        # The session is in UTC, so to_date is the UTC day, as `models.day_number` counts it.
        F.datediff(F.to_date(created), F.lit("1970-01-01").cast("date")).alias("day"),
        (created >= as_of).alias("future"),
    )


def _bucket(users: DataFrame, *, groups: int, key: tuple[int, int] | None) -> DataFrame:
    """Each user's key range (the cogroup key): contiguous keys when they are numbers, else a hash slice."""
    if key is not None:
        lo, hi = key
        width = float(hi - lo + 1)
        b = F.floor((F.col("user_id").cast("double") - lo) / width * groups).cast("int")
        return users.withColumn("bucket", F.least(F.greatest(b, F.lit(0)), F.lit(groups - 1)))
    return users.withColumn("bucket", F.pmod(F.hash("user_id"), F.lit(groups)))


def _numeric_range(users: DataFrame) -> tuple[int, int] | None:
    if not isinstance(users.schema["user_id"].dataType, T.IntegralType):
        return None
    row = users.agg(F.min("user_id"), F.max("user_id")).first()
    return (int(row[0]), int(row[1])) if row is not None and row[0] is not None else (0, 0)


def run_spark(
    options: RunOptions,
    engine: SparkOptions | None = None,
    *,
    spark: SparkSession | None = None,
    artifact_location: str | None = None,
    catalog: FeatureCatalog | None = None,
    stop: StopSignal | None = None,
    fail_once_after_staging: bool = False,
) -> RunSummary:
    """Score the whole population on Spark and record one MLflow run, as `scorer.app.run_scoring` records it
    (`scorer.run_record.RunRecord`): FINISHED, FAILED when a user failed (``failed_users.json``) or the Spark
    job did, KILLED when ``stop`` was requested (the Spark job is cancelled at once).

    ``engine``: where users and events come from, where scores go, and how the work is cut (`SparkOptions`).
    ``fail_once_after_staging`` is for tests: the first key range's task dies once mid-write (Spark retries it,
    so the master needs task retries, e.g. ``local[2,3]``).
    """
    engine = engine or SparkOptions()
    if options.job.limit is not None:
        raise SettingsError("spark run scores the whole population; --limit is for `lead-scorer run`")
    if options.job.history:
        raise SettingsError(
            "spark run does not append to lead_score_history", hint="unset LEAD_SCORER_HISTORY for spark run"
        )
    if engine.partitions is not None and engine.partitions < 1:
        raise SettingsError("--partitions must be at least 1")
    if engine.chunk_rows < 1 or engine.group_users < 1:
        raise SettingsError("--chunk-rows and --group-users must be at least 1")
    users_src = Source.parse(engine.users, what="users")
    events_src = Source.parse(engine.events, what="events")
    out = (
        Source.parse(engine.output, what="output")
        if engine.output
        else (Source(kind="db") if users_src.kind == "db" else None)
    )
    if out is None:
        raise SettingsError("users from Parquet need --output parquet:PATH (a score table)")
    if out.kind == "db" and users_src.kind != "db":
        raise SettingsError("--output db updates the users table, so --users must be db")
    # Scores everyone: the run's tags and params say so, as `lead-scorer run --select all` would.
    options = replace(options, job=replace(options.job, select="all"))
    job = options.job
    catalog = catalog or FeatureCatalog()
    require_temp_dir()
    names = options.store.names
    uses_db = "db" in (users_src.kind, events_src.kind, out.kind)
    writes_db = out.kind == "db" and not job.dry_run

    store: SqlStore | None = None
    if uses_db:
        opened = open_store(options.store)
        if not isinstance(opened, SqlStore) or opened.dialect != "postgresql":
            opened.close()
            raise SettingsError(
                "spark run reaches the database over JDBC: DATABASE_URL must be a PostgreSQL URL",
                hint="for a Supabase project, use its direct connection string (Settings → Database)",
            )
        store = opened.open()  # connects and learns the schema; closed below, however the run ends
    try:
        # 1. The store, and the run lock.
        if store is not None:
            store.check(scoring=True)
            if writes_db:
                store.lock_run(options.model.model_name)  # the same lock as `lead-scorer run`: never both at once
        # 2. The model (no challenger: Spark does not shadow-score, and the run's description says so).
        resolved, model = resolve_and_load(options.model, catalog)
        # 3. One MLflow run, as `lead-scorer run` opens it, with the engine and its sources as tags.
        now = datetime.now(UTC)
        # One population for the whole run, chosen as `lead-scorer run` chooses it (everyone in it is scored
        # here, fresh or not): what is scored, counted, checkpointed and described.
        selector = (
            selector_for(store, options=replace(job, select="all"), model=resolved.identity, catalog=catalog, as_of=now)
            if store is not None
            else Selector(select="all", leads_only=job.leads_only)
        )
        leads_only = selector.leads_only
        where = store.describe() if out.kind == "db" and store is not None else f"parquet {out.path}"
        record = RunRecord.open(
            scoring_tracker_for(options, artifact_location=artifact_location),
            resolved,
            model,
            options=options.record(),
            store_kind="sql" if out.kind == "db" else "parquet",
            store_id=store_id(where),
            now=now,
            store_session=store.session_name if store is not None else None,
            tags={"engine": "spark", "sources": f"users={users_src} events={events_src} out={out}"},
            close_orphans=writes_db and store is not None,
            live_sessions=store.live_sessions if store is not None else None,
            engine="spark",
        )
    except BaseException:
        if store is not None:
            store.close()
        raise

    started = time.perf_counter()
    own_group = ""
    try:
        if spark is None:
            jar = engine.jdbc_jar or (DEFAULT_JDBC_JAR if Path(DEFAULT_JDBC_JAR).is_file() else None)
            if "db" in (users_src.kind, events_src.kind) and jar is None:
                raise SettingsError(
                    "no PostgreSQL JDBC driver found",
                    hint="apt-get install libpostgresql-jdbc-java, or pass --jdbc-jar PATH",
                )
            spark = spark_session(master=engine.master, jdbc_jar=jar, partitions=engine.partitions)
        parts = engine.partitions or max(2, spark.sparkContext.defaultParallelism)
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.shuffle.partitions", str(parts))
        # 4-5. Read, grain, score and write every key range; a stop request cancels the run's Spark jobs.
        context = spark.sparkContext
        # The run's jobs in one group, which a stop cancels; a caller's own group is kept (and cancelled).
        group = context.getLocalProperty("spark.jobGroup.id") or ""
        if not group:
            group = own_group = f"lead-scorer-{uuid.uuid4().hex[:12]}"
            context.setJobGroup(group, "lead-scorer spark run", interruptOnCancel=True)
        if stop is not None:
            stop.on_stop(lambda: context.cancelJobGroup(group), at_once=True)
        summary = _stopped(resolved, leads_only=leads_only) if stop is not None and stop.requested else None
        if summary is None:
            try:
                summary = _score(
                    spark,
                    options=options,
                    engine=engine,
                    store=store,
                    names=names,
                    users_src=users_src,
                    events_src=events_src,
                    out=out,
                    model=model,
                    catalog=catalog,
                    as_of=now,
                    selector=selector,
                    parts=parts,
                    fail_once_after_staging=fail_once_after_staging,
                )
            except Exception:
                if stop is None or not stop.requested:
                    raise
                # Cancelled by the stop request: the key ranges whose tasks finished are written.
                log.warning("stop_requested", engine="spark")
                summary = _stopped(resolved, leads_only=leads_only)
        if writes_db and store is not None and summary.clean and not summary.stopped:
            # Everyone was checked at `now`: the next stale run of this model rereads only what changes after.
            store.write_scores(
                ScoreWrite(
                    user_ids=[],
                    scores=[],
                    model=resolved.identity,
                    scored_at=now,
                    checkpoint_key=checkpoint_key(resolved.identity, leads_only=leads_only),
                    complete=True,
                )
            )
            summary.complete = True
    except BaseException as exc:
        record.fail(exc)
        if isinstance(exc, Exception) and type(exc).__module__.startswith(("py4j", "pyspark")):
            # The first line says where (Spark's words), the last what (a Python worker's own exception).
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            first = redact_text(lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}")
            raise SparkJobFailed(
                f"the Spark job failed: {first[:300]}",
                hint="the key ranges whose tasks finished are written; fix the cause and run again",
            ) from exc
        raise
    finally:
        if spark is not None and own_group:
            spark.sparkContext.setJobGroup("", "")
        if store is not None:
            store.close()
    summary.duration_s = time.perf_counter() - started

    # 6. Totals, distribution, drift, tiers, failed users: the run's record ends as `lead-scorer run`'s does.
    unshadowed = not_shadowed(options.model.registry(), production=resolved, engine="Spark")
    record.finish(summary, leads_only=leads_only, notes=[unshadowed] if unshadowed is not None else [])
    return summary


def _stopped(resolved: ResolvedVersion, *, leads_only: bool) -> RunSummary:
    """A run a stop request ended before its totals came back: KILLED; what its finished tasks wrote stays."""
    return RunSummary(model_version=resolved.version, stopped=True, leads_only=leads_only)


def _database_url(store: StoreOptions) -> str:
    """The database's URL: `open_store` checked it is there (a PostgreSQL one) before any read."""
    if store.database_url is None:
        raise SettingsError("no database configured", hint="set DATABASE_URL (a postgresql:// URL)")
    return store.database_url


def _score(
    spark: SparkSession,
    *,
    options: RunOptions,
    store: SqlStore | None,
    names: Names,
    users_src: Source,
    events_src: Source,
    out: Source,
    engine: SparkOptions,
    model: Any,
    catalog: FeatureCatalog,
    as_of: datetime,
    selector: Selector,
    parts: int,
    fail_once_after_staging: bool,
) -> RunSummary:
    """Steps 4 to 6 on Spark: read, grain, one cogroup per key range, one aggregation back to the driver."""
    leads_only = selector.leads_only
    since = catalog.since(as_of)
    db = _Db(store, names, leads_only=leads_only) if store is not None else None
    jdbc, props = jdbc_target(_database_url(options.store)) if store is not None else ("", {})

    if users_src.kind == "db" and db is not None:
        key = db.key_range()
        population = store.count_users(selector) if store is not None else 0
        users = _users_db(spark, db, jdbc, props, parts=parts, key=key)
    else:
        users = _users_parquet(spark, str(users_src.path), names, leads_only=leads_only)
        key = _numeric_range(users)
        population = users.count()
    groups = max(parts, math.ceil((population or 0) / engine.group_users))
    # Read once (JDBC or files), used twice: the visitors the events are kept for, and the groups themselves.
    users = _bucket(users, groups=groups, key=key).persist()

    if events_src.kind == "db" and db is not None:
        raw = _events_db(spark, db, jdbc, props, parts=parts, since=since, as_of=as_of)
    else:
        raw = _events_parquet(spark, str(events_src.path), names, since=since, as_of=as_of)
    # The daily grain, by the stored spelling of a type: the catalog's normalization runs per group
    # (`split_dropped`), the same code every store's rows go through.
    # A new column for the key (not `bucket` itself): Spark refuses a self-join whose key it cannot tell apart.
    targets = (
        users.where(F.col("visitor_id").isNotNull())
        .select("visitor_id", (F.col("bucket") + 0).alias("gbucket"))
        .distinct()
    )
    grain = (
        raw.groupBy("visitor_id", "event_type", "day", "future")
        .agg(F.count(F.lit(1)).cast("long").alias("n"))
        .join(targets, "visitor_id")
    )

    loaded = model
    sink: Sink = "none" if options.job.dry_run else ("db" if out.kind == "db" else "parquet")
    reasons = (
        gives_reasons(loaded.pipeline, loaded.input_names)
        and (sink == "parquet" or (store is not None and store.has_reasons))
        and sink != "none"
    )
    writer = None
    if sink == "db":
        writer = PgWriter(
            url=_libpq(_database_url(options.store)),
            names=names,
            statement_timeout_s=options.store.waits.statement_s,
            lock_timeout_s=options.store.waits.lock_s,
            connect_timeout_s=options.store.waits.connect_s,
        )
    plan = GroupPlan(
        model=spark.sparkContext.broadcast(loaded),
        catalog=catalog,
        as_of=as_of,
        tolerance=options.job.tolerance,
        sink=sink,
        reasons=reasons,
        compare=True,
        writer=writer,
        chunk_rows=engine.chunk_rows,
        fail_once_after_staging=fail_once_after_staging,
    )
    schema = T.StructType(
        [
            users.schema["user_id"],
            T.StructField("lead_score", T.DoubleType()),
            T.StructField("lead_score_reasons", T.StringType()),
            T.StructField("changed", T.BooleanType()),
            T.StructField("final_score", T.DoubleType()),
            *(T.StructField(c, T.LongType()) for c in GROUP_COUNTS),
            T.StructField("error", T.StringType()),
        ]
    )
    scored = users.groupBy("bucket").cogroup(grain.groupBy("gbucket")).applyInPandas(group_scorer(plan), schema)
    if sink == "parquet":
        # Two actions over the scores (the table, the totals): computed once.
        scored = scored.persist()
        n = names
        scored.select(
            F.col("user_id").alias(n.user_id),
            F.col("lead_score").alias(n.lead_score),
            F.lit(model.resolved.identity).alias(n.model_version),
            F.lit(as_of).alias(n.scored_at),
            F.col("lead_score_reasons").alias(n.reasons),
        ).write.mode("overwrite").parquet(str(out.path))
    # A user with no score (new, and failed) is in no bin: NaN would cast to bin 0.
    known = F.col("final_score").isNotNull() & ~F.isnan("final_score")
    bins = F.when(known, F.least(F.floor(F.col("final_score") * BINS).cast("int"), F.lit(BINS - 1)))
    failed = F.col("error").isNotNull()
    rows = (
        scored.groupBy(bins.alias("bin"))
        .agg(
            F.count(F.lit(1)).alias("users"),
            F.sum(F.col("changed").cast("long")).alias("changed"),
            F.sum(failed.cast("long")).alias("failed"),
            # Who failed and why, for `failed_users.json` (10,000 at most, as the single-machine run keeps).
            F.slice(
                F.collect_list(F.when(failed, F.struct(F.col("user_id").cast("string").alias("user_id"), "error"))),
                1,
                10_000,
            ).alias("failed_users"),
            *(F.sum(c).alias(c) for c in GROUP_COUNTS),
        )
        .collect()
    )
    if sink == "parquet":
        scored.unpersist()
    hist = np.zeros(BINS, dtype=np.int64)
    totals: dict[str, int] = {}
    failed_users: list[dict[str, str]] = []
    for row in rows:
        d = row.asDict()
        if d["bin"] is not None:
            hist[int(d["bin"])] += int(d["users"])
        failed_users += [{"user_id": f["user_id"], "error": f["error"]} for f in d.pop("failed_users") or []]
        for k, v in d.items():
            if k != "bin":
                totals[k] = totals.get(k, 0) + int(v or 0)
    selected = totals.get("users", 0)
    vanished = totals.get("group_vanished", 0)
    changed = totals.get("changed", 0)
    failed_count = totals.get("failed", 0)
    summary = RunSummary(
        model_version=model.resolved.version,
        leads_only=leads_only,
        batches=totals.get("group_batches", 0),
        users_selected=selected,
        users_scored=selected - vanished - failed_count,
        users_changed=changed - vanished,
        users_moved=max(totals.get("group_moved", 0) - vanished, 0),  # as the job counts it
        users_unchanged=selected - changed - failed_count,
        users_failed=failed_count,
        failed_users=sorted(failed_users, key=lambda f: f["user_id"])[:10_000],
        users_vanished=vanished,
        events_read=totals.get("group_events", 0),
        dropped={
            "null_type": totals.get("group_null_type", 0),
            "null_time": totals.get("group_null_time", 0),
            "future": totals.get("group_future", 0),
        },
    )
    stats = ScoreStats.from_histogram(hist)
    summary.stats = stats
    # The database's population after the run is every lead's kept or new score (the merged histograms of
    # the groups), what `lead-scorer run` reads back with one query; a lake table is its own population.
    if sink != "none":
        summary.population = ScoreStats.from_histogram(hist)
    users.unpersist()
    log.info("spark_scored", users=selected, changed=summary.users_changed, groups=summary.batches, partitions=parts)
    return summary
