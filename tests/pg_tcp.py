"""A PostgreSQL server on loopback TCP (pgserver's binaries), for clients that cannot use a Unix socket:
Spark's JDBC driver. pgserver itself listens on a socket only.

>>> with TcpPostgres(tmp_path) as pg:
...     url = pg.new_database()   # postgresql+psycopg://postgres@127.0.0.1:PORT/t_…
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpPostgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: Any = None
        self.port = 0

    def __enter__(self) -> TcpPostgres:
        import pgserver
        from pgserver._commands import pg_ctl

        # pgserver initializes the cluster (as its own system user when run as root) and starts it on a socket;
        # it is restarted here listening on 127.0.0.1 as well.
        self.root.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(str(self.root / "pgdata"), cleanup_mode=None)
        data = self.server.pgdata
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=self.server.system_user)
        self.port = _free_port()
        pg_ctl(
            ["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {data}", "-l", str(data / "tcp.log"), "start"],
            pgdata=data,
            user=self.server.system_user,
            timeout=60,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    @property
    def pid(self) -> int:
        """The postmaster's process id (of the restarted server, not the one pgserver started)."""
        return int((self.server.pgdata / "postmaster.pid").read_text().split()[0])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
