"""Group commit against a real PostgreSQL: what one bad push or a driver fault does to the rest of a batch."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from hejcti import tokens
from hejcti.admin import Admin
from hejcti.errors import DatabaseUnavailableError
from hejcti.metrics import Metrics
from hejcti.store import Store
from tests.harness import make_settings
from webhooks.ingest import Ingest
from webhooks.sipgate import Push, parse


async def account_token(pool, database_url, tmp_path) -> bytes:
    acc = await Admin(Store(pool), make_settings(database_url, tmp_path)).create_account(name="A", crm="hubspot")
    return tokens.digest(acc["webhook_token"])


def new_call(i: int) -> Push:
    return parse(f"event=newCall&direction=in&from=4915791234567&to=492111234567&callId=C{i}".encode())


async def test_a_push_the_database_refuses_does_not_fail_its_batch(pool, database_url, tmp_path):
    token = await account_token(pool, database_url, tmp_path)
    poisoned = Push(event="dtmf", call_id="C-bad", dedup="d", data={"dtmf": "1\x002"})  # jsonb refuses NUL
    ingest = Ingest(pool, Metrics())
    submits = [asyncio.ensure_future(ingest.submit(token, p))
               for p in (new_call(1), new_call(2), poisoned, new_call(3))]
    await asyncio.sleep(0)  # all four queued before the first commit: one batch
    ingest.start()
    try:
        results = await asyncio.gather(*submits, return_exceptions=True)
    finally:
        await ingest.stop()
    assert [r[0] for r in (results[0], results[1], results[3])] == ["stored"] * 3
    assert isinstance(results[2], DatabaseUnavailableError)
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 3


class FlakyPool:
    """A pool whose next fetch fails with an error asyncpg raises outside its PostgresError tree."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.fail = 1

    async def fetch(self, *args):
        if self.fail:
            self.fail -= 1
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation is in progress")
        return await self._pool.fetch(*args)


async def test_ingest_survives_a_driver_fault_and_answers_the_next_push(pool, database_url, tmp_path):
    token = await account_token(pool, database_url, tmp_path)
    ingest = Ingest(FlakyPool(pool), Metrics())  # type: ignore[arg-type]
    ingest.start()
    try:
        with pytest.raises(DatabaseUnavailableError):  # the webhook answers 503, it does not hang
            await asyncio.wait_for(ingest.submit(token, new_call(1)), 5)
        status, seq, _ = await asyncio.wait_for(ingest.submit(token, new_call(2)), 5)
    finally:
        await ingest.stop()
    assert status == "stored" and seq is not None
