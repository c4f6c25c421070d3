"""The portal, continued: open sessions counted across processes, names on the calls page, the CRM record's
state there, Konto and Users on a server without sipgate's OAuth client, and CRM instances an admin may not set."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.portal_kit import Portal, browser


async def _users_json(portal: Portal, want: Any, key: str = "sessions") -> list[dict[str, Any]]:
    """users.json's rows once the first row's ``key`` is ``want`` (or as they are after a few seconds)."""
    for _ in range(60):
        rows = json.loads(await portal.get("/portal/users.json"))["users"]
        if rows and rows[0][key] == want:
            break
        await asyncio.sleep(0.1)
    return rows


async def test_open_sessions_are_counted_across_processes(make_harness):
    a = await make_harness(presence_interval_s=0.2)
    b = await make_harness(presence_interval_s=0.2)
    acc = await a.account()
    token = await a.user(acc["account_id"], "w1")
    on_a = await a.connect(token)
    on_b = await b.connect(token)
    async with browser() as http:
        portal = Portal(a, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        assert (await _users_json(portal, 2))[0]["sessions"] == 2  # one here, one on the other process
        await on_b.close()
        assert (await _users_json(portal, 1))[0]["sessions"] == 1
        await b.stop()  # a process that stops takes its rows with it
        rows = await a.pool.fetch("SELECT process_id FROM session_presence")
        assert len({r["process_id"] for r in rows}) <= 1
        page = await portal.get("/portal/users")
        assert "per process" not in page and "this server process" not in page
    await on_a.close()
