"""``Store`` tells bad input from a missing database: a text asyncpg cannot encode (a lone surrogate) or
PostgreSQL refuses (a NUL) is ``BadRequestError``, never "database unavailable"; a closed pool still is."""

from __future__ import annotations

import pytest

from hejcti import db
from hejcti.errors import BadRequestError, DatabaseUnavailableError
from hejcti.store import Store


def account(name: str) -> tuple:
    return ("acc_unstorable", name, "hubspot", None, "DE", True, b"w" * 32, b"n" * 16, b"a" * 32, None)


@pytest.mark.parametrize("name", ["\ud800", "x\udcffy", "nul\x00"])
async def test_text_that_cannot_be_stored_is_a_bad_request(pool, name):
    store = Store(pool)
    with pytest.raises(BadRequestError) as refused:
        await store.fetchval("account_insert", *account(name))
    assert name not in str(refused.value)  # the value itself (a note, a name) is never repeated into logs
    for method in (store.fetch, store.fetchrow, store.execute):
        with pytest.raises(BadRequestError):
            await method("account_insert", *account(name))
    assert await store.fetchval("account_insert", *account("fine")) == "acc_unstorable"


async def test_a_closed_pool_is_still_unavailable(database_url):
    gone = await db.create_pool(database_url, min_size=1, max_size=1)
    await gone.close()
    with pytest.raises(DatabaseUnavailableError):
        await Store(gone).fetchval("account_insert", *account("x"))
