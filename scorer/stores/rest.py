"""The Supabase REST store: PostgREST through ``supabase-py``, complete under Supabase's real limits.

- Users are read by key pages (``user_id > last``, ordered), each request at most the server's row cap;
  a page shorter than asked for ends the selection only when the server returned fewer than the cap.
- Events come from ``lead_scorer_daily_events`` (project SQL): one POST per batch, ids in the body,
  aggregated per visitor, type and day, returned as one JSON value that the row cap never truncates.
  Without it, raw events are read with ``in.(…)`` chunks sized by encoded URL length, each chunk by keyset
  on visitor and then time (events have no key, and offsets skip or repeat rows of a table that moves).
- Scores are written by ``lead_scorer_write_scores`` (project SQL): one POST per batch, update-only.
- Transient failures are retried with exponential backoff and jitter, bounded in attempts and time;
  a wrong key stops at once.

A `ScoringSource` only: training reads every user and event, which the Data API is not made for.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import stamina
import structlog
from postgrest import APIResponse
from postgrest.exceptions import APIError
from postgrest.types import CountMethod
from supabase import ClientOptions, create_client

from lead_errors import AuthError, RunLocked, SchemaError, StoreError, TransientError
from scorer.contract import Names
from scorer.schema import (
    EVENTS_FUNCTION,
    HISTOGRAM_FUNCTION,
    LOCK_FUNCTION,
    LOCKS_TABLE,
    SELECT_FUNCTION,
    SHADOW_PAIRS_FUNCTION,
    UNLOCK_FUNCTION,
    WRITE_FUNCTION,
)
from scorer.stores._rest_json import (
    EventRow,
    RpcParams,
    UserRow,
    checkpoint_row,
    daily_events,
    histogram_pairs,
    rows_written,
    shadow_pairs_page,
    stale_users,
    user_rows,
)
from scorer.stores.base import (
    Checkpoint,
    EventRead,
    FeatureRequest,
    ScoreWrite,
    Selector,
    ShadowPairs,
    Source,
    UserPage,
    split_dropped_frame,
)

__all__ = ["RestStore", "is_transient"]

log = structlog.get_logger("lead_scorer.rest")
T = TypeVar("T")

_TRANSIENT_STATUS = {"408", "429", "502", "503", "504", "520", "521", "522", "523", "524", "530", "540", "544"}
_TRANSIENT_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}
_WRITING = "writing scores"
_APPLY_HINT = (
    "apply the project's SQL: paste the output of `lead-scorer db sql` into Supabase's SQL editor, or run "
    "`lead-scorer db migrate` with DATABASE_URL set to the project's connection string"
)


def _own_table(names: Names, text: str) -> str | None:
    """Which of the job's own tables (not the product's) ``text`` names, if any: a missing one means the SQL
    of this release was not applied, whatever the LEAD_SCORER_*_TABLE settings say."""
    for table in (names.checkpoints, names.history, LOCKS_TABLE):
        if table in text:
            return table
    return None


def is_transient(exc: BaseException) -> bool:
    """Network errors and the statuses Supabase asks clients to retry (gently)."""
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, APIError):
        code = str(exc.code) if exc.code is not None else ""
        return code in _TRANSIENT_STATUS or code in _TRANSIENT_CODES
    return False


def _is_auth(exc: APIError) -> bool:
    message = (exc.message or "").lower()
    return exc.code in (None, "401", "PGRST301", "PGRST302") and ("api key" in message or "jwt" in message)


class RestStore(Source):
    """Users and events behind Supabase's Data API (PostgREST)."""

    kind = "rest"
    #: One request at a time: a retried failure is the request it hit, and the API's rate limit is not raced.
    max_in_flight = 1

    def __init__(
        self,
        url: str,
        *,
        key: str,
        names: Names | None = None,
        max_rows: int = 1_000,
        url_budget: int = 6_000,
        timeout_s: float = 30.0,
        connect_s: float = 5.0,
        retry_attempts: int = 6,
        retry_timeout_s: float = 120.0,
        lease_s: int = 60,
        heartbeat_s: float | None = 15.0,
    ) -> None:
        self.names = names or Names()
        self.url = url.rstrip("/")
        self.max_rows = max_rows
        self.url_budget = url_budget
        self.retries = 0
        self._opened = False
        self.fast_events = False  # what `open` found: whether the aggregating events function is installed
        self.has_reasons = False
        self.has_converted = False
        self.has_history = False
        self.has_histogram = False
        self.has_shadow = False
        self.lease_s = lease_s
        self.connect_s = connect_s
        self.heartbeat_s = heartbeat_s
        self._lease: RpcParams | None = None
        self._renewed = 0.0
        self._lease_lost: str | None = None
        self._cancelled = threading.Event()
        self._heartbeat: tuple[threading.Thread, threading.Event] | None = None
        # Our own retry policy replaces the client's (GET-only, fixed waits, unlogged).
        options = ClientOptions(
            schema=self.names.schema,
            # A bare number would be int()-truncated; connecting is bounded like the database's connect.
            postgrest_client_timeout=httpx.Timeout(timeout_s, connect=connect_s),
            postgrest_client_retry=False,
        )
        self._client = create_client(self.url, key, options=options)
        # The lease's heartbeat renews on a client of its own: the run's session serves one request at a time.
        self._beat_client = functools.partial(create_client, self.url, key, options=options)
        self._pg = self._client.postgrest
        self._retry = stamina.retry(
            on=self._should_retry, attempts=retry_attempts, timeout=retry_timeout_s, wait_initial=0.5, wait_max=10.0
        )

    # -- plumbing --------------------------------------------------------------------------------
    def _should_retry(self, exc: Exception) -> bool:
        if self._cancelled.is_set():
            return False  # a stop request: no request is tried again (`cancel`)
        if is_transient(exc):
            self.retries += 1
            log.warning("rest_retry", error=_describe(exc), retries=self.retries)
            return True
        return False

    def _call(self, what: str, fn: Callable[[], T], *, stopping: bool = False) -> T:
        """Run one request with retries; translate what is left into the job's errors. Once the store is
        cancelled only a request made while ``stopping`` (giving the lease back) is still sent."""
        if self._cancelled.is_set() and not stopping:
            raise TransientError(
                f"the run is stopping: a stop request cancelled the store before {what}",
                hint="nothing to fix; the next run rescores what this one did not write",
            )
        try:
            return self._retry(fn)()
        except APIError as exc:
            if is_transient(exc):
                raise TransientError(f"Supabase kept failing while {what}: {_describe(exc)}") from exc
            raise self._translate(exc, what) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                f"Supabase at {self.url} did not answer while {what}: {type(exc).__name__}",
                hint="check SUPABASE_URL and that the project is not paused",
            ) from exc

    def _translate(self, exc: APIError, what: str) -> StoreError:
        n = self.names
        if _is_auth(exc):
            return AuthError(
                f"Supabase rejected the API key ({exc.message})",
                hint="check SUPABASE_SERVICE_ROLE_KEY: the service_role key of the project at SUPABASE_URL "
                "(Supabase: Project Settings → API)",
            )
        code = str(exc.code or "")
        if code in ("42P01", "42883") and what == _WRITING:
            # The write function names every table with its schema and runs with search_path = '': a missing
            # relation or function here comes from something that fires on the users table.
            return SchemaError(
                f"writing scores failed inside the database: a trigger or function on {n.schema}.{n.users} "
                f"failed with PostgreSQL's error: {exc.message}",
                hint="lead-scorer writes with search_path = '' (as Supabase advises for such functions), so a "
                "trigger function on that table must schema-qualify what it names (public.my_table, not my_table) "
                "or set its own: ALTER FUNCTION my_trigger_fn() SET search_path = public",
            )
        if code in ("PGRST205", "42P01"):
            own = _own_table(n, f"{what} {exc.message or ''}")
            if own is not None:
                # The job's own table, not the product's: the database is on an earlier release's schema.
                return SchemaError(
                    f"lead-scorer's own table {own} is missing while {what} (this database has not had this "
                    f"release's SQL applied): {exc.message}",
                    hint=_APPLY_HINT,
                )
            return SchemaError(f"a table is missing while {what}: {exc.message}", hint="check LEAD_SCORER_*_TABLE")
        if code in ("42703", "PGRST204"):
            hint = (
                _APPLY_HINT
                if n.lead_score in (exc.message or "") or "lead_score" in (exc.message or "")
                else ("check the LEAD_SCORER_*_COLUMN settings")
            )
            return SchemaError(f"a column is missing while {what}: {exc.message}", hint=hint)
        if code == "PGRST202":
            return SchemaError(f"a database function is missing while {what}: {exc.message}", hint=_APPLY_HINT)
        if code == "42501":
            return AuthError(
                f"permission denied while {what}: {exc.message}",
                hint="use the service_role key (SUPABASE_SERVICE_ROLE_KEY), not the anon key",
            )
        return StoreError(f"Supabase refused {what}: {_describe(exc)}")

    # -- housekeeping ------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"supabase {self.url}"

    def close(self) -> None:
        self._opened = False
        self.unlock_run()
        self._pg.session.close()

    def lock_run(self, key: str) -> None:
        """The run lock as a lease (`lead_scorer_lock`): a Data API request has no session to hold a lock with.

        A heartbeat thread renews the lease every ``heartbeat_s`` (15 s) for ``lease_s`` (60 s) while the run
        lives, and `close` gives it back; a run that dies, or loses the API and cannot give it back, lets it
        expire within ``lease_s``, so the next run is not refused for long. A run whose lease was not renewed
        for ``lease_s`` (the API was away: another run may have taken it), or was taken by another run, stops
        before its next write (`RunLocked`)."""
        holder = f"{uuid.uuid4().hex} pid {os.getpid()}"
        params: RpcParams = {"p_key": f"lead-scorer:{key}", "p_holder": holder, "p_lease_s": self.lease_s}
        got = self._call("taking the run lock", lambda: self._pg.rpc(LOCK_FUNCTION, params).execute()).data
        if not got:
            raise RunLocked(
                f"another lead-scorer run of {key} holds this project's run lock",
                hint="wait for it to finish (it may be the cron job, a laptop or `mlflow run`); a run that died "
                f"gives it up within {self.lease_s} s",
            )
        self._lease = params
        self._lease_lost = None
        self._renewed = time.monotonic()
        if self.heartbeat_s is not None:
            stop = threading.Event()
            beat = threading.Thread(target=self._beat, args=(params, stop), name="lead-scorer-lease", daemon=True)
            self._heartbeat = (beat, stop)
            beat.start()

    def _beat(self, lease: dict[str, Any], stop: threading.Event) -> None:
        """The heartbeat: renew ``lease`` every ``heartbeat_s`` until ``stop``, or until another run holds it."""
        assert self.heartbeat_s is not None
        client = self._beat_client().postgrest
        try:
            while not stop.wait(self.heartbeat_s):
                if not self.renew_lease(client=client, lease=lease):
                    return
        finally:
            client.session.close()

    def renew_lease(self, *, client: Any = None, lease: dict[str, Any] | None = None) -> bool:
        """One renewal of the run's lease (what the heartbeat does): False once another run holds it. A failed
        request is logged and left to the next beat; the lease runs out if the API stays away."""
        lease = lease or self._lease
        if lease is None:
            return False
        try:
            got = (client or self._pg).rpc(LOCK_FUNCTION, lease).execute().data
        except (APIError, httpx.HTTPError) as exc:
            log.warning("run_lock_not_renewed", error=_describe(exc), lease_s=self.lease_s)
            return True
        if not got:
            self._lease_lost = "another run took it"
            log.error("run_lock_lost", reason=self._lease_lost)
            return False
        self._renewed = time.monotonic()
        return True

    def _check_lease(self) -> None:
        """Before a write: the lease is still this run's, or `RunLocked` and nothing is written."""
        if self._lease is None:
            return
        lost = self._lease_lost
        if lost is None and time.monotonic() - self._renewed > self.lease_s:
            lost = f"it was not renewed for {self.lease_s} s and may have been taken meanwhile"
        if lost is not None:
            raise RunLocked(
                f"this run lost the run lock ({lost}); it stops before writing again, so no user is written "
                "by two runs",
                hint="the next run rescores what this one did not reach",
            )

    def unlock_run(self) -> None:
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat[1].set()
            beat[0].join(timeout=self.lease_s)
        lease, self._lease = self._lease, None
        if lease is not None:
            args: RpcParams = {"p_key": lease["p_key"], "p_holder": lease["p_holder"]}
            try:
                self._call(
                    "giving back the run lock", lambda: self._pg.rpc(UNLOCK_FUNCTION, args).execute(), stopping=True
                )
            except StoreError as exc:  # the lease expires by itself, within lease_s
                log.warning("run_lock_not_released", error=str(exc), expires_within_s=self.lease_s)

    @property
    def session_name(self) -> str | None:
        """None: a Data API request has no session of its own to name."""
        return None

    def live_sessions(self) -> set[str] | None:
        return None  # the Data API shows no sessions: orphans are told by their age

    def cancel(self) -> None:
        """A stop request: from now on no request is retried and none starts (but giving the lease back). A
        request under way ends by itself (LEAD_SCORER_SUPABASE_TIMEOUT_S): an HTTP request has nothing to cancel."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            log.warning("requests_stopped", reason="stop requested")

    def open(self) -> Self:
        """Prove the key (the first request: a wrong one stops here, unretried) and learn which optional
        columns, tables and functions the project has, one small request each."""
        if self._opened:
            return self
        n = self.names
        try:
            self._first_contact(lambda: self._pg.from_(n.users).select(n.user_id).limit(1).execute())
            self.has_converted = self._exists(n.users, n.converted_at)
            self.has_reasons = self._exists(n.users, n.reasons)
            self.has_history = self._exists(n.history, n.user_id)
            self.has_histogram = self._function(HISTOGRAM_FUNCTION, {"p_bins": 1, "p_leads_only": False})
            # The shadow table, and the functions that write and read it (one migration brings all three).
            self.has_shadow = self._exists(n.shadow, n.user_id) and self._function(
                SHADOW_PAIRS_FUNCTION,
                _pairs_params(production="", challenger="", leads_only=False, after=None, limit=0),
            )
            self.fast_events = self._function(EVENTS_FUNCTION, {"p_visitor_ids": [], "p_since": None, "p_as_of": None})
        except BaseException:
            self.close()
            raise
        if not self.fast_events:
            log.warning("rest_slow_events", hint=f"{EVENTS_FUNCTION} is missing; {_APPLY_HINT} for the fast path")
        self._opened = True
        return self

    def _first_contact(self, request: Callable[[], Any]) -> None:
        """The first request, answered within ``connect_s`` (one retry): a server that accepts and never
        answers is reported in seconds, as the database's connect timeout does, not after every retry of a
        30 s read (130 s). Later requests get the full ``timeout_s``: a large batch may take that long."""
        session = self._pg.session
        full, session.timeout = session.timeout, httpx.Timeout(self.connect_s)
        retry, self._retry = self._retry, stamina.retry(on=self._should_retry, attempts=2)
        try:
            self._call(f"reading {self.names.users}", request)
        finally:
            session.timeout, self._retry = full, retry

    def _need_open(self) -> None:
        if not self._opened:
            raise RuntimeError("the store is not open: use `with store:` or `store.open()` first")

    def check(self, *, scoring: bool = True) -> None:
        """One small request per thing a run needs: the columns it reads, and for ``scoring`` the columns,
        table and functions it writes through. Empty calls prove the functions exist and change nothing."""
        self._need_open()
        n = self.names
        cols = [n.user_id, n.visitor_id] + ([n.lead_score, n.model_version, n.scored_at] if scoring else [])
        self._call(f"reading {n.users}", lambda: self._pg.from_(n.users).select(",".join(cols)).limit(1).execute())
        ecols = ",".join([n.event_visitor_id, n.event_type, n.created_at])
        self._call(f"reading {n.events}", lambda: self._pg.from_(n.events).select(ecols).limit(1).execute())
        if not scoring:
            return
        self._call(f"reading {n.checkpoints}", lambda: self._pg.from_(n.checkpoints).select("key").limit(1).execute())
        self._call(
            f"calling {WRITE_FUNCTION}",
            lambda: self._pg.rpc(
                WRITE_FUNCTION,
                _write_params(ScoreWrite(user_ids=[], scores=[], model="check", scored_at=datetime.now().astimezone())),
            ).execute(),
        )
        self._call(f"calling {SELECT_FUNCTION}", lambda: self._pg.rpc(SELECT_FUNCTION, _stale_probe()).execute())

    def _exists(self, table: str, column: str) -> bool:
        """Whether an optional table or column is there (PostgREST answers 42703/PGRST205 if not)."""
        try:
            self._retry(lambda: self._pg.from_(table).select(column).limit(1).execute())()
        except APIError as exc:
            if str(exc.code or "") in ("42703", "PGRST204", "PGRST205", "42P01"):
                return False
            raise self._translate(exc, f"reading {table}") from exc
        return True

    def _function(self, name: str, probe: RpcParams) -> bool:
        """Whether an optional database function is there."""
        try:
            self._retry(lambda: self._pg.rpc(name, probe).execute())()
        except APIError as exc:
            if exc.code != "PGRST202":
                raise self._translate(exc, f"calling {name}") from exc
            return False
        return True

    # -- reads -------------------------------------------------------------------------------------
    def _filtered(self, query: Any, selector: Selector) -> Any:
        n = self.names
        if selector.leads_only and self.has_converted:
            query = query.is_(n.converted_at, "null")
        if selector.select == "unscored":
            return query.is_(n.lead_score, "null")
        return query

    def count_users(self, selector: Selector) -> int | None:
        self._need_open()
        if selector.select == "stale":
            return None  # the rule needs the database function, which returns pages, not counts
        n = self.names
        res = self._call(
            "counting users",
            lambda: self._filtered(
                self._pg.from_(n.users).select(n.user_id, count=CountMethod.exact, head=True), selector
            ).execute(),
        )
        return int(res.count or 0)

    def _page(self, rows: Sequence[UserRow]) -> UserPage:
        return UserPage(
            user_ids=[r["user_id"] for r in rows],
            visitor_ids=[r["visitor_id"] for r in rows],
            scores=np.array([np.nan if (x := r["lead_score"]) is None else float(x) for r in rows]),
            models=[r["model"] for r in rows],
        )

    def select_users(self, selector: Selector, *, after: Any | None, limit: int) -> UserPage:
        self._need_open()
        n = self.names
        if selector.select == "stale":
            return self._stale_page(selector, after=after, limit=limit)
        cols = [n.user_id, n.visitor_id, n.lead_score, n.model_version]
        rows: list[UserRow] = []
        last = after
        while len(rows) < limit:
            want = min(limit - len(rows), self.max_rows)

            def page(last: Any = last, want: int = want) -> Any:
                q = self._filtered(self._pg.from_(n.users).select(",".join(cols)), selector)
                if last is not None:
                    q = q.gt(n.user_id, str(last))
                return q.order(n.user_id).limit(want).execute()

            got = user_rows(self._call("reading users", page).data, n)
            rows.extend(got)
            if len(got) < want:  # the server had no more (a cap below ours also lands here: see check)
                break
            last = got[-1]["user_id"]
        return self._page(rows)

    def _stale_page(self, selector: Selector, *, after: Any | None, limit: int) -> UserPage:
        """One key page of the `stale` rule from its database function: one POST, one JSON value that the
        row cap never truncates."""
        f = selector.freshness
        if f is None:
            raise ValueError("select='stale' needs a Freshness")
        cp = f.checkpoint
        params: RpcParams = {
            "p_after": None if after is None else str(after),
            "p_limit": limit,
            "p_model": f.model,
            "p_as_of": f.as_of.isoformat(),
            "p_day_start": f.day_start.isoformat(),
            "p_reach_days": f.reach.days,
            "p_complete": cp.complete_as_of.isoformat() if cp.complete_as_of else None,
            "p_partial": cp.partial_as_of.isoformat() if cp.partial_as_of else None,
            "p_through": None if cp.partial_through is None else str(cp.partial_through),
            "p_leads_only": selector.leads_only and self.has_converted,
        }
        res = self._call("selecting stale users", lambda: self._pg.rpc(SELECT_FUNCTION, params).execute())
        doc = stale_users(res.data)
        columns = zip(doc["user_id"], doc["visitor_id"], doc["lead_score"], doc["model"], strict=True)
        return self._page([UserRow(user_id=u, visitor_id=v, lead_score=s, model=m) for u, v, s, m in columns])

    def find_users(self, user_ids: Sequence[str]) -> UserPage:
        n = self.names
        cols = ",".join([n.user_id, n.visitor_id, n.lead_score, n.model_version])
        res = self._call(
            "reading users",
            lambda: self._pg.from_(n.users).select(cols).in_(n.user_id, list(user_ids)).order(n.user_id).execute(),
        )
        return self._page(user_rows(res.data or [], n))

    def read_checkpoint(self, key: str) -> Checkpoint:
        table = self.names.checkpoints
        res = self._call(
            "reading the checkpoint",
            lambda: (
                self._pg.from_(table).select("complete_as_of,partial_as_of,partial_through").eq("key", key).execute()
            ),
        )
        row = checkpoint_row(res.data)
        if row is None:
            return Checkpoint()
        return Checkpoint(
            complete_as_of=_time(row.get("complete_as_of")),
            partial_as_of=_time(row.get("partial_as_of")),
            partial_through=row.get("partial_through"),
        )

    def score_histogram(self, *, leads_only: bool, bins: int) -> np.ndarray | None:
        self._need_open()
        if not self.has_histogram:
            return None
        params: RpcParams = {"p_bins": bins, "p_leads_only": leads_only and self.has_converted}
        res = self._call("counting scores", lambda: self._pg.rpc(HISTOGRAM_FUNCTION, params).execute())
        pairs = histogram_pairs(res.data)
        out = np.zeros(bins, dtype=np.int64)
        for b, count in pairs:
            out[max(0, min(int(b), bins - 1))] += int(count)
        return out

    def shadow_pairs(self, *, production: str, challenger: str, leads_only: bool) -> ShadowPairs | None:
        """Key pages of `_PAIRS_PAGE` pairs, each one JSON value from the database function (the response cap
        counts rows, not values)."""
        self._need_open()
        if not self.has_shadow:
            return None
        a: list[float] = []
        b: list[float] = []
        after: str | None = None
        while True:
            params = _pairs_params(
                production=production,
                challenger=challenger,
                leads_only=leads_only and self.has_converted,
                after=after,
                limit=_PAIRS_PAGE,
            )

            def call(p: RpcParams = params) -> Any:
                return self._pg.rpc(SHADOW_PAIRS_FUNCTION, p).execute()

            page = shadow_pairs_page(self._call("reading shadow scores", call).data)
            got = page["user_id"]  # only for the next page's key
            a += page["production"]
            b += page["challenger"]
            if len(got) < _PAIRS_PAGE:
                break
            after = str(got[-1])
        return ShadowPairs(production=np.array(a, dtype=np.float64), challenger=np.array(b, dtype=np.float64))

    def read_events(
        self,
        visitor_ids: Sequence[str | None],
        *,
        since: datetime,
        as_of: datetime,
        features: FeatureRequest | None = None,  # the daily grain is computed in the database already
    ) -> EventRead:
        self._need_open()
        vids = sorted({v for v in visitor_ids if v is not None})
        if not vids:
            return EventRead()
        if self.fast_events:
            params: RpcParams = {"p_visitor_ids": vids, "p_since": since.isoformat(), "p_as_of": as_of.isoformat()}
            res = self._call("reading daily events", lambda: self._pg.rpc(EVENTS_FUNCTION, params).execute())
            return split_dropped_frame(pd.DataFrame(daily_events(res.data)))
        frame, future = self._raw_events(vids, since=since, as_of=as_of)
        return split_dropped_frame(frame, future_counted=future)

    def _raw_events(self, vids: list[str], *, since: datetime, as_of: datetime) -> tuple[pd.DataFrame, int]:
        """Raw rows, aggregated here: every ``in.(…)`` chunk read completely, a complete slice per request;
        and how many events (with a type) are at or after ``as_of``.

        The rows are bounded by ``created_at < as_of`` so that events the product inserts while we read land
        outside the window. Events at or after ``as_of`` are only counted (one count request per chunk), to
        report them as dropped.
        """
        n = self.names
        parts = []
        future = 0
        for chunk in self._chunks(vids):
            parts.append(self._read_chunk(chunk, since=since.isoformat(), as_of=as_of.isoformat()))

            def count_future(chunk: list[str] = chunk) -> APIResponse:
                return (
                    self._pg.from_(n.events)
                    .select(n.event_visitor_id, count=CountMethod.exact, head=True)
                    .in_(n.event_visitor_id, chunk)
                    .gte(n.created_at, as_of.isoformat())
                    .not_.is_(n.event_type, "null")
                    .execute()
                )

            counted = self._call("counting future events", count_future)
            future += int(counted.count or 0)
        raw = pd.concat(parts, ignore_index=True)
        created = pd.to_datetime(raw[n.created_at], utc=True, format="ISO8601")
        raw = pd.DataFrame(
            {
                "visitor_id": raw[n.event_visitor_id],
                "event_type": raw[n.event_type].str.strip().str.lower(),
                "day": created.dt.strftime("%Y-%m-%d").where(created.notna()),
                "future": False,
                "n": raw["n"],
            }
        )
        daily = raw.groupby(["visitor_id", "event_type", "day", "future"], dropna=False)["n"].sum().reset_index()
        return daily, future

    def _read_chunk(self, chunk: list[str], *, since: str, as_of: str) -> pd.DataFrame:
        """Every event of ``chunk`` in the window, one row per event or per run of identical events (``n``).

        Events have no key, and a page at an offset of a table that moves under the reader (a retention
        delete, a backdated insert) repeats or skips rows. So no request uses an offset: each reads the first
        rows, up to the cap, of ``(visitor, created_at, type)`` order in one statement, with its exact count,
        and keeps only what it holds whole.

        - Every visitor but the page's last is complete; the rest is asked for again without them.
        - A visitor with more events than a page holds is read alone, by time (`_visitor_by_time`).
        - A page that is all one timestamp is read by type within it (`_visitor_at`).

        So an event that exists for the whole read is taken exactly once, and one inserted behind the
        reader is left for the next run.
        """
        vis, at = self.names.event_visitor_id, self.names.created_at
        window = f"and({at}.gte.{_or_value(since)},{at}.lt.{_or_value(as_of)}),{at}.is.null"
        kept: list[EventRow] = []
        runs: list[EventRow] = []
        pending = list(chunk)
        while pending:
            rows, complete = self._first_rows(pending, lambda q: q.or_(window))
            if complete:
                kept.extend(rows)
                break
            last = rows[-1][vis]
            whole = [r for r in rows if r[vis] != last]  # a visitor's rows are contiguous: these are complete
            left = [v for v in pending if v not in {r[vis] for r in whole} and v != last]
            if last not in pending or (whole and len(left) == len(pending) - 1):
                raise StoreError(
                    f"the events API returned visitor id {last!r} in a form it was not asked for",
                    hint=f"{self.names.events}.{vis} and {self.names.users}.{self.names.visitor_id} must hold "
                    "the same text: if one is uuid or citext, install lead_scorer_daily_events (`lead-scorer db sql`)",
                )
            kept.extend(whole)
            if whole:
                pending = [*left, last]
                continue
            pending = left
            self._visitor_by_time(last, rows, since=since, as_of=as_of, kept=kept, runs=runs)
        columns = [vis, self.names.event_type, at]
        frame = pd.DataFrame(kept, columns=columns).assign(n=1)
        return pd.concat([frame, pd.DataFrame(runs, columns=[*columns, "n"])], ignore_index=True)

    def _first_rows(self, visitors: list[str], where: Callable[[Any], Any]) -> tuple[list[EventRow], bool]:
        """The first rows (up to the cap) of these visitors' events in reading order, and whether that is all."""
        n = self.names
        query = (
            self._pg.from_(n.events)
            .select(f"{n.event_visitor_id},{n.event_type},{n.created_at}", count=CountMethod.exact)
            .in_(n.event_visitor_id, visitors)
            .order(n.event_visitor_id)
            .order(n.created_at, nullsfirst=True)
            .order(n.event_type, nullsfirst=True)
            .limit(self.max_rows)
        )
        res = self._call("reading events", where(query).execute)
        rows: list[EventRow] = res.data or []
        complete = int(res.count or 0) <= len(rows)  # the page and its count come from one statement
        if not complete and not rows:
            raise StoreError(
                "the events API answered an incomplete read with no rows",
                hint="check that the API's row limit (db-max-rows) is above 0",
            )
        return rows, complete

    def _visitor_by_time(
        self,
        vid: str,
        rows: list[EventRow],
        *,
        since: str,
        as_of: str,
        kept: list[EventRow],
        runs: list[EventRow],
    ) -> None:
        """The rest of one visitor's events, from a first page that did not hold them all: everything before
        the page's last timestamp is complete, and the next request starts at that timestamp."""
        at = self.names.created_at
        complete = False
        while not complete:
            stamp = rows[-1][at]
            first = next(i for i, r in enumerate(rows) if r[at] == stamp)
            if first == 0:  # the whole page is one timestamp, or has none (NULL times sort first)
                self._visitor_at(vid, stamp, kept=kept, runs=runs)
                start, inclusive = (since, True) if stamp is None else (stamp, False)
            else:
                kept.extend(rows[:first])
                start, inclusive = stamp, True

            def after(q: Any, s: str = start, i: bool = inclusive) -> Any:
                return (q.gte(at, s) if i else q.gt(at, s)).lt(at, as_of)

            rows, complete = self._first_rows([vid], after)
        kept.extend(rows)

    def _visitor_at(self, vid: str, stamp: str | None, *, kept: list[EventRow], runs: list[EventRow]) -> None:
        """One visitor's events at one timestamp (a backfill), or without one, type by type; a run of
        identical events (same visitor, time and type) is counted, not read."""
        n = self.names
        typ, at = n.event_type, n.created_at
        after: object = _FIRST  # types sort NULL first; None: past the NULL types

        def where(q: Any) -> Any:
            q = _is(q, at, stamp)
            if after is _FIRST:
                return q
            return q.not_.is_(typ, "null") if after is None else q.gt(typ, after)

        while True:
            rows, complete = self._first_rows([vid], where)
            if complete:
                kept.extend(rows)
                return
            last = rows[-1][typ]
            kept.extend(r for r in rows if r[typ] != last)
            query = self._pg.from_(n.events).select(n.event_visitor_id, count=CountMethod.exact, head=True)
            query = _is(_is(query.eq(n.event_visitor_id, vid), at, stamp), typ, last)
            same = int(self._call("counting events", query.execute).count or 0)
            runs.append({n.event_visitor_id: vid, typ: last, at: stamp, "n": same})
            after = last

    def _chunks(self, values: list[str]) -> list[list[str]]:
        """Split ``values`` so that each ``in.(…)`` list stays within the URL budget once encoded."""
        base = len(self.url) + 300  # path, select, order, the created_at filter
        chunks: list[list[str]] = []
        current: list[str] = []
        size = base
        for v in values:
            cost = len(quote(_in_element(v), safe="")) + 3
            if current and size + cost > self.url_budget:
                chunks.append(current)
                current, size = [], base
            current.append(v)
            size += cost
        if current:
            chunks.append(current)
        return chunks

    # -- writes ------------------------------------------------------------------------------------
    def write_scores(self, write: ScoreWrite) -> int:
        self._need_open()
        if not all(math.isfinite(float(x)) for x in write.scores):
            raise ValueError("refusing to send a non-finite score")
        if write.history and not self.has_history:
            raise SchemaError(
                f"LEAD_SCORER_HISTORY is on but the table {self.names.history} does not exist", hint=_APPLY_HINT
            )
        self._check_lease()
        params = _write_params(write, reasons=self.has_reasons)
        # Retrying the write is safe: the same scores for the same ids, update-only, the same checkpoint.
        res = self._call(_WRITING, lambda: self._pg.rpc(WRITE_FUNCTION, params).execute())
        return rows_written(res.data)


#: Pairs per call of the shadow pairs function: two numbers and an id each, ~4 MB of JSON.
_PAIRS_PAGE = 100_000


def _pairs_params(*, production: str, challenger: str, leads_only: bool, after: str | None, limit: int) -> RpcParams:
    return {
        "p_model": production,
        "p_challenger": challenger,
        "p_leads_only": leads_only,
        "p_after": after,
        "p_limit": limit,
    }


def _write_params(write: ScoreWrite, *, reasons: bool = True) -> RpcParams:
    """The write function's arguments: scores, reasons, history, checkpoint and the challenger's shadow scores
    go in one call (the shadow's only when there are some, so a database migrated before them still writes)."""
    shadow = write.shadow
    extra: RpcParams = {}
    if shadow is not None and len(shadow.user_ids):
        extra = {
            "p_shadow_model": shadow.model,
            "p_shadow_ids": [str(u) for u in shadow.user_ids],
            "p_shadow_scores": [float(x) for x in shadow.scores],
        }
    return extra | {
        "p_ids": [str(u) for u in write.user_ids],
        "p_scores": [float(x) for x in write.scores],
        "p_version": write.model,
        "p_scored_at": write.scored_at.isoformat(),
        "p_reasons": list(write.reasons) if reasons and write.reasons is not None else None,
        "p_history": write.history,
        "p_checkpoint": write.checkpoint_key,
        "p_through": None if write.through is None else str(write.through),
        "p_complete": write.complete,
    }


def _stale_probe() -> RpcParams:
    """Arguments for an empty call of the stale-users function (``p_limit`` 0)."""
    return {
        "p_after": None,
        "p_limit": 0,
        "p_model": "check",
        "p_as_of": None,
        "p_day_start": None,
        "p_reach_days": 0,
        "p_complete": None,
        "p_partial": None,
        "p_through": None,
        "p_leads_only": False,
    }


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


_FIRST = object()


def _is(query: Any, column: str, value: str | None) -> Any:
    """``column = value``, or ``column IS NULL`` for None."""
    return query.is_(column, "null") if value is None else query.eq(column, value)


def _in_element(value: str) -> str:
    """How the client writes one ``in.(…)`` element: quoted only when it contains ``,:()"\\``."""
    if any(c in value for c in ',:()"\\'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _or_value(value: str) -> str:
    """A value inside ``or=(…)``: quoted the same way, since commas and parentheses are syntax there."""
    return _in_element(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{exc.code or 'no code'}: {(exc.message or exc.details or '')[:200]}"
    return type(exc).__name__
