"""Test databases: one PostgreSQL per test run (``HEJCTI_TEST_DATABASE_URL``, else an embedded one through
pgserver), a template database built once from ``schema.sql``, and a fresh clone of it for every test."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from hejcti import db, tokens

TEMPLATE = "hejcti_template"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class PgCluster:
    def __init__(self) -> None:
        self._tmp: str | None = None
        self._server = None
        self.url = os.environ.get("HEJCTI_TEST_DATABASE_URL", "")
        self.embedded = not self.url

    def start(self) -> str:
        if self.embedded:
            self._tmp = tempfile.mkdtemp(prefix="hejcti-test-pg-")
            self._embedded = db.Embedded(Path(self._tmp))
            self.url = self._embedded.start()
        asyncio.run(self._build_template())
        return self.url

    @property
    def pgdata(self) -> Path | None:
        return self._embedded.path if self.embedded else None

    async def _build_template(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        tconn = await asyncpg.connect(with_database(self.url, TEMPLATE))
        try:
            await tconn.execute(db.schema_sql())
        finally:
            await tconn.close()

    async def clone(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        finally:
            await conn.close()
        return name

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    def stop(self) -> None:
        if self.embedded:
            self._embedded.stop()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def database_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    name = await pg_cluster.clone()
    yield with_database(pg_cluster.url, name)
    await pg_cluster.drop(name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


async def insert_account(pool: asyncpg.Pool, account_id: str, *, crm: str = "hubspot", log_calls: bool = True) -> None:
    """An account row as the tests below the admin layer need it: its id, a CRM kind, hashed tokens."""
    await pool.execute("INSERT INTO accounts (id, name, crm_kind, webhook_token_hash, webhook_nonce, admin_token_hash,"
                       " log_calls) VALUES ($1, $1, $2, $3, $4, $5, $6)", account_id, crm, tokens.digest(account_id),
                       b"n", tokens.digest("admin-" + account_id), log_calls)


async def dump_tables(where: str | asyncpg.Pool) -> str:
    """Every value of every table of the schema (a database URL's or a pool's) as text, one row a line, values
    tab-separated: what a test searches for a secret or a name that must be stored nowhere. Bytes are decoded
    as UTF-8 with anything undecodable escaped, so a secret written into a bytea column is found too."""
    conn = await asyncpg.connect(where) if isinstance(where, str) else where
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
        assert {"accounts", "users", "calls", "call_events"} <= set(tables), tables  # the schema's, read
        rows = [row for t in tables for row in await conn.fetch(f'SELECT * FROM "{t}"')]  # noqa: S608
    finally:
        if isinstance(where, str):
            await conn.close()
    return "\n".join("\t".join(_as_text(v) for v in row.values()) for row in rows)


def _as_text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def assert_absent(dump: str, *needles: str) -> None:
    """None of the needles (secrets, names, numbers) is anywhere in a dump_tables() text."""
    for needle in needles:
        assert needle not in dump, needle
