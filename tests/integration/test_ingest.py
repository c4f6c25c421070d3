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


async def account_token(pool, database_url, tmp_path, users: tuple[str, ...] = ()) -> bytes:
    admin = Admin(Store(pool), make_settings(database_url, tmp_path))
    acc = await admin.create_account(name="A", crm="hubspot")
    for user in users:
        await admin.add_user(account_id=acc["account_id"], sipgate_user=user)
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
