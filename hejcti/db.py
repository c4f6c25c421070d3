"""PostgreSQL: the embedded server (pgserver, files in DATA_DIR) or a shared one (DATABASE_URL); pools,
dedicated connections, and the schema migration."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from hejcti import logs, pgwatch
from hejcti.config import Settings
from hejcti.errors import ConfigError

SCHEMA = Path(__file__).resolve().parent.parent / "schema.sql"
log = logs.get("hejcti.db")
_MIGRATE_LOCK = 0x4E4A_4354  # advisory lock: one migration at a time across processes


def schema_sql() -> str:
    if SCHEMA.exists():
        return SCHEMA.read_text()
    packaged = Path(__file__).resolve().parent / "schema.sql"
    return packaged.read_text()


class Embedded:
    """The embedded PostgreSQL in DATA_DIR/pg. pgserver shares one server among the processes that use the
    same directory and stops it when the last one is gone, so `serve` and every CLI command find the running
    server or start it. A process killed with SIGKILL is struck from pgserver's list by the next one
    (``pgwatch.repair``), and a watcher process stops a server whose users are all gone (``pgwatch``)."""

    def __init__(self, data_dir: Path, watch: bool = True) -> None:
        self.path = (data_dir / "pg").resolve()
        self.watch = watch
        self._server: Any = None

    def start(self) -> str:
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # pgserver's platformdirs warns without it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._repair()
                self._server = pgserver.get_server(self.path, cleanup_mode="stop")
            except Exception as e:  # pgserver raises plain exceptions with the server's log in them
                raise ConfigError(f"cannot start the embedded PostgreSQL in {self.path}: {e}") from e
        if self.watch:
            pgwatch.ensure_watcher(self.path)
        return self._server.get_uri()

    def _repair(self) -> None:
        if not (self.path / "PG_VERSION").exists():
            return
        with pgwatch.server_lock():
            found = pgwatch.repair(self.path)
        if found["foreign_pidfile"]:
            log.warning("embedded.pidfile.stale", pgdata=str(self.path))

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._repair()  # a user killed meanwhile must not keep the server running past us
                self._server.cleanup()
            self._server = None


def database_url(settings: Settings, embedded: Embedded | None) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if embedded is None:
        raise ConfigError("no HEJCTI_DATABASE_URL and no embedded server")
    return embedded.start()


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Release without the server-side reset: asyncpg still rolls back and clears listeners itself."""


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10, stateless: bool = False) -> asyncpg.Pool:
    """``stateless``: the pool's users leave no session state (no SET, LISTEN, advisory lock, cursor), so a
    released connection skips asyncpg's reset query, one round trip per use (the ingest's hot path)."""
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init,
                                     command_timeout=10, max_inactive_connection_lifetime=300,
                                     reset=_keep_session if stateless else None)


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url, timeout=10)
    await _init(conn)
    return conn


async def migrate(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATE_LOCK)
        try:
            await conn.execute(schema_sql())
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATE_LOCK)
    finally:
        await conn.close()
