"""The PostgREST stand-in, checked against /work/shared/reference/postgrest.md with the real supabase client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from postgrest._sync import request_builder
from postgrest.exceptions import APIError
from psycopg import sql
from sqlalchemy.engine import make_url
from supabase import ClientOptions, create_client

from tests.postgrest_standin import PostgrestStandin, pg_error_status

KEY = "sb_secret_standin-test-key-0123456789abcdef"
EVENTS = 1500
USERS = 42
ODD_IDS = ["a,b", 'say "hi"', "(paren)", "back\\slash", "colon:x", "plain", "sp ace", "ünï"]
DEVICE = uuid.UUID("6f1c1a52-63a4-4e0e-9d57-0a4ff1a5a6b1")

SCHEMA = r"""
CREATE TABLE users (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    lead_score double precision,
    scored_at timestamptz,
    model_version text
);
INSERT INTO users (id, email) SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 42) g;

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    user_id bigint,
    created_at timestamptz NOT NULL,
    kind text
);
INSERT INTO events (user_id, created_at, kind)
SELECT g % 42 + 1, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'view' END
FROM generate_series(1, 1500) g;

CREATE TABLE accounts (id text PRIMARY KEY, label text);
CREATE TABLE devices (id uuid PRIMARY KEY, name text, seen_at timestamptz);
CREATE TABLE scores (user_id bigint PRIMARY KEY, score double precision, model text);

CREATE FUNCTION add_ints(a integer, b integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE FUNCTION add_default(a integer, b integer DEFAULT 10) RETURNS integer LANGUAGE sql IMMUTABLE
    AS 'SELECT a + b';
CREATE FUNCTION all_events() RETURNS SETOF events LANGUAGE sql STABLE AS 'SELECT * FROM events ORDER BY id';
CREATE FUNCTION event_ids(p_user bigint) RETURNS SETOF bigint LANGUAGE sql STABLE
    AS 'SELECT id FROM events WHERE user_id = p_user ORDER BY id';
CREATE FUNCTION users_above(p_min double precision) RETURNS TABLE (id bigint, email text) LANGUAGE sql STABLE
    AS 'SELECT u.id, u.email FROM users u WHERE u.lead_score >= p_min ORDER BY u.id';
CREATE FUNCTION one_column(p_max bigint) RETURNS TABLE (user_id bigint) LANGUAGE sql STABLE
    AS 'SELECT id FROM users WHERE id <= p_max ORDER BY id';
CREATE FUNCTION plus_one(n integer, OUT next_n integer) LANGUAGE sql IMMUTABLE AS 'SELECT n + 1';
CREATE FUNCTION set_scores(p_ids bigint[], p_scores double precision[], p_model text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    UPDATE users u SET lead_score = s.score, model_version = p_model, scored_at = now()
    FROM unnest(p_ids, p_scores) AS s(id, score) WHERE u.id = s.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
CREATE FUNCTION clear_score(p_id bigint) RETURNS void LANGUAGE sql
    AS 'UPDATE users SET lead_score = NULL WHERE id = p_id';
CREATE FUNCTION plpgsql_stable_write() RETURNS integer LANGUAGE plpgsql STABLE AS $$
BEGIN
    UPDATE users SET lead_score = 0 WHERE id = 1;
    RETURN 1;
END $$;
CREATE FUNCTION stable_calls_writer() RETURNS integer LANGUAGE sql STABLE
    AS 'SELECT set_scores(ARRAY[1]::bigint[], ARRAY[0.5]::float8[], ''sneaky'')';
CREATE FUNCTION echo_doc(doc jsonb, tags text[]) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS 'SELECT doc || jsonb_build_object(''tags'', to_jsonb(tags))';
CREATE FUNCTION raise_sqlstate(code text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = 'raised ' || code, DETAIL = 'some detail', HINT = 'some hint';
END $$;
CREATE FUNCTION nap(seconds double precision) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(seconds)';
"""


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def dsn(pg_server_url: str) -> Iterator[str]:
    """One database for the module: a fresh one per test would cost more than the tests. Tests undo their writes."""
    server = make_url(pg_server_url).set(drivername="postgresql+psycopg")
    admin = _conninfo(server.render_as_string(hide_password=False))
    name = f"t_standin_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute(SCHEMA)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO accounts (id, label) VALUES (%s, %s)", [(i, f"label {i}") for i in ODD_IDS])
            cur.execute("INSERT INTO devices VALUES (%s, 'phone', '2024-05-01T12:00:00+02:00')", [DEVICE])
            cur.execute("INSERT INTO devices VALUES (gen_random_uuid(), 'laptop', '2024-06-01T00:00:00Z')")
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def shared_rest(dsn: str) -> Iterator[PostgrestStandin]:
    with PostgrestStandin(dsn, api_key=KEY) as standin:
        yield standin


@pytest.fixture
def rest(shared_rest: PostgrestStandin, dsn: str) -> Iterator[PostgrestStandin]:
    shared_rest.reset()
    yield shared_rest
    assert shared_rest.errors == []
    with psycopg.connect(_conninfo(dsn), autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET lead_score = NULL, model_version = NULL, scored_at = NULL "
            "WHERE (lead_score, model_version, scored_at) IS DISTINCT FROM (NULL, NULL, NULL)"
        )
        conn.execute("TRUNCATE scores")


@pytest.fixture
def client(rest: PostgrestStandin):
    return create_client(rest.url, KEY)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The client's GET retries wait 1, 2, 4 s; record the waits instead of paying them."""
    waits: list[int] = []

    def delay(attempt: int) -> int:
        waits.append(min(2**attempt, 30))
        return 0

    monkeypatch.setattr(request_builder, "get_retry_delay", delay)
    return waits


def _http(rest: PostgrestStandin) -> httpx.Client:
    return httpx.Client(base_url=rest.rest_url, headers={"apikey": KEY, "Authorization": f"Bearer {KEY}"})


def _fetch(dsn: str, query: str, *args: object) -> list[tuple]:
    with psycopg.connect(_conninfo(dsn)) as conn:
        return conn.execute(query, args).fetchall()


# ---- the client's own behaviour


def test_create_client_accepts_any_non_empty_key(rest: PostgrestStandin) -> None:
    from supabase import SupabaseException

    for key in (KEY, "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.sig"):
        create_client(rest.url, key)
    with pytest.raises(SupabaseException):
        create_client(rest.url, "")
    with pytest.raises(SupabaseException):
        create_client("127.0.0.1:1234", KEY)


def test_plain_number_timeout_is_truncated(rest: PostgrestStandin) -> None:
    client = create_client(rest.url, KEY, ClientOptions(postgrest_client_timeout=2.5))
    assert client.postgrest.timeout == 2
    client = create_client(rest.url, KEY, ClientOptions(postgrest_client_timeout=httpx.Timeout(2.5)))
    assert client.postgrest.timeout == httpx.Timeout(2.5)


# ---- row cap and Content-Range


def test_row_cap_is_silent_without_count(rest: PostgrestStandin, client) -> None:
    res = client.table("events").select("id").limit(5000).execute()
    assert len(res.data) == 1000
    assert res.count is None
    assert rest.requests[-1].status == 200
    with _http(rest) as http:
        r = http.get("/events", params={"select": "id", "limit": "5000"})
    assert (r.status_code, r.headers["content-range"]) == (200, "0-999/*")
    assert len(r.json()) == 1000


def test_row_cap_with_exact_count_is_206_with_real_total(rest: PostgrestStandin, client) -> None:
    res = client.table("events").select("id", count="exact").execute()
    assert (len(res.data), res.count) == (1000, EVENTS)
    assert rest.requests[-1].status == 206
    with _http(rest) as http:
        r = http.get("/events", params={"select": "id"}, headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["content-range"]) == (206, f"0-999/{EVENTS}")


def test_count_when_everything_fits_and_when_nothing_matches(rest: PostgrestStandin, client) -> None:
    res = client.table("users").select("*", count="exact").execute()
    assert (len(res.data), res.count) == (USERS, USERS)
    assert rest.requests[-1].status == 200
    res = client.table("users").select("id", count="exact").gt("id", 1000).execute()
    assert (res.data, res.count) == ([], 0)
    with _http(rest) as http:
        r = http.get("/users", params={"select": "id"}, headers={"Prefer": "count=exact"})
        assert (r.status_code, r.headers["content-range"]) == (200, f"0-41/{USERS}")
        r = http.get("/users", params={"id": "gt.1000"}, headers={"Prefer": "count=exact"})
        assert (r.status_code, r.headers["content-range"], r.json()) == (200, "*/0", [])
        r = http.get("/users", params={"id": "gt.1000"})
        assert r.headers["content-range"] == "*/*"
        r = http.get("/users", params={"offset": "40", "limit": "10"}, headers={"Prefer": "count=exact"})
        assert (r.status_code, r.headers["content-range"]) == (206, f"40-41/{USERS}")


def test_head_with_count(rest: PostgrestStandin, client) -> None:
    res = client.table("events").select("*", count="exact", head=True).execute()
    assert res.count == EVENTS
    assert rest.requests[-1].method == "HEAD"


def test_offset_beyond_total_is_416(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.table("users").select("id", count="exact").range(50, 59).execute()
    assert err.value.code == "PGRST103"
    assert err.value.details == f"An offset of 50 was requested, but there are only {USERS} rows."
    assert rest.requests[-1].status == 416
    # Without a count the server cannot know: an empty page.
    assert client.table("users").select("id").range(50, 59).execute().data == []


def test_row_cap_is_configurable_on_the_conftest_database(pg_url: str) -> None:
    # pg_url is the project's fixture (SQLAlchemy form, unix socket): the stand-in takes it as it is.
    with psycopg.connect(_conninfo(pg_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 25)")
    with PostgrestStandin(pg_url, api_key=KEY, max_rows=10) as rest:
        res = create_client(rest.url, KEY).table("t").select("id", count="exact").order("id").execute()
        assert (len(res.data), res.count) == (10, 25)
        assert rest.requests[-1].status == 206


# ---- URL length and keys


def test_url_past_the_limit_is_414_text(rest: PostgrestStandin, client) -> None:
    ids = list(range(1, 3000))
    with pytest.raises(APIError) as err:
        client.table("users").select("id").in_("id", ids).execute()
    assert (err.value.code, err.value.details) == ("414", "URI too long\n")
    record = rest.requests[-1]
    assert record.status == 414 and record.target_bytes > 8192
    with _http(rest) as http:
        r = http.get("/users", params={"id": "in.(" + ",".join(map(str, ids)) + ")"})
    assert (r.status_code, r.text, r.headers["content-type"]) == (414, "URI too long\n", "text/plain")


def test_url_just_under_the_limit_passes(dsn: str) -> None:
    with PostgrestStandin(dsn, api_key=KEY, max_url_bytes=300) as rest, _http(rest) as http:
        base = "/rest/v1/users?select=id&id=in.("
        ids = ",".join(["1"] * 300)
        target = (base + ids)[: 300 - 1] + ")"
        assert len(target) == 300
        assert http.get(rest.url + target).status_code == 200
        assert http.get(rest.url + target.replace("in.(1", "in.(11")).status_code == 414


def test_wrong_key_is_gateway_401_without_code(rest: PostgrestStandin) -> None:
    with pytest.raises(APIError) as err:
        create_client(rest.url, "sb_secret_wrong").table("users").select("id").execute()
    assert (err.value.code, err.value.message) == (None, "Invalid API key")
    assert err.value.hint == "Double check your Supabase `anon` or `service_role` API key."
    assert rest.requests[-1].status == 401


def test_missing_key_is_gateway_401(rest: PostgrestStandin) -> None:
    r = httpx.get(rest.rest_url + "/users")
    assert r.status_code == 401
    assert r.json() == {
        "message": "No API key found in request",
        "hint": "No `apikey` request header or url param was found.",
    }
    r = httpx.get(rest.rest_url + "/users", headers={"apikey": KEY, "Authorization": "Bearer other"})
    assert (r.status_code, r.json()["message"]) == (401, "Invalid API key")
    assert httpx.get(rest.rest_url + "/users", params={"apikey": KEY}).status_code == 200


# ---- filters, ordering, paging


def test_in_with_reserved_characters(rest: PostgrestStandin, client) -> None:
    wanted = ODD_IDS[:6]
    res = client.table("accounts").select("id,label").in_("id", [*wanted, "missing"]).execute()
    assert sorted(r["id"] for r in res.data) == sorted(wanted)
    assert client.table("accounts").select("id").in_("id", []).execute().data == []
    # None becomes the string 'null', never SQL NULL.
    assert client.table("accounts").select("id").in_("id", [None]).execute().data == []
    res = client.table("accounts").select("id").not_.in_("id", ODD_IDS[1:]).execute()
    assert [r["id"] for r in res.data] == [ODD_IDS[0]]


def test_eq_on_text_uuid_timestamptz_and_is_null(rest: PostgrestStandin, client) -> None:
    assert client.table("accounts").select("label").eq("id", 'say "hi"').execute().data == [{"label": 'label say "hi"'}]
    res = client.table("devices").select("id,name,seen_at").eq("id", str(DEVICE)).execute()
    assert res.data == [{"id": str(DEVICE), "name": "phone", "seen_at": "2024-05-01T10:00:00+00:00"}]
    res = client.table("devices").select("name").gte("seen_at", "2024-05-15T00:00:00+00:00").execute()
    assert res.data == [{"name": "laptop"}]
    nulls = client.table("events").select("id", count="exact").is_("kind", None).limit(1).execute()
    not_nulls = client.table("events").select("id", count="exact").not_.is_("kind", None).limit(1).execute()
    assert (nulls.count, not_nulls.count) == (500, 1000)
    res = client.table("users").select("id").neq("id", 1).lte("id", 3).order("id").execute()
    assert res.data == [{"id": 2}, {"id": 3}]
    res = client.table("users").select("mail:email").eq("id", 7).execute()
    assert res.data == [{"mail": "u7@example.com"}]


def test_bad_filter_values_are_400(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.table("users").select("id").eq("id", "abc").execute()
    assert err.value.code == "22P02"
    with pytest.raises(APIError) as err:
        client.table("users").select("id").eq("id", None).execute()
    assert err.value.code == "22P02"
    with _http(rest) as http:
        r = http.get("/users", params={"id": "5"})
    assert (r.status_code, r.json()["code"]) == (400, "PGRST100")


def test_keyset_paging_with_order_and_limit(rest: PostgrestStandin, client) -> None:
    seen: list[int] = []
    last = 0
    while True:
        page = client.table("events").select("id,user_id").gt("id", last).order("id").limit(400).execute().data
        if not page:
            break
        seen.extend(r["id"] for r in page)
        last = page[-1]["id"]
    assert seen == list(range(1, EVENTS + 1))
    assert rest.request_count == 5
    down = client.table("events").select("id").order("id", desc=True).limit(3).execute().data
    assert [r["id"] for r in down] == [EVENTS, EVENTS - 1, EVENTS - 2]


def test_order_nulls_and_or_filters(rest: PostgrestStandin, client) -> None:
    res = client.table("events").select("id,kind").lte("id", 4).order("kind", nullsfirst=True).order("id").execute()
    assert [r["id"] for r in res.data] == [3, 1, 2, 4]
    res = client.table("events").select("id,kind").lte("id", 4).order("kind", desc=True, nullsfirst=False).execute()
    assert res.data[-1] == {"id": 3, "kind": None}
    res = client.table("users").select("id").or_('id.eq.1,and(id.gte.40,email.neq."u41@example.com")').execute()
    assert sorted(r["id"] for r in res.data) == [1, 40, 42]


def test_single_object(rest: PostgrestStandin, client) -> None:
    assert client.table("users").select("email").eq("id", 3).single().execute().data == {"email": "u3@example.com"}
    with pytest.raises(APIError) as err:
        client.table("users").select("email").lte("id", 3).single().execute()
    assert err.value.code == "PGRST116"


# ---- writes


def test_patch_is_update_only(rest: PostgrestStandin, client, dsn: str) -> None:
    res = client.table("users").update({"lead_score": 0.5, "model_version": "v1"}).in_("id", [1, 2, 999]).execute()
    assert sorted(r["id"] for r in res.data) == [1, 2]
    assert res.data[0]["lead_score"] == 0.5
    assert rest.requests[-1].status == 200
    res = client.table("users").update({"scored_at": "2024-02-01T00:00:00+00:00"}, returning="minimal").eq("id", 999)
    assert res.execute().data == []
    assert rest.requests[-1].status == 204
    assert _fetch(dsn, "SELECT count(*) FROM users") == [(USERS,)]
    assert _fetch(dsn, "SELECT id, model_version FROM users WHERE lead_score = 0.5 ORDER BY id") == [
        (1, "v1"),
        (2, "v1"),
    ]


def test_patch_without_filter_is_refused(rest: PostgrestStandin, client, dsn: str) -> None:
    with pytest.raises(APIError) as err:
        client.table("users").update({"lead_score": 1.0}).execute()
    assert (err.value.code, err.value.message) == ("21000", "UPDATE requires a WHERE clause")
    assert rest.requests[-1].status == 400
    assert _fetch(dsn, "SELECT count(*) FROM users WHERE lead_score IS NOT NULL") == [(0,)]


def test_patch_unknown_column_is_pgrst204(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.table("users").update({"nope": 1}).eq("id", 1).execute()
    assert err.value.code == "PGRST204"
    assert err.value.message == "Could not find the 'nope' column of 'users' in the schema cache"


def test_upsert_inserts_ghost_rows_and_needs_not_null_columns(rest: PostgrestStandin, client, dsn: str) -> None:
    # The original system's bug: an "update" by upsert creates rows for keys that do not exist.
    res = client.table("scores").upsert([{"user_id": 777, "score": 0.9}]).execute()
    assert res.data == [{"user_id": 777, "score": 0.9, "model": None}]
    assert rest.requests[-1].status == 201
    client.table("scores").upsert({"user_id": 777, "score": 0.1}, returning="minimal").execute()
    assert _fetch(dsn, "SELECT user_id, score FROM scores") == [(777, 0.1)]
    # ...and on a table with a NOT NULL column the row is built before the conflict check: 23502.
    with pytest.raises(APIError) as err:
        client.table("users").upsert([{"id": 1, "lead_score": 0.3}], on_conflict="id").execute()
    assert err.value.code == "23502"
    assert rest.requests[-1].status == 400


def test_delete_needs_a_filter(rest: PostgrestStandin, client) -> None:
    client.table("scores").insert([{"user_id": 1, "score": 0.1}, {"user_id": 2, "score": 0.2}]).execute()
    with pytest.raises(APIError) as err:
        client.table("scores").delete().execute()
    assert (err.value.code, err.value.message) == ("21000", "DELETE requires a WHERE clause")
    assert client.table("scores").delete().eq("user_id", 1).execute().data == [
        {"user_id": 1, "score": 0.1, "model": None}
    ]
    assert client.table("scores").select("user_id").execute().data == [{"user_id": 2}]


def test_insert_conflict_is_409(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.table("users").insert({"id": 1, "email": "dup@example.com"}).execute()
    assert err.value.code == "23505"
    assert rest.requests[-1].status == 409


# ---- RPC


def test_rpc_scalar_and_defaults(rest: PostgrestStandin, client) -> None:
    assert client.rpc("add_ints", {"a": 2, "b": 3}).execute().data == 5
    assert client.rpc("add_default", {"a": 2}).execute().data == 12
    res = client.rpc("echo_doc", {"doc": {"x": [1, 2]}, "tags": ["a,b", 'q"']}).execute()
    assert res.data == {"x": [1, 2], "tags": ["a,b", 'q"']}
    assert client.rpc("add_ints", {"a": 2, "b": 3}, get=True).execute().data == 5
    assert rest.requests[-1].method == "GET"
    res = client.rpc("echo_doc", {"doc": {"x": 1}, "tags": ["a,b", "c"]}, get=True).execute()
    assert res.data == {"x": 1, "tags": ["a,b", "c"]}
    ids = client.rpc("event_ids", {"p_user": 5}, get=True).lt("event_ids", 100).execute().data
    assert ids == [4, 46, 88]


def test_rpc_set_returning_is_capped_like_a_read(rest: PostgrestStandin, client) -> None:
    res = client.rpc("all_events", {}).execute()
    assert len(res.data) == 1000
    assert rest.requests[-1].status == 200
    res = client.rpc("all_events", {}, count="exact").execute()
    assert (len(res.data), res.count) == (1000, EVENTS)
    assert rest.requests[-1].status == 206
    res = client.rpc("all_events", {}).gt("id", 1490).order("id", desc=True).limit(3).execute()
    assert [r["id"] for r in res.data] == [1500, 1499, 1498]
    ids = client.rpc("event_ids", {"p_user": 5}).lt("event_ids", 200).execute().data
    assert ids == [4, 46, 88, 130, 172]
    client.rpc("set_scores", {"p_ids": [1, 2], "p_scores": [0.8, 0.2], "p_model": "m"}).execute()
    assert client.rpc("users_above", {"p_min": 0.5}).execute().data == [{"id": 1, "email": "u1@example.com"}]
    # Named result columns give objects even when there is only one.
    assert client.rpc("one_column", {"p_max": 2}).execute().data == [{"user_id": 1}, {"user_id": 2}]
    assert client.rpc("plus_one", {"n": 4}).execute().data == {"next_n": 5}


def test_rpc_volatile_function_writes_and_void_is_204(rest: PostgrestStandin, client, dsn: str) -> None:
    res = client.rpc("set_scores", {"p_ids": [3, 4, 999], "p_scores": [0.7, 0.6, 0.1], "p_model": "m2"}).execute()
    assert res.data == 2
    assert _fetch(dsn, "SELECT id, lead_score, model_version FROM users WHERE lead_score IS NOT NULL ORDER BY id") == [
        (3, 0.7, "m2"),
        (4, 0.6, "m2"),
    ]
    res = client.rpc("clear_score", {"p_id": 3}).execute()
    assert res.data == []
    assert rest.requests[-1].status == 204
    assert _fetch(dsn, "SELECT id FROM users WHERE lead_score IS NOT NULL") == [(4,)]


def test_rpc_stable_function_cannot_write(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.rpc("stable_calls_writer", {}).execute()
    assert err.value.code == "25006"
    assert rest.requests[-1].status == 405
    # PL/pgSQL refuses a write in a non-volatile function before the transaction's mode matters.
    with pytest.raises(APIError) as err:
        client.rpc("plpgsql_stable_write", {}).execute()
    assert err.value.code == "0A000"
    assert rest.requests[-1].status == 400


def test_rpc_wrong_argument_names_is_404(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.rpc("add_ints", {"a": 1, "c": 2}).execute()
    assert err.value.code == "PGRST202"
    assert err.value.message == "Could not find the function public.add_ints(a, c) in the schema cache"
    assert rest.requests[-1].status == 404
    with pytest.raises(APIError) as err:
        client.rpc("add_ints", {"a": 1}).execute()
    assert err.value.code == "PGRST202"
    with pytest.raises(APIError) as err:
        client.rpc("add_ints", {"a": 1, "b": 2, "extra": 3}).execute()
    assert err.value.code == "PGRST202"
    with pytest.raises(APIError) as err:
        client.rpc("no_such_function", {}).execute()
    assert (
        err.value.message
        == "Could not find the function public.no_such_function without parameters in the schema cache"
    )


# ---- error mapping


def test_missing_table_and_missing_column(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.table("nope").select("*").execute()
    assert (err.value.code, err.value.message) == (
        "PGRST205",
        "Could not find the table 'public.nope' in the schema cache",
    )
    assert rest.requests[-1].status == 404
    with pytest.raises(APIError) as err:
        client.table("users").select("id,nope").execute()
    assert (err.value.code, err.value.message) == ("42703", "column users.nope does not exist")
    assert rest.requests[-1].status == 400
    with pytest.raises(APIError) as err:
        client.table("users").select("id").eq("nope", 1).execute()
    assert err.value.code == "42703"


def test_head_errors_carry_their_code_in_proxy_status(rest: PostgrestStandin, client) -> None:
    with pytest.raises(APIError) as err:
        client.table("nope").select("*", count="exact", head=True).execute()
    assert err.value.code == "PGRST205"
    assert rest.requests[-1].status == 404


def test_unexposed_schema_is_406(rest: PostgrestStandin) -> None:
    other = create_client(rest.url, KEY, ClientOptions(schema="private"))
    with pytest.raises(APIError) as err:
        other.table("users").select("id").execute()
    assert (err.value.code, err.value.message) == ("PGRST106", "Invalid schema: private")


def test_hostile_input_stays_data(rest: PostgrestStandin, client, dsn: str) -> None:
    with pytest.raises(APIError) as err:
        client.table("users").select("id").eq("id", "1; DROP TABLE users").execute()
    assert err.value.code == "22P02"
    with pytest.raises(APIError) as err:
        client.table('users"; DROP TABLE users; --').select("*").execute()
    assert err.value.code == "PGRST205"
    with pytest.raises(APIError) as err:
        client.table("users").select('id,"email; DROP TABLE users"').execute()
    assert err.value.code == "42703"
    with pytest.raises(APIError) as err:
        client.rpc("add_ints", {"a": 1, "b); DROP TABLE users; --": 2}).execute()
    assert err.value.code == "PGRST202"
    assert client.table("accounts").select("id").eq("id", "x' OR '1'='1").execute().data == []
    assert _fetch(dsn, "SELECT count(*) FROM users") == [(USERS,)]


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [
        ("23505", 409),
        ("23503", 409),
        ("23502", 400),
        ("22P02", 400),
        ("42703", 400),
        ("P0001", 400),
        ("57014", 500),
        ("42501", 403),
        ("25006", 405),
        ("53300", 503),
        ("40001", 500),
        ("XX000", 500),
    ],
)
def test_sqlstate_status_mapping(rest: PostgrestStandin, sqlstate: str, status: int) -> None:
    with _http(rest) as http:
        r = http.post("/rpc/raise_sqlstate", json={"code": sqlstate})
    assert r.status_code == status == pg_error_status(sqlstate, "")
    assert r.json() == {
        "code": sqlstate,
        "message": f"raised {sqlstate}",
        "details": "some detail",
        "hint": "some hint",
    }


def test_statement_timeout_is_500_57014(dsn: str) -> None:
    with PostgrestStandin(dsn, api_key=KEY, statement_timeout_ms=50) as rest:
        with pytest.raises(APIError) as err:
            create_client(rest.url, KEY).rpc("nap", {"seconds": 5}).execute()
        assert err.value.code == "57014"
        assert rest.requests[-1].status == 500


# ---- fault switches


def test_fail_next_503_is_retried_by_the_client_for_get(rest: PostgrestStandin, client, no_backoff: list[int]) -> None:
    rest.fail_next(2, status=503)
    res = client.table("users").select("id").eq("id", 1).execute()
    assert res.data == [{"id": 1}]
    assert [(r.status, r.retry) for r in rest.requests] == [(503, 0), (503, 1), (200, 2)]
    assert no_backoff == [1, 2]


def test_fail_next_exhausts_client_retries(rest: PostgrestStandin, client, no_backoff: list[int]) -> None:
    rest.fail_next(4, status=520)
    with pytest.raises(APIError) as err:
        client.table("users").select("id").execute()
    assert err.value.code == "520"
    assert "error code: 520" in err.value.details
    assert rest.request_count == 4


def test_post_is_not_retried(rest: PostgrestStandin, client, no_backoff: list[int]) -> None:
    rest.fail_next(1, status=503)
    with pytest.raises(APIError) as err:
        client.rpc("add_ints", {"a": 1, "b": 1}).execute()
    assert (err.value.code, err.value.message) == ("PGRST001", "Database client error. Retrying the connection.")
    assert rest.request_count == 1
    assert client.rpc("add_ints", {"a": 1, "b": 1}).execute().data == 2
    rest.fail_next(1, status=429, body={"message": "slow down"}, headers={"Retry-After": "7"})
    with _http(rest) as http:
        r = http.get("/users")
    assert (r.status_code, r.headers["retry-after"], r.json()) == (429, "7", {"message": "slow down"})


def test_drop_next(rest: PostgrestStandin, client, no_backoff: list[int], dsn: str) -> None:
    rest.drop_next(1)
    assert client.table("users").select("id").eq("id", 2).execute().data == [{"id": 2}]
    assert [r.dropped for r in rest.requests] == [True, False]
    rest.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.rpc("set_scores", {"p_ids": [5], "p_scores": [0.5], "p_model": "x"}).execute()
    assert _fetch(dsn, "SELECT count(*) FROM users WHERE lead_score IS NOT NULL") == [(0,)]
    # The write commits, the answer is lost.
    rest.drop_next(1, after_executing=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.rpc("set_scores", {"p_ids": [5], "p_scores": [0.5], "p_model": "x"}).execute()
    assert _fetch(dsn, "SELECT id FROM users WHERE lead_score IS NOT NULL") == [(5,)]


def test_latency_and_client_timeout(dsn: str) -> None:
    # Its own server: the request the client gives up on is still being answered when the test ends.
    with PostgrestStandin(dsn, api_key=KEY) as rest:
        rest.latency = 0.05
        client = create_client(rest.url, KEY)
        started = time.monotonic()
        client.table("users").select("id").limit(1).execute()
        assert time.monotonic() - started >= 0.05
        rest.latency = 0.2
        slow = create_client(rest.url, KEY, ClientOptions(postgrest_client_timeout=httpx.Timeout(0.05)))
        with pytest.raises(httpx.ReadTimeout):
            slow.table("users").select("id").execute()


def test_concurrent_requests(rest: PostgrestStandin) -> None:
    rest.latency = 0.02
    client = create_client(rest.url, KEY)

    def read(i: int) -> list[dict]:
        return client.table("users").select("id").eq("id", i).execute().data

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(read, range(1, 25)))
    assert results == [[{"id": i}] for i in range(1, 25)]
    assert sorted(r.status for r in rest.requests) == [200] * 24


def test_reset_and_records(rest: PostgrestStandin, client) -> None:
    rest.fail_next(3)
    rest.latency = 1.0
    rest.reset()
    assert rest.latency == 0.0
    client.table("users").select("id").in_("id", [1, 2]).execute()
    [record] = rest.requests
    assert (record.method, record.path, record.status) == ("GET", "/rest/v1/users", 200)
    assert record.query_bytes == len("select=id&id=in.%281%2C2%29")
    assert record.target_bytes == len("/rest/v1/users?") + record.query_bytes
    assert ("id", "in.(1,2)") in record.params
