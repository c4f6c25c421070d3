"""GET /ws as an extension author sees it (CONTRACT §5): auth, close codes, replies, resume, slow readers,
tenant isolation."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from hejcti.app import HUB
from tests.e2e.test_fanout import hangup, new_call


async def raw(h):
    return await h.http.ws_connect(f"{h.base}/ws")


async def closed_with(ws, timeout=15.0) -> int | None:
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code if ws.close_code is not None else msg.data


async def test_auth_ok_names_user_account_and_session(harness):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w0")
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": token, "id": 7})
    ok = await ws.receive_json(timeout=5)
    assert ok["type"] == "auth_ok" and ok["id"] == 7
    assert ok["account_id"] == acc["account_id"]
    assert ok["user_id"].startswith("usr_") and ok["session_id"].startswith("ses_")
    await ws.close()


async def test_invalid_token_gets_auth_invalid_and_4500(harness):
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": "x" * 43})
    assert await ws.receive_json(timeout=5) == {"type": "auth_invalid"}
    assert await closed_with(ws) == 4500


@pytest.mark.parametrize("first", [
    '{"type":"ping"}', "not json", "[1,2]", '{"type":"auth"}', b"\x00binary",
])
async def test_anything_but_auth_first_closes_4501(harness, first):
    ws = await raw(harness)
    if isinstance(first, bytes):
        await ws.send_bytes(first)
    else:
        await ws.send_str(first)
    assert await closed_with(ws) == 4501


@pytest.mark.parametrize("token", ["", "x" * 600, 123, None, "a\u0000b"])
async def test_a_token_that_is_no_token_gets_auth_invalid_and_4500(harness, token):
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": token})
    assert await ws.receive_json(timeout=5) == {"type": "auth_invalid"}
    assert await closed_with(ws) == 4500


async def test_silence_closes_4501(make_harness):
    h = await make_harness(auth_timeout_s=0.3)
    ws = await raw(h)
    assert await closed_with(ws) == 4501


async def session(h, sipgate_user="w0", **account):
    acc = await h.account(**account)
    return acc, await h.connect(await h.user(acc["account_id"], sipgate_user))


async def test_ping_pong_echoes_id(harness):
    _, c = await session(harness)
    assert await c.request({"type": "ping", "id": "p1"}) == {"type": "pong", "id": "p1"}
    assert await c.request({"type": "ping", "id": 42}) == {"type": "pong", "id": 42}
    await c.send({"type": "ping"})
    assert await c.next() == {"type": "pong"}


@pytest.mark.parametrize("text, has_id", [
    ("{broken", False), ("[]", False), ('"str"', False), ('{"id":3}', True), ('{"type":"nope","id":3}', True),
    ('{"type":"call.note","id":3,"call_id":"X"}', True), ('{"type":"crm.credentials","id":3}', True),
    ('{"type":"auth","token":"again","id":3}', True),
    ('{"type":"call.note","id":3,"call_id":"X","text":"a\\u0000b"}', True),  # PostgreSQL cannot store a NUL
    ('{"type":"call.note","id":3,"call_id":"X\\u0000","text":"t"}', True),
])
async def test_bad_messages_get_an_error_and_the_session_stays(harness, text, has_id):
    _, c = await session(harness)
    await c.send(text)
    err = await c.next()
    assert err["type"] == "error" and err["code"] == "bad_message" and err["message"]
    assert (err.get("id") == 3) is has_id
    assert await c.request({"type": "ping", "id": "after"}) == {"type": "pong", "id": "after"}


async def test_credentials_are_taken(harness):
    _, c = await session(harness)
    reply = await c.request({"type": "crm.credentials", "access_token": "t0k", "instance_url": "https://x", "id": 1})
    assert reply == {"type": "result", "ok": True, "id": 1}


async def test_every_session_of_a_user_gets_the_pop_once(harness):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w0")
    a, b = await harness.connect(token), await harness.connect(token)
    await harness.post(acc["url"], new_call("CTWO"))
    for c in (a, b):
        await c.expect("call.ringing", call_id="CTWO")
    await asyncio.sleep(0.3)
    assert len(a.of("call.ringing")) == len(b.of("call.ringing")) == 1


async def test_resume_replays_what_was_missed(harness):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w0")
    c = await harness.connect(token)
    await harness.post(acc["url"], new_call("CRES"))
    seen = await c.expect("call.ringing")
    await c.close()
    await harness.post(acc["url"], "event=answer&callId=CRES&user=A&userId=w0&direction=in")
    await harness.post(acc["url"], hangup("CRES"))
    back = await harness.connect(token, resume=seen["seq"])
    answered = await back.expect("call.answered")
    ended = await back.expect("call.ended")
    assert answered["seq"] > seen["seq"] and ended["seq"] > answered["seq"]
    assert back.of("call.ringing") == []
    fresh = await harness.connect(token, resume=0)
    assert [(await fresh.next())["type"] for _ in range(3)] == ["call.ringing", "call.answered", "call.ended"]


async def test_resume_skips_calls_older_than_the_window(harness):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w0")
    await harness.post(acc["url"], new_call("COLD"))
    await harness.pool.execute("UPDATE calls SET started_at = now() - interval '6 minutes'")
    await harness.post(acc["url"], new_call("CNEW"))
    c = await harness.connect(token, resume=0)
    assert (await c.expect("call.ringing"))["call_id"] == "CNEW"
    await asyncio.sleep(0.3)
    assert [m["call_id"] for m in c.of("call.ringing")] == ["CNEW"]


async def test_slow_reader_is_closed_with_4001_and_others_carry_on(harness):
    acc = await harness.account()
    slow_token = await harness.user(acc["account_id"], "w0")
    fast = await harness.connect(await harness.user(acc["account_id"], "w1"))
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": slow_token})
    assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
    hub = harness.app[HUB]
    (slow,) = hub.sessions_for(acc["account_id"], ["w0"])
    big = {"type": "call.resolved", "call_id": "CSLOW", "contacts": [{"name": "x" * 4000}]}
    sent = 0
    while not slow.closed and sent < 50_000:  # the client reads nothing meanwhile
        hub.publish([slow], big)
        sent += 1
        if sent % 100 == 0:
            await asyncio.sleep(0)
    assert slow.closed and sent > 1000
    # the other user's session is not slowed: its pop arrives while the slow one is being closed
    await harness.post(acc["url"], new_call("CFAST", users=("w1",)))
    await fast.expect("call.ringing", call_id="CFAST")
    assert await closed_with(ws, timeout=20) == 4001  # reading again, the client finds 4001 after the backlog
    async with harness.http.get(f"{harness.base}/metrics") as r:
        assert "hejcti_sessions_closed_slow_total 1.0" in await r.text()


async def test_tenants_never_see_each_other(harness):
    contact = ("c1", "{}", "", "+4915791234567", "", "")
    a_acc = await harness.account(name="A", contacts=[(contact[0], "Anna of A", *contact[2:])])
    b_acc = await harness.account(name="B", contacts=[(contact[0], "Bert of B", *contact[2:])])
    a = await harness.connect(await harness.user(a_acc["account_id"], "w0"))
    b_token = await harness.user(b_acc["account_id"], "w0")
    b = await harness.connect(b_token)
    await harness.post(a_acc["url"], new_call("CTENA"))
    pop_a = await a.expect("call.ringing")
    assert pop_a["contacts"][0]["name"] == "Anna of A"
    await harness.post(b_acc["url"], new_call("CTENB"))
    pop_b = await b.expect("call.ringing")
    assert pop_b["call_id"] == "CTENB" and pop_b["contacts"][0]["name"] == "Bert of B"
    await harness.post(a_acc["url"], hangup("CTENA"))
    await a.expect("call.ended")
    assert not [m for m in b.seen if m.get("call_id") == "CTENA"]
    assert not [m for m in a.seen if m.get("call_id") == "CTENB"]
    # the same call id at both accounts is two calls
    await harness.post(b_acc["url"], new_call("CTENA"))
    assert (await b.expect("call.ringing", call_id="CTENA"))["contacts"][0]["name"] == "Bert of B"
    # B's token authenticates into B only
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": b_token})
    assert (await ws.receive_json(timeout=5))["account_id"] == b_acc["account_id"]
    await ws.close()
    # a resume from 0 with A's token replays only A's calls
    again = await harness.connect(await _token_of(harness, a_acc), resume=0)
    await again.expect("call.ended", call_id="CTENA")
    assert {m.get("call_id") for m in again.seen if "call_id" in m} == {"CTENA"}


async def _token_of(h, acc):
    users = (await h.admin.list_users(acc["account_id"]))["users"]
    return (await h.admin.new_user_token(users[0]["user_id"]))["token"]


async def test_removed_user_and_old_token_cannot_authenticate(harness):
    acc = await harness.account()
    added = await harness.admin.add_user(account_id=acc["account_id"], sipgate_user="w0")
    new = await harness.admin.new_user_token(added["user_id"])
    for token, code in ((added["token"], 4500), (new["token"], None)):
        ws = await raw(harness)
        await ws.send_json({"type": "auth", "token": token})
        first = await ws.receive_json(timeout=5)
        if code is None:
            assert first["type"] == "auth_ok"
            await ws.close()
        else:
            assert first == {"type": "auth_invalid"} and await closed_with(ws) == code
    await harness.admin.remove_user(added["user_id"])
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": new["token"]})
    assert await ws.receive_json(timeout=5) == {"type": "auth_invalid"}


async def test_open_sessions_metric(harness):
    _, c = await session(harness)
    async with harness.http.get(f"{harness.base}/metrics") as r:
        assert "hejcti_sessions_open 1.0" in await r.text()
    await c.close()
    await asyncio.sleep(0.2)
    async with harness.http.get(f"{harness.base}/metrics") as r:
        assert "hejcti_sessions_open 0.0" in await r.text()


async def test_shutdown_closes_sessions_with_1001(make_harness):
    h = await make_harness()
    _, c = await session(h)
    await h.runner.cleanup()
    h.runner = None
    assert (await c.expect("__closed__", timeout=10))["code"] == 1001
