"""The sipgate actions of a session (CONTRACT §5.1) against the real app and the fake sipgate: me,
directory.search (accents, e-mail, extension, number digits; presence from the calls every process records),
call.dial (own devices only, offline devices said so), call.transfer and call.hangup (the user's own calls
only), and every error code: sipgate_not_connected, sipgate_refused, sipgate_unavailable, not_your_call,
bad_message. Ten searches at once are one /users request; a slow sipgate holds up no ping."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.test_fanout import hangup, new_call
from tests.fakes.sipgate import PAT, PAT_ID

ME = {"id": "w0", "name": "Ada Lovelace", "email": "ada.lovelace@example.org", "admin": True,
      "numbers": ["+4921155500100"], "devices": [{"id": "e0", "alias": "VoIP-Telefon von Ada", "type": "REGISTER",
                                                 "online": True}]}


async def connected(h, users=("w0", "w1", "w2"), connect=True):
    """An account (connected to the fake with a personal access token and its webhooks pointed here, unless not),
    and a session per user."""
    acc = await h.account()
    if connect:
        await h.admin.connect_sipgate(acc["account_id"], token_id=PAT_ID, token=PAT)
        await h.admin.configure_webhooks(acc["account_id"])  # the fake posts a call's pushes to this app
    sessions = {u: await h.connect(await h.user(acc["account_id"], u)) for u in users}
    return acc, sessions


@pytest.fixture
async def setup(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url, sipgate_timeout_s=1.5)
    acc, sessions = await connected(h)
    return h, acc, sessions


def answer(call_id: str, by: str) -> str:
    return f"event=answer&callId={call_id}&user=U&userId={by}&fullUserId=1234567{by}&direction=in"


# -- me ----------------------------------------------------------------------------------------------------


async def test_me_is_the_users_live_data_with_the_clients_id(setup):
    _, _, s = setup
    assert await s["w0"].request({"type": "me", "id": "m1"}) == {"type": "me", "id": "m1", "user": ME,
                                                                  "crm_user": None}
    grace = await s["w1"].request({"type": "me", "id": 7})
    assert grace["user"]["name"] == "Grace Hopper" and grace["user"]["admin"] is False
    assert [d["id"] for d in grace["user"]["devices"]] == ["e1", "y1"]
    assert grace["user"]["devices"][1] == {"id": "y1", "alias": "Handy von Grace", "type": "MOBILE", "online": False}


# -- directory.search --------------------------------------------------------------------------------------


async def search(client, q, **extra):
    reply = await client.request({"type": "directory.search", "q": q, "id": f"s-{q}", **extra})
    assert reply["type"] == "directory.result" and reply["q"] == q, reply
    return reply["users"]


async def test_search_finds_by_name_email_extension_or_number(setup):
    _, _, s = setup
    for q, first in [
        ("muller", "w2"), ("MÜLLER", "w2"), ("jurgen", "w2"), ("mueller", "w2"),  # accents and case ignored
        ("grace.hopper@example", "w1"), ("ada.lovelace@", "w0"),  # e-mail
        ("11", "w1"), ("12", "w2"),  # extension
        ("4921155500102", "w2"), ("0211 555 00101", "w1"), ("+49 211 55500100", "w0"),  # number digits
    ]:
        users = await search(s["w0"], q)
        assert users and users[0]["id"] == first, (q, users)


async def test_search_result_shape_limit_and_miss(setup):
    _, _, s = setup
    assert await search(s["w1"], "müller") == [{"id": "w2", "name": "Jürgen Müller",
                                                "email": "juergen.mueller@example.org", "extension": "12",
                                                "numbers": ["+4921155500102"], "presence": "available"}]
    assert len(await search(s["w1"], "example.org", limit=2)) == 2
    assert await search(s["w1"], "nobody-like-this") == []


async def test_presence_from_calls_posted_to_another_process(make_harness, sipgate_fake):
    first = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    second = await make_harness(sipgate_api_url=sipgate_fake.api_url)  # same database, another app
    acc, _ = await connected(first, users=("w1", "w2"))
    reader = await second.connect(await second.user(acc["account_id"], "w0"))
    await first.post(acc["url"], new_call("CALLRING1", users=("w1",)))
    await first.post(acc["url"], new_call("CALLTALK1", users=("w2",)))
    await first.post(acc["url"], answer("CALLTALK1", "w2"))
    presence = {u["id"]: u["presence"] for u in await search(reader, "")}
    assert presence == {"w0": "available", "w1": "ringing", "w2": "in_call"}

    await first.post(acc["url"], hangup("CALLRING1", "cancel"))
    await first.post(acc["url"], hangup("CALLTALK1"))
    presence = {u["id"]: u["presence"] for u in await search(reader, "")}
    assert presence == {"w0": "available", "w1": "available", "w2": "available"}


async def test_a_call_answered_by_a_colleague_no_longer_rings_for_the_others(setup):
    h, acc, s = setup
    await h.post(acc["url"], new_call("CALLGRP1", users=("w0", "w1")))
    assert {u["id"]: u["presence"] for u in await search(s["w2"], "")} == {
        "w0": "ringing", "w1": "ringing", "w2": "available"}
    await h.post(acc["url"], answer("CALLGRP1", "w1"))
    assert {u["id"]: u["presence"] for u in await search(s["w2"], "")} == {
        "w0": "available", "w1": "in_call", "w2": "available"}


async def test_ten_searches_at_once_are_one_users_request(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    sipgate_fake.state.delay = 0.2  # all ten arrive while the first fetch runs
    _, sessions = await connected(h, users=tuple(f"w{i}" for i in range(10)))
    assert sipgate_fake.state.count("GET", "/users") == 1  # the connect's own check
    results = await asyncio.gather(*(search(c, "grace") for c in sessions.values()))
    assert all([u["id"] for u in users] == ["w1"] for users in results)
    assert sipgate_fake.state.count("GET", "/users") == 2  # one more, for all ten


# -- call.dial ---------------------------------------------------------------------------------------------


async def test_dial_a_number_read_in_the_accounts_region_from_the_default_device(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.manual = True  # the call's pushes are not the point here
    reply = await s["w0"].request({"type": "call.dial", "to": "0211 / 555 001-01", "id": "d1"})
    assert reply == {"type": "result", "id": "d1", "ok": True, "session_id": reply["session_id"],
                     "device": {"id": "e0", "online": True}}
    assert reply["session_id"] in sipgate_fake.state.sessions
    assert sipgate_fake.state.placed == [{"caller": "e0", "callee": "+4921155500101"}]


async def test_dial_a_colleague_on_their_number_or_extension_from_own_devices(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.manual = True
    reply = await s["w1"].request({"type": "call.dial", "to": {"user": "w2"}, "device": "e1", "id": 2})
    assert reply["ok"] is True and reply["device"] == {"id": "e1", "online": True}
    assert sipgate_fake.state.placed == [{"caller": "e1", "callee": "+4921155500102"}]
    by_extension = await s["w1"].request({"type": "call.dial", "to": "10", "id": 3})  # Ada's extension, as typed
    assert by_extension["ok"] is True and sipgate_fake.state.placed[-1] == {"caller": "e1", "callee": "10"}


async def test_dial_from_an_offline_device_says_so(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.set_online("e0", False)
    reply = await s["w0"].request({"type": "call.dial", "to": {"user": "w1"}, "id": 3})
    assert reply["ok"] is True and reply["device"] == {"id": "e0", "online": False}  # sipgate: 200 all the same
    mobile = await s["w1"].request({"type": "call.dial", "to": "+4930123456789", "device": "y1", "id": 4})
    assert mobile["device"] == {"id": "y1", "online": False}


async def test_dial_from_a_device_that_is_not_the_users_is_refused(setup, sipgate_fake):
    _, _, s = setup
    reply = await s["w0"].request({"type": "call.dial", "to": "+4930123456789", "device": "e1", "id": 5})
    assert reply["type"] == "error" and reply["code"] == "bad_message" and reply["id"] == 5
    assert "e1" in reply["message"] and "not one of your devices" in reply["message"]
    assert sipgate_fake.state.placed == []  # sipgate was never asked


async def test_malformed_or_impossible_requests_are_bad_message(setup, sipgate_fake):
    _, _, s = setup
    for message, says in [
        ({"type": "call.dial", "to": {"user": "w9"}}, "no sipgate user 'w9'"),
        ({"type": "call.dial", "to": "hello"}, "not a phone number"),
        ({"type": "call.dial", "to": "99"}, "not a phone number"),  # no extension of the account
        ({"type": "call.dial"}, "call.dial: to: Field required"),
        ({"type": "call.dial", "to": 4930123456}, 'to: a number (a string) or {"user": ID}'),
        ({"type": "call.dial", "to": {"usr": "w1"}}, 'to: a number (a string) or {"user": ID}'),
        ({"type": "directory.search", "q": "a", "limit": 0}, "limit"),
        ({"type": "directory.search", "q": "a", "limit": 51}, "limit"),
        ({"type": "call.transfer", "to": "+4930123456789"}, "call_id"),
        ({"type": "call.hangup", "call_id": ""}, "call_id"),
    ]:
        reply = await s["w0"].request({**message, "id": "b"})
        assert reply["type"] == "error" and reply["code"] == "bad_message" and reply["id"] == "b", reply
        assert says in reply["message"], (says, reply)
    assert sipgate_fake.state.placed == []
    assert (await s["w0"].request({"type": "ping", "id": "p"}))["type"] == "pong"  # the session stays open


# -- call.transfer and call.hangup ---------------------------------------------------------------------------


async def test_transfer_or_hangup_of_someone_elses_call_is_not_your_call(setup, sipgate_fake):
    h, acc, s = setup
    await h.post(acc["url"], new_call("CALLW1", users=("w1", "w2")))
    await h.post(acc["url"], answer("CALLW1", "w1"))
    for msg in ({"type": "call.transfer", "call_id": "CALLW1", "to": {"user": "w0"}},
                {"type": "call.hangup", "call_id": "CALLW1"}):
        for who in ("w0", "w2"):  # w2's phone rang for it, but w1 answered
            reply = await s[who].request({**msg, "id": "n"})
            assert reply["type"] == "error" and reply["code"] == "not_your_call", reply
    unknown = await s["w0"].request({"type": "call.hangup", "call_id": "NO-SUCH-CALL", "id": "u"})
    assert unknown["code"] == "not_your_call"
    assert sipgate_fake.state.transfers == [] and sipgate_fake.state.hangups == []


async def test_a_ringing_call_cannot_be_transferred_and_says_why(setup, sipgate_fake):
    h, acc, s = setup
    await h.post(acc["url"], new_call("CALLRING2", users=("w0",)))
    reply = await s["w0"].request({"type": "call.transfer", "call_id": "CALLRING2", "to": {"user": "w1"}, "id": 1})
    assert reply["code"] == "not_your_call" and "still ringing" in reply["message"]
    assert "established" in reply["message"]
    assert sipgate_fake.state.transfers == []


async def test_hangup_of_a_call_ringing_for_the_user(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.manual = True
    placed = await s["w1"].request({"type": "call.dial", "to": {"user": "w0"}, "id": 1})
    in_leg = sipgate_fake.state.sessions[placed["session_id"]][1].call_id
    sipgate_fake.release(2)  # both newCalls
    await s["w0"].expect("call.ringing", call_id=in_leg)
    assert await s["w0"].request({"type": "call.hangup", "call_id": in_leg, "id": 2}) == {
        "type": "result", "ok": True, "id": 2}
    assert sipgate_fake.state.hangups == [in_leg]


async def test_transfer_and_hangup_of_the_users_own_calls(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.manual = True
    placed = await s["w0"].request({"type": "call.dial", "to": {"user": "w1"}, "id": 2})
    out_leg = placed["session_id"]
    in_leg = sipgate_fake.state.sessions[out_leg][1].call_id
    sipgate_fake.release(4)  # both newCalls, both answers
    await s["w1"].expect("call.answered", call_id=in_leg)
    await s["w0"].expect("call.answered", call_id=out_leg)
    reply = await s["w1"].request({"type": "call.transfer", "call_id": in_leg, "to": "0211 55500102",
                                   "attended": False, "id": 3})
    assert reply == {"type": "result", "ok": True, "id": 3}
    assert sipgate_fake.state.transfers == [(in_leg, {"attended": False, "phoneNumber": "+4921155500102"})]
    assert (await s["w0"].request({"type": "call.hangup", "call_id": out_leg, "id": 4})) == {
        "type": "result", "ok": True, "id": 4}  # the caller's own outgoing leg
    assert sipgate_fake.state.hangups == [out_leg]


# -- sipgate's errors -----------------------------------------------------------------------------------------


async def test_an_account_not_connected_answers_sipgate_not_connected(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    _, s = await connected(h, users=("w0",), connect=False)
    for msg in ({"type": "me"}, {"type": "directory.search", "q": "a"}, {"type": "call.dial", "to": "+4930123456"}):
        reply = await s["w0"].request({**msg, "id": "x"})
        assert reply["type"] == "error" and reply["code"] == "sipgate_not_connected" and reply["id"] == "x"
    assert sipgate_fake.state.requests == []


async def test_sipgate_refusing_a_dial_is_sipgate_refused_with_status_and_message(setup, sipgate_fake):
    _, _, s = setup
    for status, message in [(403, "User is not allowed to initiate call with given parameters"),
                            (400, "Invalid callee"), (402, "Insufficient funds")]:
        sipgate_fake.state.fail_at("POST", "/sessions/calls", status, message)
        reply = await s["w0"].request({"type": "call.dial", "to": "+4930123456789", "id": "r"})
        assert reply == {"type": "error", "id": "r", "code": "sipgate_refused", "status": status, "message": message}


async def test_a_credential_sipgate_rejects_shows_the_account_disconnected(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.pats.clear()  # the token was revoked in sipgate
    reply = await s["w0"].request({"type": "directory.search", "q": "grace", "id": 1})
    assert reply["type"] == "error" and reply["code"] == "sipgate_not_connected" and reply["id"] == 1
    asked = len(sipgate_fake.state.requests)
    assert (await s["w1"].request({"type": "me", "id": 2}))["code"] == "sipgate_not_connected"
    assert len(sipgate_fake.state.requests) == asked  # not asked again until an admin connects it anew


async def test_sipgate_failing_or_slow_is_sipgate_unavailable(setup, sipgate_fake):
    _, _, s = setup
    sipgate_fake.state.fail_next(3, 503)  # every attempt of the read
    reply = await s["w0"].request({"type": "me", "id": 1})
    assert reply["type"] == "error" and reply["code"] == "sipgate_unavailable" and reply["id"] == 1

    sipgate_fake.state.fail_at("POST", "/sessions/calls", 500, "boom")  # a write is not repeated: it may have rung
    dial = await s["w0"].request({"type": "call.dial", "to": "+4930123456789", "id": 2})
    assert dial["code"] == "sipgate_unavailable" and sipgate_fake.state.count("POST", "/sessions/calls") == 1

    sipgate_fake.state.delay = 2.0  # past the 1.5 s timeout of this app
    slow = await s["w1"].request({"type": "call.dial", "to": "+4930123456789", "id": 3}, timeout=10)
    assert slow["code"] == "sipgate_unavailable" and "did not answer" in slow["message"]


async def test_a_slow_sipgate_holds_up_no_other_message_of_the_session(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    _, s = await connected(h, users=("w0",))
    sipgate_fake.state.delay = 0.3
    await s["w0"].send({"type": "me", "id": "slow"})
    await s["w0"].send({"type": "ping", "id": "p"})
    assert await s["w0"].next() == {"type": "pong", "id": "p"}  # before the slow answer
    assert (await s["w0"].next())["id"] == "slow"


async def test_past_the_backlog_a_sessions_actions_are_answered_busy(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    _, s = await connected(h, users=("w0",))
    sipgate_fake.state.delay = 0.2
    for i in range(10):
        await s["w0"].send({"type": "me", "id": i})
    replies = {r["id"]: r for r in [await s["w0"].next(timeout=10) for _ in range(10)]}
    assert [replies[i]["type"] for i in range(10)] == ["me"] * 8 + ["error"] * 2
    assert replies[8]["code"] == replies[9]["code"] == "busy"
