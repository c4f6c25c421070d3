"""All SQL runs through here, by name, from ``queries.sql``. asyncpg errors that mean "the database is not
there" become ``DatabaseUnavailableError``."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from hejcti.errors import DatabaseUnavailableError

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)

#: errors that say the server or the connection is gone, not that the query is wrong
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
)

#: errors that say the data cannot be stored as sent, whatever the server's state: a value PostgreSQL refuses
#: (class 22: out of range, bad encoding, ``\u0000`` in jsonb; class 54: "index row size exceeds"; a NOT NULL or
#: CHECK constraint) or asyncpg cannot encode. Before ``UNAVAILABLE`` in a handler: asyncpg's encoding error is
#: an ``InterfaceError``.
UNSTORABLE = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ProgramLimitExceededError,
    asyncpg.exceptions.NotNullViolationError,
    asyncpg.exceptions.CheckViolationError,
    asyncpg.exceptions._base.DataError,  # noqa: SLF001  (the client's: "invalid input for query argument")
)


@cache
def queries() -> dict[str, str]:
    text = (Path(__file__).parent / "queries.sql").read_text()
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def q(name: str) -> str:
    return queries()[name]


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self.pool.fetch(q(name), *args)
        except UNAVAILABLE as e:
            raise DatabaseUnavailableError(str(e) or type(e).__name__) from e

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self.pool.fetchrow(q(name), *args)
        except UNAVAILABLE as e:
            raise DatabaseUnavailableError(str(e) or type(e).__name__) from e

    async def fetchval(self, name: str, *args: Any) -> Any:
        try:
            return await self.pool.fetchval(q(name), *args)
        except UNAVAILABLE as e:
            raise DatabaseUnavailableError(str(e) or type(e).__name__) from e

    async def execute(self, name: str, *args: Any) -> str:
        try:
            return await self.pool.execute(q(name), *args)
        except UNAVAILABLE as e:
            raise DatabaseUnavailableError(str(e) or type(e).__name__) from e
