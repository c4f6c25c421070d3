"""Bounded inputs on GET /ws: a `resume` that is no seq is refused before the session joins the hub, any failure
after it joined takes it out again, and call notes stop at what the CRMs accept (CONTRACT §5)."""

from __future__ import annotations

import pytest

from hejcti import protocol
from hejcti.app import HUB, WS
from tests.e2e.test_fanout import new_call
from tests.e2e.test_revocation import hub_drops
from tests.e2e.test_sessions import closed_with, raw


@pytest.mark.parametrize("resume", [2**63, -1, "5", 1.5, True, [1]])
async def test_a_resume_that_is_no_seq_closes_4501_and_leaves_no_session(harness, resume):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w0")
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": token, "resume": resume})
    assert await closed_with(ws) == 4501
    await hub_drops(harness, 0, timeout=3)
    ok = await harness.connect(token, resume=2**63 - 1)  # the largest seq is a seq
    assert await ok.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


async def test_a_failing_replay_takes_the_session_out_of_the_hub(harness):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w0")

    async def failing_replay(session, after):
        assert len(harness.app[HUB]) == 1  # it fails after the session joined
        raise RuntimeError("injected")

    harness.app[WS].replay = failing_replay
    ws = await raw(harness)
    await ws.send_json({"type": "auth", "token": token, "resume": 0})
    assert await closed_with(ws) == 1011  # an internal error: the client may reconnect
    await hub_drops(harness, 0, timeout=3)


async def call_with_session(h):
    acc = await h.account(crm="hubspot")  # logs calls: notes are kept for the record
    client = await h.connect(await h.user(acc["account_id"], "w0"))
    await h.post(acc["url"], new_call("CNOTE1"))
    await client.expect("call.ringing", call_id="CNOTE1")
    return acc, client


def note(text: str, msg_id: str) -> dict:
    return {"type": "call.note", "call_id": "CNOTE1", "text": text, "id": msg_id}


async def test_one_note_past_the_cap_is_note_too_long(harness):
    _, client = await call_with_session(harness)
    reply = await client.request(note("n" * (protocol.NOTE_MAX_CHARS + 1), "big"))
    assert reply["type"] == "error" and reply["code"] == "note_too_long" and reply["id"] == "big"
    assert await client.request(note("n" * protocol.NOTE_MAX_CHARS, "max")) == {"type": "result", "ok": True,
                                                                                 "id": "max"}


async def test_the_notes_of_a_call_stop_at_the_cap_together(harness):
    acc, client = await call_with_session(harness)
    cap, each = protocol.NOTES_MAX_CHARS, protocol.NOTE_MAX_CHARS
    sizes, used = [], 0
    while used < cap:  # full notes, newlines between them, up to exactly the cap
        size = min(each, cap - used - (1 if used else 0))
        sizes.append(size)
        used += size + (1 if len(sizes) > 1 else 0)
    for i, size in enumerate(sizes):
        assert (await client.request(note("x" * size, f"n{i}")))["type"] == "result"
    reply = await client.request(note("y", "over"))
    assert reply["type"] == "error" and reply["code"] == "note_too_long" and reply["id"] == "over"
    stored = await harness.pool.fetchval("SELECT length(note) FROM call_records WHERE account_id = $1",
                                         acc["account_id"])
    assert stored == cap
    assert await client.request({"type": "ping", "id": "still"}) == {"type": "pong", "id": "still"}


async def test_notes_already_in_the_crm_count_toward_the_cap(harness):
    """Once written, a note's text leaves the server (CONTRACT §6) but not the CRM record: it still counts."""
    acc, client = await call_with_session(harness)
    assert (await client.request(note("first", "n1")))["type"] == "result"
    cap = protocol.NOTES_MAX_CHARS
    await harness.pool.execute("UPDATE call_records SET state = 'done', note = NULL, note_sent = $2"
                               " WHERE account_id = $1", acc["account_id"], cap - 10)
    assert (await client.request(note("x" * 9, "fits")))["type"] == "result"  # a newline and nine: the cap
    reply = await client.request(note("z", "over"))
    assert reply["code"] == "note_too_long" and "0 are left" in reply["message"]
