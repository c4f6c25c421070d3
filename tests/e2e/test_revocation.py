"""Revocation reaches live sessions (CONTRACT §5): `user token`, `user remove` and `account delete` close the
user's (the account's) sessions on every process, with 4502 (4503); events are addressed to user rows, so a
re-added sipgate id is another recipient; a revocation lost while the listener was away is found by its sweep.

Two app instances share one database: A takes the webhooks, B holds the sessions, and the revocation is done by
a third process, the CLI, as an operator does it."""

from __future__ import annotations

import asyncio

import pytest

from hejcti.app import HUB, LISTENER, WS
from tests.e2e.test_cli import env_for, hejcti
from tests.e2e.test_fanout import hangup, new_call
from tests.harness import Client, Harness


async def closed(client: Client, timeout: float = 10.0) -> int:
    return (await client.expect("__closed__", timeout))["code"]


async def hub_drops(h: Harness, n: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while len(h.app[HUB]) != n:
            await asyncio.sleep(0.02)


async def two(make_harness) -> tuple[Harness, Harness]:
    return await make_harness(), await make_harness()


def lose_revocations(h: Harness) -> None:
    """As if the listener had been away when they were sent: revocations it hears go nowhere. (Not an UNLISTEN on
    its connection: that would race with its own polls on the same connection.)"""
    h.app[LISTENER]._revoke = lambda _r: None  # shadows the method on this instance only


async def reconnect_listener(h: Harness) -> None:
    """The listener's connection drops; it reconnects (and sweeps) with revocations heard again."""
    listener = h.app[LISTENER]
    del listener._revoke
    pid = listener.backend_pid
    await h.pool.execute("SELECT pg_terminate_backend($1)", pid)
    async with asyncio.timeout(15):
        while listener.backend_pid in (None, pid) or not listener.connected.is_set():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("command, code", [("token", 4502), ("remove", 4502), ("delete", 4503)])
async def test_a_revocation_closes_the_session_on_another_process(make_harness, database_url, tmp_path,
                                                                  command, code):
    a, b = await two(make_harness)
    acc, other = await a.account(name="Acme"), await a.account(name="Other")
    revoked = await b.connect(await a.user(acc["account_id"], "w1"))
    bystander = await b.connect(await a.user(other["account_id"], "w1"))
    user_id = revoked.seen[0]["user_id"]
    env = env_for(database_url, tmp_path)
    if command == "delete":
        await hejcti(env, "account", "delete", acc["account_id"], "--json")
    else:
        await hejcti(env, "user", command, user_id, "--json")

    assert await closed(revoked) == code
    await hub_drops(b, 1)
    # calls for w1 of both accounts: the bystander's pops; nothing more reaches the revoked session
    if command != "delete":
        assert (await a.post(acc["url"], new_call("CREV1", users=("w1",))))[0] == 200
    assert (await a.post(other["url"], new_call("CREV2", users=("w1",))))[0] == 200
    await bystander.expect("call.ringing", call_id="CREV2")
    assert revoked.of("call.ringing") == []
    assert await bystander.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


async def test_the_new_token_works_where_the_old_was_closed(make_harness):
    a, b = await two(make_harness)
    acc = await a.account()
    old = await b.connect(await a.user(acc["account_id"], "w1"))
    fresh = await a.admin.new_user_token(old.seen[0]["user_id"])
    assert await closed(old) == 4502
    new = await b.connect(fresh["token"])
    await a.post(acc["url"], new_call("CNEW1", users=("w1",)))
    await new.expect("call.ringing", call_id="CNEW1")


async def test_a_re_added_sipgate_user_is_another_person(make_harness):
    """w1 removed and added again for someone else: the old socket gets none of the new person's calls, even
    when the revocation never reached its process (it is addressed by user row, not by sipgate id)."""
    a, b = await two(make_harness)
    acc = await a.account(contacts=[("c1", "Julia Schmidt", "ACME", "+4915791234567", "", "")])
    old = await b.connect(await a.user(acc["account_id"], "w1"))
    lose_revocations(b)
    await a.admin.remove_user(old.seen[0]["user_id"])
    new = await b.connect(await a.user(acc["account_id"], "w1"))
    await a.post(acc["url"], new_call("CREADD1", users=("w1",)))
    await a.post(acc["url"], hangup("CREADD1"))
    assert (await new.expect("call.ringing", call_id="CREADD1"))["contacts"][0]["name"] == "Julia Schmidt"
    await new.expect("call.ended", call_id="CREADD1")
    assert await old.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}  # still open: lost revocation
    assert [m for m in old.seen if m.get("call_id") == "CREADD1"] == []
    # nor can it write into the new person's call: a note is the call's when it rang for this user row
    note = await old.request({"type": "call.note", "call_id": "CREADD1", "text": "not mine", "id": 2})
    assert (note["type"], note["code"]) == ("error", "not_found")


async def test_the_listener_sweeps_revocations_it_missed(make_harness):
    a, b = await two(make_harness)
    acc, gone = await a.account(name="Acme"), await a.account(name="Gone")
    rotated = await b.connect(await a.user(acc["account_id"], "w1"))
    removed = await b.connect(await a.user(acc["account_id"], "w2"))
    deleted = await b.connect(await a.user(gone["account_id"], "w1"))
    kept = await b.connect(await a.user(acc["account_id"], "w3"))
    lose_revocations(b)
    await a.admin.new_user_token(rotated.seen[0]["user_id"])
    await a.admin.remove_user(removed.seen[0]["user_id"])
    await a.admin.delete_account(gone["account_id"])
    assert await rotated.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}  # nothing heard
    await reconnect_listener(b)
    assert [await closed(c) for c in (rotated, removed, deleted)] == [4502, 4502, 4503]
    assert await kept.request({"type": "ping", "id": 2}) == {"type": "pong", "id": 2}
    await hub_drops(b, 1)


async def test_a_session_whose_token_was_checked_during_a_sweep_is_checked_again(make_harness):
    """The listener was away when the token was replaced, and its sweep ran while this session's token was being
    checked (the old one still valid then): the sweep did not see the session, so the session is checked alone."""
    a, b = await two(make_harness)
    acc = await a.account()
    token = await a.user(acc["account_id"], "w1")
    user_id = (await a.admin.list_users(acc["account_id"]))["users"][0]["user_id"]
    store = b.app[WS].store
    check = store.fetchrow

    async def checked_while_swept(name, *args):
        row = await check(name, *args)
        if name == "user_by_token":
            lose_revocations(b)
            await a.admin.new_user_token(user_id)  # replaced after the check read the old token
            b.app[LISTENER]._hub.sweep()  # the reconnected listener's sweep: the session is not in the hub yet
        return row

    store.fetchrow = checked_while_swept
    late = await b.connect(token)
    assert await closed(late) == 4502
    await hub_drops(b, 0)
