"""Past the connection cap, a WebSocket that has not authenticated yet (upgraded, within its auth deadline) makes
room like an idle connection: the oldest is dropped for a new one; once authenticated it is busy and stays."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from tests.e2e.test_exhaustion import CLIENT_WAIT, closed_by_server, connect


async def test_unauthenticated_websockets_make_room_and_authenticated_ones_stay(make_harness, caplog):
    h = await make_harness(max_connections=3, auth_timeout_s=60, connection_log_interval_s=0.2)
    acc = await h.account()
    tokens = [await h.user(acc["account_id"], f"w{i}") for i in range(3)]
    waiting = [await h.connect(auth=False) for _ in range(3)]  # upgraded, no auth: the cap is reached
    with capture_logs() as logs:
        sessions = [await h.connect(t) for t in tokens[:2]]  # each makes room by dropping the oldest waiting one
        for w in waiting[:2]:
            assert (await w.next(CLIENT_WAIT))["type"] == "__closed__"
        async with asyncio.timeout(CLIENT_WAIT):
            while not [e for e in logs if e["event"] == "http.connections.closed"]:
                await asyncio.sleep(0.05)
    assert sum(e.get("evicted", 0) for e in logs if e["event"] == "http.connections.closed") == 2
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    assert "Traceback" not in caplog.text and "Error handling request" not in caplog.text
    last = waiting[2]  # still open: it authenticates, and then it is busy like the others
    await last.send({"type": "auth", "token": tokens[2]})
    assert (await last.next())["type"] == "auth_ok"
    await closed_by_server(await connect(h.base))  # every connection busy now: a new one is refused
    for s in [*sessions, last]:
        assert (await s.request({"type": "ping", "id": 1}))["type"] == "pong"
