"""A PostgREST protocol stand-in over a real PostgreSQL, for tests.

PostgREST itself cannot run here, so the Supabase REST store is tested against this small server. It answers
the requests supabase-py 2.34.1 sends (see /work/shared/reference/postgrest.md) the way Supabase does: the
gateway's 401 and 414 answers, PostgREST's row cap and Content-Range rules, its error bodies and status
mapping, PATCH/RPC semantics, plus switches to inject faults. It is not PostgREST: no embedding, no JWT roles,
no RLS, no schema cache (DDL is visible at once).

Every identifier comes from the database catalog and is composed with ``psycopg.sql.Identifier``; every value
from the request is a bound parameter.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql

__all__ = ["PostgrestStandin", "RequestRecord"]

JSON_TYPE = "application/json; charset=utf-8"
_RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns", "apikey"}
_COMPARE = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE", "ilike": "ILIKE"}
_IS = {"null": "IS NULL", "not_null": "IS NOT NULL", "true": "IS TRUE", "false": "IS FALSE", "unknown": "IS UNKNOWN"}
_SRC = sql.Identifier("_pgrst_src")

_INVALID_KEY = {
    "message": "Invalid API key",
    "hint": "Double check your Supabase `anon` or `service_role` API key.",
}
_NO_KEY = {
    "message": "No API key found in request",
    "hint": "No `apikey` request header or url param was found.",
}


@dataclass(frozen=True)
class RequestRecord:
    """One request as the stand-in saw it.

    ``path`` is decoded and without the query; ``query`` is the raw query string; ``target_bytes`` is the
    length of the request target (path + query), which ``max_url_bytes`` limits; ``retry`` is the client's
    ``X-Retry-Count``; ``params`` are the decoded query pairs; ``status`` is None when the connection was
    dropped (``dropped``).
    """

    method: str
    path: str
    query: str
    query_bytes: int
    target_bytes: int
    status: int | None
    retry: int
    prefer: str | None
    body: bytes
    params: tuple[tuple[str, str], ...]
    dropped: bool = False


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


class _HttpError(Exception):
    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Reply(status, body, JSON_TYPE, dict(headers or {}))


def _pgrst_error(
    status: int, code: str, message: str, details: str | None = None, hint: str | None = None
) -> _HttpError:
    payload = {"code": code, "message": message, "details": details, "hint": hint}
    # PostgREST names the error in Proxy-Status so that clients can read it from body-less (HEAD) answers.
    return _HttpError(_json_reply(status, payload, {"Proxy-Status": f"PostgREST; error={code}"}))


def _parse_error(message: str, details: str | None = None) -> _HttpError:
    return _pgrst_error(400, "PGRST100", message, details)


# PostgREST's Error.hs ``mapSQLtoHTTP``, for requests made with the service key (42501 is 401 only for anon).
_STATUS_BY_SQLSTATE = {
    "23503": 409, "23505": 409, "25006": 405, "53400": 500, "57P01": 503,
    "P0001": 400, "42P01": 404, "42P17": 500, "42501": 403,
}  # fmt: skip
_STATUS_BY_CLASS = {
    "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500, "39": 500,
    "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
    "P0": 500, "XX": 500,
}  # fmt: skip


def pg_error_status(sqlstate: str, message: str) -> int:
    """The HTTP status PostgREST answers for a database error; unmapped SQLSTATEs are client errors (400)."""
    if sqlstate == "21000":
        # pg-safeupdate's refusal is a client error; other cardinality violations are server errors.
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if sqlstate in _STATUS_BY_SQLSTATE:
        return _STATUS_BY_SQLSTATE[sqlstate]
    return _STATUS_BY_CLASS.get(sqlstate[:2], 400)


# --------------------------------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class _Column:
    name: str
    type_ref: sql.Composable


@dataclass(frozen=True)
class _Table:
    oid: int
    schema: str
    name: str
    columns: dict[str, _Column]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class _Arg:
    name: str
    type_ref: sql.Composable
    variadic: bool


@dataclass(frozen=True)
class _Function:
    schema: str
    name: str
    volatile: bool
    returns_set: bool
    inputs: tuple[_Arg, ...]
    n_defaults: int
    returns_void: bool
    return_type: sql.Composable
    result_columns: dict[str, _Column] | None  # None: a scalar result
    row_type: bool  # False: in FROM, the single result column needs a name

    @property
    def single_column(self) -> str:
        return next(iter(self.result_columns)) if self.result_columns else self.name

    @property
    def required(self) -> set[str]:
        return {a.name for a in self.inputs[: len(self.inputs) - self.n_defaults]}


def _type_ref(nspname: str, typname: str) -> sql.Composable:
    # The catalog's own names (e.g. "pg_catalog"."int8", "pg_catalog"."_text") are valid cast targets.
    return sql.Identifier(nspname, typname)


_TABLE_SQL = """
SELECT c.oid, a.attname, tn.nspname, t.typname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
ORDER BY a.attnum
"""

_PKEY_SQL = """
SELECT a.attname
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""

_FUNC_SQL = """
SELECT p.provolatile, p.proretset, p.pronargdefaults, p.proargnames, p.proargmodes::text[],
       p.proargtypes::oid[], p.proallargtypes, rt.typtype, rt.typname, rtn.nspname, rt.typrelid
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype
JOIN pg_catalog.pg_namespace rtn ON rtn.oid = rt.typnamespace
WHERE n.nspname = %s AND p.proname = %s AND p.prokind = 'f'
ORDER BY p.oid
"""

_TYPES_SQL = """
SELECT t.oid, n.nspname, t.typname
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY(%s::oid[])
"""

_COMPOSITE_SQL = """
SELECT a.attname, tn.nspname, t.typname
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def _load_table(conn: psycopg.Connection, schema: str, name: str) -> _Table:
    rows = conn.execute(_TABLE_SQL, [schema, name]).fetchall()
    if not rows:
        raise _pgrst_error(404, "PGRST205", f"Could not find the table '{schema}.{name}' in the schema cache")
    columns = {r[1]: _Column(r[1], _type_ref(r[2], r[3])) for r in rows if r[1] is not None}
    return _Table(rows[0][0], schema, name, columns)


def _primary_key(conn: psycopg.Connection, table: _Table) -> list[str]:
    return [r[0] for r in conn.execute(_PKEY_SQL, [table.oid]).fetchall()]


def _load_functions(conn: psycopg.Connection, schema: str, name: str) -> list[_Function]:
    rows = conn.execute(_FUNC_SQL, [schema, name]).fetchall()
    oids: set[int] = set()
    for r in rows:
        oids.update(r[5] or [])
        oids.update(r[6] or [])
    types = {r[0]: _type_ref(r[1], r[2]) for r in conn.execute(_TYPES_SQL, [sorted(oids)]).fetchall()}
    out = []
    for (
        volatility,
        retset,
        n_defaults,
        argnames,
        argmodes,
        intypes,
        alltypes,
        typtype,
        typname,
        typnsp,
        typrelid,
    ) in rows:
        intypes = list(intypes or [])
        alltypes = list(alltypes or intypes)
        modes = list(argmodes or ["i"] * len(alltypes))
        names = list(argnames or [])
        names += [""] * (len(alltypes) - len(names))
        inputs = tuple(
            _Arg(names[i], types[alltypes[i]], modes[i] == "v") for i in range(len(alltypes)) if modes[i] in "ibv"
        )
        outputs = [(names[i], alltypes[i]) for i in range(len(alltypes)) if modes[i] in "obt"]
        void = typnsp == "pg_catalog" and typname == "void"
        # Like PostgREST (since v8): named OUT/INOUT/TABLE columns or a composite type give objects, even for a
        # single column; anything else is a scalar.
        result_columns: dict[str, _Column] | None = None
        if outputs:
            result_columns = {n: _Column(n, types[t]) for n, t in outputs}
        elif typtype == "c":
            result_columns = {
                r[0]: _Column(r[0], _type_ref(r[1], r[2])) for r in conn.execute(_COMPOSITE_SQL, [typrelid]).fetchall()
            }
        row_type = typtype == "c" or typname == "record"
        out.append(
            _Function(
                schema,
                name,
                volatility == "v",
                retset,
                inputs,
                n_defaults,
                void,
                _type_ref(typnsp, typname),
                result_columns,
                row_type,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# Query-string grammar


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside double quotes and parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == sep:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _parse_list(value: str) -> list[str]:
    """PostgREST's ``(a,"b,c")`` list: elements double-quoted with backslash escapes when they need it."""
    if len(value) < 2 or value[0] != "(" or value[-1] != ")":
        raise _parse_error(f"failed to parse filter (in.{value})", f'unexpected "{value[:1]}" expecting "("')
    inner = value[1:-1]
    if inner == "":
        return []
    return [_unquote(part) for part in _split_top(inner)]


def _split_names(text: str) -> list[str]:
    return [_unquote(p.strip()) for p in _split_top(text) if p.strip()]


def _parse_prefer(headers: Mapping[str, str]) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for item in headers.get("prefer", "").split(","):
        key, _, value = item.strip().partition("=")
        if key:
            prefs[key] = value
    return prefs


class _Params:
    """Bound parameters, collected under generated names while SQL is composed."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


@dataclass
class _Source:
    """A row source for reads: a table, or a set-returning function evaluated once into a CTE."""

    label: str
    columns: dict[str, _Column]
    from_clause: sql.Composable
    cte: sql.Composable | None = None
    scalar: str | None = None

    def col(self, name: str) -> _Column:
        column = self.columns.get(name)
        if column is None:
            raise _pgrst_error(400, "42703", f"column {self.label}.{name} does not exist")
        return column

    def ref(self, name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(_SRC, sql.Identifier(self.col(name).name))


def _condition(source: _Source, params: _Params, column: str, expr: str, *, in_logic: bool) -> sql.Composable:
    negate = expr.startswith("not.")
    if negate:
        expr = expr[4:]
    op, dot, value = expr.partition(".")
    if not dot or op not in {*_COMPARE, "is", "in"}:
        raise _parse_error(f"failed to parse filter ({expr})", f'unexpected "{expr[:1]}" expecting an operator')
    ref = source.ref(column)
    col = source.col(column)
    if op == "is":
        keyword = _IS.get(value.lower())
        if keyword is None:
            raise _parse_error(f"failed to parse filter (is.{value})", "expecting null, not_null, true, false, unknown")
        cond: sql.Composable = sql.SQL("{} " + keyword).format(ref)
    elif op == "in":
        items = _parse_list(value)
        if items:
            placeholders = [sql.SQL("{}::{}").format(params.add(item), col.type_ref) for item in items]
            cond = sql.SQL("{} IN ({})").format(ref, sql.SQL(", ").join(placeholders))
        else:
            cond = sql.SQL("false")
    else:
        if in_logic:
            value = _unquote(value)
        if op in ("like", "ilike"):
            cond = sql.SQL("{}::text " + _COMPARE[op] + " {}").format(ref, params.add(value.replace("*", "%")))
        else:
            cond = sql.SQL("{} " + _COMPARE[op] + " {}::{}").format(ref, params.add(value), col.type_ref)
    return sql.SQL("NOT ({})").format(cond) if negate else cond


def _logic(source: _Source, params: _Params, name: str, value: str) -> sql.Composable:
    """``or=(a.eq.1,and(b.gt.2,c.is.null))`` and friends."""
    negate = name.startswith("not.")
    joiner = name[4:] if negate else name
    if len(value) < 2 or value[0] != "(" or value[-1] != ")":
        raise _parse_error(f"failed to parse logic tree ({value})", f'unexpected "{value[:1]}" expecting "("')
    parts = []
    for term in _split_top(value[1:-1]):
        match = re.fullmatch(r"(not\.)?(and|or)(\(.*\))", term, flags=re.DOTALL)
        if match:
            parts.append(_logic(source, params, (match[1] or "") + match[2], match[3]))
            continue
        column, dot, expr = term.partition(".")
        if not dot:
            raise _parse_error(f"failed to parse logic tree ({value})", f'unexpected "{term}"')
        parts.append(_condition(source, params, _unquote(column), expr, in_logic=True))
    joined = sql.SQL(" AND " if joiner == "and" else " OR ").join(parts) if parts else sql.SQL("true")
    out = sql.SQL("({})").format(joined)
    return sql.SQL("NOT {}").format(out) if negate else out


def _where(source: _Source, params: _Params, query: list[tuple[str, str]], reserved: set[str]) -> list[sql.Composable]:
    conds: list[sql.Composable] = []
    for key, value in query:
        if key in reserved:
            continue
        if key in ("or", "and", "not.or", "not.and"):
            conds.append(_logic(source, params, key, value))
        else:
            conds.append(_condition(source, params, key, value, in_logic=False))
    return conds


def _where_sql(conds: list[sql.Composable]) -> sql.Composable:
    if not conds:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds)


def _select_items(source: _Source, select: str | None) -> sql.Composable:
    if source.scalar is not None:
        return source.ref(source.scalar)
    items: list[sql.Composable] = []
    for raw in _split_top(select or "*"):
        item = raw.strip()
        if item == "*" or item == "":
            items.extend(source.ref(name) for name in source.columns)
            continue
        if "(" in item:
            raise _parse_error("embedded resources are not supported by the stand-in", item)
        alias, colon, column = item.partition(":")
        if not colon:
            alias, column = "", item
        if "::" in column or "->" in column:
            raise _parse_error("casts and JSON paths in select are not supported by the stand-in", item)
        ref = source.ref(_unquote(column))
        items.append(sql.SQL("{} AS {}").format(ref, sql.Identifier(_unquote(alias))) if alias else ref)
    return sql.SQL(", ").join(items)


def _order_sql(source: _Source, order: str | None) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms: list[sql.Composable] = []
    for raw in _split_top(order):
        column, *mods = raw.strip().split(".")
        text = ""
        for mod in mods:
            if mod in ("asc", "desc"):
                text += " " + mod.upper()
            elif mod in ("nullsfirst", "nullslast"):
                text += " NULLS " + mod[5:].upper()
            else:
                raise _parse_error(f"failed to parse order ({raw})", f'unexpected "{mod}"')
        terms.append(source.ref(_unquote(column)) + sql.SQL(text))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def _int_param(query: list[tuple[str, str]], name: str) -> int | None:
    values = [v for k, v in query if k == name]
    if not values:
        return None
    try:
        number = int(values[-1])
    except ValueError:
        raise _parse_error(f"failed to parse {name} parameter ({values[-1]})") from None
    if number < 0:
        if name == "limit":
            raise _pgrst_error(
                416, "PGRST103", "Requested range not satisfiable", "Limit should be greater than or equal to zero."
            )
        raise _parse_error(f"failed to parse {name} parameter ({values[-1]})")
    return number


def _content_range(offset: int, nrows: int, total: int | None) -> tuple[int, str]:
    """Status and Content-Range exactly as PostgREST's ``rangeStatusHeader``."""
    lower, upper = offset, offset + nrows - 1
    range_part = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    header = f"{range_part}/{'*' if total is None else total}"
    if total is None:
        return 200, header
    if lower > total:
        return 416, header
    if 1 + upper - lower < total:
        return 206, header
    return 200, header


def _last(query: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in query if k == name]
    return values[-1] if values else None


# --------------------------------------------------------------------------------------------------------------
# Connections


def _conninfo(dsn: str) -> str:
    # SQLAlchemy URLs name the driver ("postgresql+psycopg://"); libpq does not accept that.
    return re.sub(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://", r"\1://", dsn)


class _Pool:
    """A few idle connections reused across requests; each request holds one connection for its transaction."""

    def __init__(self, conninfo: str, size: int) -> None:
        self._conninfo = conninfo
        self._size = size
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            yield conn
        finally:
            reusable = not conn.closed and not conn.broken
            reusable = reusable and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with self._lock:
                if reusable and not self._closed and len(self._idle) < self._size:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# --------------------------------------------------------------------------------------------------------------
# The server


@dataclass
class _Fault:
    kind: str  # "fail" | "drop" | "cut"
    reply: _Reply | None = None


# What PostgREST itself answers when its database is unreachable or its pool is exhausted.
_PGRST_FAULTS = {
    503: ("PGRST001", "Database client error. Retrying the connection."),
    504: ("PGRST003", "Timed out acquiring connection from connection pool."),
}


def _fault_reply(status: int, body: Any, content_type: str | None, headers: Mapping[str, str] | None) -> _Reply:
    extra = dict(headers or {})
    if body is None and status in _PGRST_FAULTS:
        reply = _pgrst_error(status, *_PGRST_FAULTS[status]).reply
    elif body is None:
        # What an edge proxy (Cloudflare, Kong) answers: not PostgREST JSON.
        text = f"<html><head><title>{status}</title></head><body>error code: {status}</body></html>\n"
        reply = _Reply(status, text.encode(), "text/html; charset=UTF-8")
    elif isinstance(body, (dict, list)):
        reply = _json_reply(status, body)
    else:
        raw = body.encode() if isinstance(body, str) else bytes(body)
        reply = _Reply(status, raw, "text/plain; charset=utf-8")
    reply.headers.update(extra)
    if content_type:
        reply.content_type = content_type
    return reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog (5) drops concurrent connects, which then wait 1 s for a SYN retransmit.
    request_queue_size = 128
    standin: PostgrestStandin


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms per answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._connections_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._connections_closed(self.connection)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET
    do_PUT = do_GET
    do_OPTIONS = do_GET

    def _handle(self) -> None:
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        record = dict(
            method=self.command,
            path=unquote(split.path),
            query=split.query,
            query_bytes=len(split.query.encode()),
            target_bytes=len(self.path.encode()),
            retry=int(self.headers.get("X-Retry-Count") or 0),
            prefer=self.headers.get("Prefer"),
            body=body,
            params=tuple(parse_qsl(split.query, keep_blank_values=True)),
        )
        with standin._in_flight():
            latency = standin.latency
            if latency > 0:
                # Simulated network latency, paid by every request.
                time.sleep(latency)
            fault = standin._take_fault()
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                standin._record(RequestRecord(status=None, dropped=True, **record))
                return
            if fault is not None and fault.kind == "fail":
                assert fault.reply is not None
                reply = fault.reply
            else:
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = standin._answer(self.command, self.path, headers, body)
            if fault is not None and fault.kind == "cut":
                # The request ran (a write is committed) but the answer breaks off inside the headers.
                standin._record(RequestRecord(status=None, dropped=True, **record))
                self.close_connection = True
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(f"HTTP/1.1 {reply.status} OK\r\nContent-Type: application/json\r\n".encode())
                return
            # Recorded before answering: a client that has its answer must find the request in the log.
            standin._record(RequestRecord(status=reply.status, **record))
            try:
                self._write(reply)
            except ConnectionError:
                # The client gave up (its timeout) before the answer was ready.
                self.close_connection = True

    def _write(self, reply: _Reply) -> None:
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        self.send_response(reply.status, phrase)
        no_body = reply.status in (204, 304) or self.command == "HEAD"
        if reply.content_type and reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.status != 204:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(reply.body)


class PostgrestStandin:
    """Serve Supabase's REST API (``/rest/v1``) over the PostgreSQL at ``dsn`` on 127.0.0.1, a free port.

    Attributes tests may change while it runs: ``max_rows``, ``max_url_bytes``, ``latency`` (seconds slept
    per request), ``statement_timeout_ms``. Faults: :meth:`fail_next`, :meth:`drop_next`; :meth:`reset`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        api_key: str,
        max_rows: int = 1000,
        max_url_bytes: int = 8192,
        schema: str = "public",
        statement_timeout_ms: int | None = None,
        pool_size: int = 8,
    ) -> None:
        self.api_key = api_key
        self.max_rows = max_rows
        self.max_url_bytes = max_url_bytes
        self.schema = schema
        self.statement_timeout_ms = statement_timeout_ms
        self.latency = 0.0
        self.errors: list[str] = []  # tracebacks of unexpected exceptions inside the server
        self._pool = _Pool(_conninfo(dsn), pool_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._faults: list[_Fault] = []
        self._requests: list[RequestRecord] = []
        self._sockets: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> PostgrestStandin:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.standin = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="postgrest-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, wait: float = 5.0) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        # Let requests that are being answered finish, then cut idle keep-alive connections.
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=wait)
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=wait)
        self._pool.close()
        self._httpd = None

    def __enter__(self) -> PostgrestStandin:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The project URL to give ``create_client`` (``http://127.0.0.1:<port>``)."""
        if self._httpd is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def rest_url(self) -> str:
        return f"{self.url}/rest/v1"

    # ---- fault switches and records

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        body: Any = None,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` without touching the database.

        ``body`` None gives a plausible one: 503 PostgREST's ``PGRST001`` JSON, 504 ``PGRST003``, other
        statuses an edge proxy's HTML page. A dict/list is sent as JSON, str/bytes as text.
        """
        reply = _fault_reply(status, body, content_type, headers)
        with self._lock:
            self._faults.extend(_Fault("fail", reply) for _ in range(n))

    def drop_next(self, n: int = 1, *, after_executing: bool = False) -> None:
        """Close the connection of the next ``n`` requests without a complete response.

        By default the request is not executed. ``after_executing=True`` runs it first (a write commits) and
        breaks the answer off inside its headers: the client sees a network error for work that was done.
        """
        with self._lock:
            self._faults.extend(_Fault("cut" if after_executing else "drop") for _ in range(n))

    def reset(self) -> None:
        """Clear pending faults, latency and the request log."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self.errors.clear()
        self.latency = 0.0

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request answered (or dropped) so far, in completion order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _connections_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _connections_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    # ---- request handling

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        try:
            return self._route(method, target, headers, body)
        except _HttpError as err:
            return err.reply
        except psycopg.OperationalError as err:
            if err.sqlstate:
                return self._db_error(err)
            code = "PGRST001"
            return _pgrst_error(503, code, "Database client error. Retrying the connection.", str(err)).reply
        except psycopg.Error as err:
            return self._db_error(err)
        except Exception as err:
            with self._lock:
                self.errors.append(traceback.format_exc())
            return _pgrst_error(500, "PGRSTX00", f"stand-in internal error: {err!r}").reply

    @staticmethod
    def _db_error(err: psycopg.Error) -> _Reply:
        sqlstate = err.sqlstate or "XX000"
        message = err.diag.message_primary or str(err)
        status = pg_error_status(sqlstate, message)
        return _pgrst_error(status, sqlstate, message, err.diag.message_detail, err.diag.message_hint).reply

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        if len(target.encode()) > self.max_url_bytes:
            return _Reply(414, b"URI too long\n", "text/plain")
        split = urlsplit(target)
        path = unquote(split.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        if not path.startswith("/rest/v1/"):
            return _json_reply(404, {"message": "no Route matched with those values"})
        key = headers.get("apikey") or _last(query, "apikey")
        if not key:
            return _json_reply(401, _NO_KEY)
        bearer = headers.get("authorization")
        if key != self.api_key or (bearer is not None and bearer != f"Bearer {self.api_key}"):
            return _json_reply(401, _INVALID_KEY)
        profile = headers.get("accept-profile" if method in ("GET", "HEAD") else "content-profile")
        if profile is not None and profile != self.schema:
            raise _pgrst_error(
                406,
                "PGRST106",
                f"Invalid schema: {profile}",
                hint=f"Only the following schemas are exposed: {self.schema}",
            )
        name = path[len("/rest/v1/") :]
        if name.startswith("rpc/") and "/" not in name[4:] and name[4:]:
            if method not in ("GET", "HEAD", "POST"):
                raise _pgrst_error(405, "PGRST101", f"Cannot use the {method} method on RPC")
            return self._rpc(method, name[4:], query, headers, body)
        if not name or "/" in name:
            raise _pgrst_error(404, "PGRST125", "Invalid path specified in request URL")
        if method in ("GET", "HEAD"):
            return self._read_table(name, query, headers)
        if method == "PATCH":
            return self._update(name, query, headers, body)
        if method == "POST":
            return self._insert(name, query, headers, body)
        if method == "DELETE":
            return self._delete(name, query, headers)
        raise _pgrst_error(405, "PGRST117", f"Unsupported HTTP method: {method}")

    @contextlib.contextmanager
    def _transaction(self, *, read_only: bool) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn, conn.transaction():
            if read_only:
                conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            conn.execute("SELECT set_config('search_path', format('%%I, public', %s::text), true)", [self.schema])
            if self.statement_timeout_ms is not None:
                conn.execute("SELECT set_config('statement_timeout', %s, true)", [str(self.statement_timeout_ms)])
            yield conn

    # ---- reads

    def _read(
        self,
        conn: psycopg.Connection,
        source: _Source,
        params: _Params,
        query: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> _Reply:
        prefer = _parse_prefer(headers)
        want_count = prefer.get("count") in ("exact", "planned", "estimated")
        limit = _int_param(query, "limit")
        offset = _int_param(query, "offset") or 0
        limit = self.max_rows if limit is None else min(limit, self.max_rows)
        where = _where_sql(_where(source, params, query, _RESERVED))
        items = _select_items(source, _last(query, "select"))
        order = _order_sql(source, _last(query, "order"))
        agg = (
            sql.SQL("json_agg(_pgrst_t.{})").format(sql.Identifier("v"))
            if source.scalar
            else sql.SQL("json_agg(_pgrst_t)")
        )
        if source.scalar:
            items = items + sql.SQL(" AS v")
        total = (
            sql.SQL("(SELECT count(*) FROM {}{})").format(source.from_clause, where)
            if want_count
            else sql.SQL("NULL::bigint")
        )
        stmt = sql.SQL(
            "{cte}SELECT {total}, coalesce({agg}, '[]')::text, count(*) "
            "FROM (SELECT {items} FROM {src}{where}{order} LIMIT {limit} OFFSET {offset}) AS _pgrst_t"
        ).format(
            cte=source.cte or sql.SQL(""),
            total=total,
            agg=agg,
            items=items,
            src=source.from_clause,
            where=where,
            order=order,
            limit=params.add(limit),
            offset=params.add(offset),
        )
        row = conn.execute(stmt, params.values).fetchone()
        assert row is not None
        counted, body, nrows = row
        status, content_range = _content_range(offset, nrows, counted)
        if status == 416:
            error = _pgrst_error(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {offset} was requested, but there are only {counted} rows.",
            )
            error.reply.headers["Content-Range"] = content_range
            raise error
        reply = _Reply(status, body.encode(), JSON_TYPE, {"Content-Range": content_range})
        return self._singular(reply, headers, nrows)

    @staticmethod
    def _singular(reply: _Reply, headers: dict[str, str], nrows: int) -> _Reply:
        if not headers.get("accept", "").startswith("application/vnd.pgrst.object+json"):
            return reply
        if nrows != 1:
            raise _pgrst_error(
                406, "PGRST116", "Cannot coerce the result to a single JSON object", f"The result contains {nrows} rows"
            )
        reply.body = json.dumps(json.loads(reply.body)[0], separators=(",", ":")).encode()
        reply.status = 200
        return reply

    def _table_source(self, table: _Table) -> _Source:
        return _Source(table.name, table.columns, sql.SQL("{} AS {}").format(table.ident, _SRC))

    def _read_table(self, name: str, query: list[tuple[str, str]], headers: dict[str, str]) -> _Reply:
        with self._transaction(read_only=True) as conn:
            table = _load_table(conn, self.schema, name)
            return self._read(conn, self._table_source(table), _Params(), query, headers)

    # ---- writes

    def _write_result(
        self,
        conn: psycopg.Connection,
        write: sql.Composable,
        params: _Params,
        table: _Table,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        *,
        created: bool,
    ) -> _Reply:
        source = _Source(table.name, table.columns, sql.SQL("_pgrst_w AS {}").format(_SRC))
        items = _select_items(source, _last(query, "select"))
        stmt = sql.SQL(
            "WITH _pgrst_w AS ({write}) SELECT coalesce(json_agg(_pgrst_t), '[]')::text, count(*) "
            "FROM (SELECT {items} FROM {src}) AS _pgrst_t"
        ).format(write=write, items=items, src=source.from_clause)
        row = conn.execute(stmt, params.values).fetchone()
        assert row is not None
        body, nrows = row
        prefer = _parse_prefer(headers)
        total = str(nrows) if prefer.get("count") == "exact" else "*"
        content_range = f"0-{nrows - 1}/{total}" if nrows else f"*/{total}"
        if created:
            content_range = f"*/{total}"
        representation = prefer.get("return") == "representation"
        if not representation:
            return _Reply(201 if created else 204, b"", None, {"Content-Range": content_range})
        reply = _Reply(201 if created else 200, body.encode(), JSON_TYPE, {"Content-Range": content_range})
        return self._singular(reply, headers, nrows)

    @staticmethod
    def _json_body(body: bytes) -> Any:
        try:
            return json.loads(body) if body.strip() else None
        except ValueError:
            raise _pgrst_error(400, "PGRST102", "Empty or invalid json") from None

    @staticmethod
    def _check_columns(table: _Table, names: list[str]) -> None:
        for name in names:
            if name not in table.columns:
                raise _pgrst_error(
                    400, "PGRST204", f"Could not find the '{name}' column of '{table.name}' in the schema cache"
                )

    def _update(self, name: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes) -> _Reply:
        payload = self._json_body(body)
        if not isinstance(payload, dict):
            raise _pgrst_error(400, "PGRST102", "Empty or invalid json")
        with self._transaction(read_only=False) as conn:
            table = _load_table(conn, self.schema, name)
            self._check_columns(table, list(payload))
            params = _Params()
            source = _Source(table.name, table.columns, sql.SQL(""))
            conds = _where(source, params, query, _RESERVED)
            if not conds:
                # Supabase runs pg-safeupdate: an UPDATE without WHERE is refused by the database.
                raise _pgrst_error(400, "21000", "UPDATE requires a WHERE clause")
            if not payload:
                write = sql.SQL("SELECT {src}.* FROM {table} AS {src}{where}").format(
                    src=_SRC, table=table.ident, where=_where_sql(conds)
                )
            else:
                cols = [sql.Identifier(c) for c in payload]
                write = sql.SQL(
                    "UPDATE {table} AS {src} SET ({cols}) = (SELECT {bcols} FROM "
                    "json_populate_record(NULL::{table}, {body}::json) AS _pgrst_b){where} RETURNING {src}.*"
                ).format(
                    table=table.ident,
                    src=_SRC,
                    cols=sql.SQL(", ").join(cols),
                    bcols=sql.SQL(", ").join(sql.SQL("_pgrst_b.{}").format(c) for c in cols),
                    body=params.add(json.dumps(payload)),
                    where=_where_sql(conds),
                )
            return self._write_result(conn, write, params, table, query, headers, created=False)

    def _delete(self, name: str, query: list[tuple[str, str]], headers: dict[str, str]) -> _Reply:
        with self._transaction(read_only=False) as conn:
            table = _load_table(conn, self.schema, name)
            params = _Params()
            source = _Source(table.name, table.columns, sql.SQL(""))
            conds = _where(source, params, query, _RESERVED)
            if not conds:
                raise _pgrst_error(400, "21000", "DELETE requires a WHERE clause")
            write = sql.SQL("DELETE FROM {table} AS {src}{where} RETURNING {src}.*").format(
                table=table.ident, src=_SRC, where=_where_sql(conds)
            )
            return self._write_result(conn, write, params, table, query, headers, created=False)

    def _insert(self, name: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes) -> _Reply:
        payload = self._json_body(body)
        rows = [payload] if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise _pgrst_error(400, "PGRST102", "Empty or invalid json")
        prefer = _parse_prefer(headers)
        columns_param = _last(query, "columns")
        if columns_param is not None:
            names = _split_names(columns_param)
        else:
            names = list(rows[0]) if rows else []
            if any(set(r) != set(names) for r in rows):
                raise _pgrst_error(400, "PGRST102", "All object keys must match")
        with self._transaction(read_only=False) as conn:
            table = _load_table(conn, self.schema, name)
            self._check_columns(table, names)
            params = _Params()
            cols = [sql.Identifier(c) for c in names]
            conflict = sql.SQL("")
            resolution = prefer.get("resolution")
            if resolution in ("merge-duplicates", "ignore-duplicates"):
                on_conflict = _last(query, "on_conflict")
                keys = _split_names(on_conflict) if on_conflict else _primary_key(conn, table)
                self._check_columns(table, keys)
                if keys:
                    target = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
                    if resolution == "ignore-duplicates" or not cols:
                        conflict = sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
                    else:
                        sets = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(c) for c in cols)
                        conflict = sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(target, sets)
            if cols:
                write = sql.SQL(
                    "INSERT INTO {table} AS {src} ({cols}) SELECT {bcols} FROM "
                    "json_populate_recordset(NULL::{table}, {body}::json) AS _pgrst_b{conflict} RETURNING {src}.*"
                ).format(
                    table=table.ident,
                    src=_SRC,
                    cols=sql.SQL(", ").join(cols),
                    bcols=sql.SQL(", ").join(sql.SQL("_pgrst_b.{}").format(c) for c in cols),
                    body=params.add(json.dumps(rows)),
                    conflict=conflict,
                )
            else:
                write = sql.SQL("INSERT INTO {table} AS {src} DEFAULT VALUES RETURNING {src}.*").format(
                    table=table.ident, src=_SRC
                )
            return self._write_result(conn, write, params, table, query, headers, created=True)

    # ---- RPC

    def _rpc(self, method: str, fn: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes) -> _Reply:
        read_only_method = method in ("GET", "HEAD")
        with self._pool.connection() as conn:
            functions = _load_functions(conn, self.schema, fn)
        if read_only_method:
            arg_names = {a.name for f in functions for a in f.inputs}
            args: dict[str, Any] = {k: v for k, v in query if k in arg_names}
            query = [(k, v) for k, v in query if k not in arg_names]
        else:
            payload = self._json_body(body)
            args = {} if payload is None else payload
            if not isinstance(args, dict):
                raise _pgrst_error(400, "PGRST102", "Empty or invalid json")
        keys = set(args)
        chosen = [f for f in functions if keys <= {a.name for a in f.inputs} and f.required <= keys]
        if not chosen:
            raise self._no_function(fn, sorted(keys), functions)
        func = min(chosen, key=lambda f: len(f.inputs))
        params = _Params()
        passed = [a for a in func.inputs if a.name in keys]
        fn_ident = sql.Identifier(func.schema, func.name)
        # POST arguments go through json_to_record, which converts JSON values the way PostgREST does (arrays →
        # arrays, objects → json/jsonb); GET arguments are query-string text, cast to the declared types.
        json_args = bool(passed) and not read_only_method

        def value(arg: _Arg) -> sql.Composable:
            if json_args:
                return sql.SQL("_pgrst_args.{}").format(sql.Identifier(arg.name))
            return sql.SQL("{}::{}").format(params.add(args[arg.name]), arg.type_ref)

        call_args = sql.SQL(", ").join(
            sql.SQL("{}{} => {}").format(
                sql.SQL("VARIADIC ") if a.variadic else sql.SQL(""), sql.Identifier(a.name), value(a)
            )
            for a in passed
        )
        call = sql.SQL("{}({})").format(fn_ident, call_args)
        args_item = args_from = sql.SQL("")
        if json_args:
            definition = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(a.name), a.type_ref) for a in passed)
            args_item = sql.SQL("json_to_record({}::json) AS _pgrst_args({})").format(
                params.add(json.dumps(args)), definition
            )
            args_from = sql.SQL(" FROM ") + args_item
        with self._transaction(read_only=read_only_method or not func.volatile) as conn:
            if func.returns_set or func.result_columns is not None:
                # In FROM (LATERAL after the arguments) the function runs once, whatever its result's width.
                alias: sql.Composable = _SRC
                if not func.row_type:
                    alias = sql.SQL("{}({})").format(_SRC, sql.Identifier(func.single_column))
                if json_args:
                    from_call = sql.SQL("{} CROSS JOIN LATERAL {} AS {}").format(args_item, call, alias)
                else:
                    from_call = sql.SQL("{} AS {}").format(call, alias)
            if func.returns_set:
                columns = func.result_columns or {func.name: _Column(func.name, func.return_type)}
                source = _Source(
                    func.name,
                    columns,
                    sql.SQL("_pgrst_base AS {}").format(_SRC),
                    cte=sql.SQL("WITH _pgrst_base AS MATERIALIZED (SELECT {}.* FROM {}) ").format(_SRC, from_call),
                    scalar=None if func.result_columns is not None else func.name,
                )
                return self._read(conn, source, params, query, headers)
            if func.returns_void:
                conn.execute(sql.SQL("SELECT {}{}").format(call, args_from), params.values)
                return _Reply(204, b"", None)
            if func.result_columns is not None:
                stmt = sql.SQL("SELECT to_json(_pgrst_t)::text FROM (SELECT {}.* FROM {}) AS _pgrst_t").format(
                    _SRC, from_call
                )
            else:
                stmt = sql.SQL("SELECT to_json({})::text{}").format(call, args_from)
            row = conn.execute(stmt, params.values).fetchone()
            text = "null" if row is None or row[0] is None else row[0]
            return _Reply(200, text.encode(), JSON_TYPE, {"Content-Range": "0-0/*"})

    def _no_function(self, fn: str, keys: list[str], functions: list[_Function]) -> _HttpError:
        qualified = f"{self.schema}.{fn}"
        listed = ", ".join(keys)
        message = f"Could not find the function {qualified}" + (f"({listed})" if keys else " without parameters")
        message += " in the schema cache"
        params_text = (" with parameter" + ("s " if len(keys) > 1 else " ") + listed) if keys else " without parameters"
        details = (
            f"Searched for the function {qualified}{params_text} or with a single unnamed json/jsonb parameter, "
            "but no matches were found in the schema cache."
        )
        hint = None
        if functions:
            names = ", ".join(sorted(a.name for a in functions[0].inputs))
            hint = f"Perhaps you meant to call the function {qualified}({names})"
        return _pgrst_error(404, "PGRST202", message, details, hint)
