"""All SQL runs through here, by name, from ``queries.sql``. asyncpg errors that mean "the database is not
there" become ``DatabaseUnavailableError``; those that mean "this value cannot be stored" become
``BadRequestError``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from hejcti.errors import BadRequestError, DatabaseUnavailableError

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


@contextmanager
def _classified() -> Iterator[None]:
    """asyncpg's errors as the caller can answer them. The refused value is not repeated (asyncpg's message
    holds it): it may be a note or a name, which the logs never hold."""
    try:
        yield
    except UNSTORABLE as e:  # before UNAVAILABLE: asyncpg's encoding error is an InterfaceError
        if isinstance(e.__cause__, UnicodeError) or isinstance(e, asyncpg.CharacterNotInRepertoireError):
            raise BadRequestError("a text holds a character that cannot be stored (a NUL or a lone surrogate, "
                                  "as in invalid UTF-8)") from e
        raise BadRequestError(f"a value cannot be stored as sent ({type(e).__name__})") from e
    except UNAVAILABLE as e:
        raise DatabaseUnavailableError(str(e) or type(e).__name__) from e


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        with _classified():
            return await self.pool.fetch(q(name), *args)

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        with _classified():
            return await self.pool.fetchrow(q(name), *args)

    async def fetchval(self, name: str, *args: Any) -> Any:
        with _classified():
            return await self.pool.fetchval(q(name), *args)

    async def execute(self, name: str, *args: Any) -> str:
        with _classified():
            return await self.pool.execute(q(name), *args)
