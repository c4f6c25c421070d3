"""The listener against a real PostgreSQL: what it missed while away is caught up in full when it connects."""

from __future__ import annotations

import asyncio

from hejcti.metrics import Metrics
from tests.db import insert_account
from workers import listener as listener_mod
from workers.listener import Listener


async def until(check, timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds or ``timeout`` is up; the assertion after it says what did not happen."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)


async def test_a_listener_back_after_more_than_a_page_catches_up_everything_at_once(pool, database_url,
                                                                                  monkeypatch):
    monkeypatch.setattr(listener_mod, "PAGE", 5)  # 12 missed events are more than two pages
    await insert_account(pool, "acc_l")
    for i in range(12):  # while no listener is connected: no notification reaches it
        await pool.fetchval("SELECT hejcti_ingest('acc_l', 'newCall', $1, '', '{}'::jsonb)", f"CL{i:02d}")
    got = []
    listener = Listener(database_url, got.append, Metrics(), poll_interval=3600)  # no poll would save it
    listener.high = 0  # it had seen everything up to here before it went away
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert [ev.call_id for ev in got] == [f"CL{i:02d}" for i in range(12)]
    finally:
        await listener.stop()


async def test_an_event_that_commits_after_a_later_one_is_delivered_by_the_poll(pool, database_url):
    """Ids are taken at insert and become visible at commit: a transaction that commits after a later id was
    seen leaves a gap below the watermark, which the poll fills (here its notification is lost too)."""
    await insert_account(pool, "acc_g")
    got = []
    listener = Listener(database_url, got.append, Metrics(), poll_interval=0.2)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        async with pool.acquire() as slow:
            tx = slow.transaction()
            await tx.start()
            # inserted without NOTIFY: as if its notification never arrived
            await slow.execute("INSERT INTO call_events (account_id, call_id, event, data)"
                               " VALUES ('acc_g', 'SLOW', 'newCall', '{}')")
            await pool.fetchval("SELECT hejcti_ingest('acc_g', 'newCall', 'FAST', '', '{}'::jsonb)")
            await until(lambda: len(got) == 1)
            assert [ev.call_id for ev in got] == ["FAST"]
            await tx.commit()
        await until(lambda: len(got) == 2)
        assert [ev.call_id for ev in got] == ["FAST", "SLOW"]
        assert got[1].id < got[0].id  # the gap below the watermark, filled
    finally:
        await listener.stop()


async def test_a_listener_stopped_by_what_its_poll_delivers_stops(pool, database_url):
    """A stop asked for while a poll hands over its events lands in the pass where that poll finishes: Python
    3.11's wait_for returned the poll's result there and dropped the cancel, and the stop waited for ever."""
    await insert_account(pool, "acc_s")
    stopping: list[asyncio.Task[None]] = []
    listener = Listener(database_url, lambda _ev: stopping.append(asyncio.ensure_future(listener.stop())),
                        Metrics(), poll_interval=0.05)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        await pool.execute("INSERT INTO call_events (account_id, call_id, event, data)"  # no NOTIFY: the poll
                           " VALUES ('acc_s', 'S1', 'newCall', '{}')")
        await until(lambda: len(stopping) == 1)
        async with asyncio.timeout(5):
            await stopping[0]
        assert listener.conn is None and listener._task is not None and listener._task.done()
    finally:
        await listener.stop()
