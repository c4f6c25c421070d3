"""The listener against a real PostgreSQL: what it missed while away is caught up in full when it connects."""

from __future__ import annotations

import asyncio

from hejcti import tokens
from hejcti.metrics import Metrics
from workers import listener as listener_mod
from workers.listener import Listener


async def test_a_listener_back_after_more_than_a_page_catches_up_everything_at_once(pool, database_url,
                                                                                  monkeypatch):
    monkeypatch.setattr(listener_mod, "PAGE", 5)  # 12 missed events are more than two pages
    await pool.execute("INSERT INTO accounts (id, name, crm_kind, webhook_token_hash, webhook_nonce, admin_token_hash)"
                       " VALUES ('acc_l', 'L', 'hubspot', $1, 'n', $2)", tokens.digest("l"), tokens.digest("al"))
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
