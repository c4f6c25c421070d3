"""Group commit against a real PostgreSQL: what one bad push or a driver fault does to the rest of a batch."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import replace

import asyncpg
import pytest

from hejcti import tokens
from hejcti.admin import Admin
from hejcti.errors import BadRequestError, DatabaseUnavailableError
from hejcti.metrics import Metrics
from hejcti.store import Store
from tests.harness import make_settings
from webhooks.ingest import Ingest
from webhooks.sipgate import Push, parse


async def account_token(pool, database_url, tmp_path, users: tuple[str, ...] = ()) -> bytes:
    admin = Admin(Store(pool), make_settings(database_url, tmp_path))
    acc = await admin.create_account(name="A", crm="hubspot")
    for user in users:
        await admin.add_user(account_id=acc["account_id"], sipgate_user=user)
    return tokens.digest(acc["webhook_token"])


def new_call(i: int) -> Push:
    return parse(f"event=newCall&direction=in&from=4915791234567&to=492111234567&callId=C{i}".encode())


class CountingPool:
    """The pool, counting the commits the ingest asks of it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.fetches = 0

    async def fetch(self, *args):
        self.fetches += 1
        return await self._pool.fetch(*args)


async def test_pushes_the_database_refuses_fail_alone_with_400_and_their_batch_is_stored(pool, database_url,
                                                                                        tmp_path):
    """Pushes the parser would have refused, given to the ingest directly: PostgreSQL refuses them (a NUL in
    jsonb, an index row over its size limit, a string asyncpg cannot encode). They fail alone as a bad request
    (400, never 503: a retry would fail the same), the 61 good pushes of their batch are stored, and finding the
    refused ones takes a few commits, not one per push."""
    token = await account_token(pool, database_url, tmp_path)
    pushes = [new_call(i) for i in range(64)]
    refused = {10: Push(event="dtmf", call_id="C-nul", dedup="d", data={"dtmf": "1\x002"}),
               40: replace(pushes[40], call_id=base64.b64encode(os.urandom(15_000)).decode()),  # 20,000 chars
               41: replace(pushes[41], call_id="C-\ud800")}
    for i, push in refused.items():
        pushes[i] = push
    counting = CountingPool(pool)
    ingest = Ingest(counting, Metrics())  # type: ignore[arg-type]
    submits = [asyncio.ensure_future(ingest.submit(token, p)) for p in pushes]
    await asyncio.sleep(0)  # all queued before the first commit: one batch
    ingest.start()
    try:
        results = await asyncio.gather(*submits, return_exceptions=True)
    finally:
        await ingest.stop()
    for i, result in enumerate(results):
        if i in refused:
            assert isinstance(result, BadRequestError), (i, result)
        else:
            assert not isinstance(result, BaseException) and result[0] == "stored", (i, result)
    assert await pool.fetchval("SELECT count(*) FROM call_events") == 61
    assert counting.fetches < 32  # halves, not every push on its own


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


async def test_a_call_rings_for_the_listed_users_of_its_account_in_order_each_once(pool, database_url, tmp_path):
    """The users a newCall rings for: those of the push's userId[] the account has, in the push's order, a
    repeat once. Ten calls, so that PostgreSQL has switched to its cached generic plan for the later ones."""
    token = await account_token(pool, database_url, tmp_path, users=tuple(f"w{i}" for i in range(50)))
    other = await account_token(pool, database_url, tmp_path, users=("w7", "w60"))  # another account's users
    ingest = Ingest(pool, Metrics())
    ingest.start()
    try:
        for i in range(10):
            push = parse(f"event=newCall&direction=in&from=4915791234567&to=492111234567&callId=R{i}"
                         "&userId%5B%5D=w12&userId%5B%5D=w60&userId%5B%5D=w3&userId%5B%5D=w12&userId%5B%5D=w7"
                         .encode())
            assert (await ingest.submit(token, push))[0] == "stored"
        assert (await ingest.submit(other, parse(b"event=newCall&direction=in&from=4915791234567&callId=O1"
                                                     b"&userId%5B%5D=w12&userId%5B%5D=w7")))[0] == "stored"
    finally:
        await ingest.stop()
    rows = await pool.fetch("SELECT call_id, users FROM calls ORDER BY call_id")
    assert {r["call_id"]: r["users"] for r in rows} == {
        **{f"R{i}": ["w12", "w3", "w7"] for i in range(10)}, "O1": ["w7"]}
    events = await pool.fetch("SELECT data->'users' AS users FROM call_events WHERE call_id LIKE 'R%'")
    assert [e["users"] for e in events] == [["w12", "w3", "w7"]] * 10
