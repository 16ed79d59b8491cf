"""Float columns out of PostgreSQL in its binary COPY format, straight into numpy: no Python object per row.

At 1M leads the population's shadow pairs as Python rows (even plain tuples, in chunks) took ~5 s of the run's
end, nearly all of it in the client; the same pairs as one ``COPY (SELECT …) TO STDOUT (FORMAT BINARY)`` are
26 bytes a row, read and parsed in a fraction of that (docs/champion-challenger.md#cost).

>>> data = (b"PGCOPY\\n\\xff\\r\\n\\x00" + bytes(8)
...         + b"\\x00\\x02" + b"\\x00\\x00\\x00\\x08" + np.float64(0.25).byteswap().tobytes()
...         + b"\\x00\\x00\\x00\\x08" + np.float64(0.75).byteswap().tobytes() + b"\\xff\\xff")
>>> parse_float8_pairs(data).tolist()
[[0.25, 0.75]]
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

__all__ = ["copy_float8_pairs", "parse_float8_pairs"]

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: One row of two non-NULL float8 fields: the field count, then each field's length (8) and its big-endian value.
_PAIR = np.dtype([("fields", ">i2"), ("len_a", ">i4"), ("a", ">f8"), ("len_b", ">i4"), ("b", ">f8")])


def parse_float8_pairs(data: bytes | bytearray | memoryview) -> np.ndarray:
    """The rows of a binary COPY of two float8 columns as an (n, 2) float64 array. Anything else (a NULL, another
    type, a damaged stream) is a ValueError: the fixed layout is checked, never guessed past."""
    view = memoryview(data)
    if bytes(view[: len(_SIGNATURE)]) != _SIGNATURE or len(view) < 21:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(view[15:19], "big")
    body = view[19 + extension : -2]
    if bytes(view[-2:]) != b"\xff\xff" or len(body) % _PAIR.itemsize:
        raise ValueError("a binary COPY stream of two float8 columns has 26 bytes a row and ends in -1")
    rows = np.frombuffer(body, dtype=_PAIR)
    if len(rows) and not ((rows["fields"] == 2).all() and (rows["len_a"] == 8).all() and (rows["len_b"] == 8).all()):
        raise ValueError("every row must hold two non-NULL float8 values")
    out = np.empty((len(rows), 2), dtype=np.float64)
    out[:, 0] = rows["a"]
    out[:, 1] = rows["b"]
    return out


def copy_float8_pairs(conn: sa.Connection, query: sa.Select[float, float]) -> np.ndarray:
    """Run ``query`` (two columns, cast to float8 and never NULL) as a binary COPY on ``conn`` (psycopg 3) and
    return its rows as an (n, 2) float64 array."""
    compiled = query.compile(dialect=conn.dialect)
    statement = f"COPY ({compiled}) TO STDOUT (FORMAT BINARY)"
    driver = conn.connection.driver_connection
    dbapi = conn.dialect.loaded_dbapi
    if not conn.in_transaction():
        conn.begin()  # the COPY runs in the connection's transaction, which SQLAlchemy then ends (or rolls back)
    data = bytearray()
    try:
        with driver.cursor() as cursor, cursor.copy(statement, compiled.params) as copy:  # type: ignore[union-attr]
            for block in copy:
                data += block
    except dbapi.Error as exc:
        # As SQLAlchemy raises a driver's error for a statement it runs, so the store's retries and error kinds
        # (a lost connection, a cancelled statement, a refused one) apply to this one too.
        if driver.closed:  # type: ignore[union-attr]
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(statement, compiled.params, exc, dbapi.Error, dialect=conn.dialect) from exc
    return parse_float8_pairs(data)
