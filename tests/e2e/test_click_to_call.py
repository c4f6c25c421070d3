"""sipgate on both sides, end to end (issue 10 points 4 and 6): an admin signs in with sipgate (which makes and
connects the account), sipgate's webhooks are pointed at the app, the users sign their extensions in with
sipgate; a user finds a colleague with ``directory.search`` and calls them with
``call.dial``; the fake places the call and posts its pushes; both users' sessions get the pops; the colleague
answers and hands the call on with ``call.transfer``; ``call.ended`` arrives. And what the database holds after
such a sign-in, search and dial: no name, e-mail or number of the sipgate users (CONTRACT §6)."""

from __future__ import annotations

import pytest

from tests.db import assert_absent, dump_tables
from tests.sipgate_kit import REDIRECT, Browser, sipgate_settings


@pytest.fixture
async def office(make_harness, sipgate_fake):
    """The app with an OAuth client at the fake; Ada, sipgate admin, signs in to the portal (the account is made
    and connected with her tokens), sipgate's webhooks are pointed at the app, and Ada, Grace and Jürgen sign
    their extensions in with sipgate: a session for each with the token each got."""
    h = await make_harness(**sipgate_settings(sipgate_fake))
    browsers = [Browser() for _ in range(4)]
    try:
        assert (await browsers[0].sign_in(h.base, "portal", "w0")).location == "/portal"
        aid = await h.pool.fetchval("SELECT id FROM accounts WHERE sipgate_account_id = $1", sipgate_fake.state.master_sip_id)
        configured = await h.admin.configure_webhooks(aid)
        assert configured["after"]["incomingUrl"].startswith(f"{h.base}/webhooks/sipgate/")
        sessions = []
        for browser, user in zip(browsers[1:], ("w0", "w1", "w2"), strict=True):
            done = await browser.sign_in(h.base, "extension", user, REDIRECT)
            assert done.location.startswith(REDIRECT + "#token="), done.text
            sessions.append(await h.connect(done.location.split("#token=", 1)[1]))
    finally:
        for browser in browsers:
            await browser.close()
    sipgate_fake.state.manual = True  # the test lets each push go
    return h, aid, sessions


async def presence(client, msg_id) -> dict[str, str]:
    reply = await client.request({"type": "directory.search", "q": "", "id": msg_id})
    return {u["id"]: u["presence"] for u in reply["users"]}


async def test_search_dial_answer_transfer_end(office, sipgate_fake):
    _, _, (ada, grace, juergen) = office
    found = await ada.request({"type": "directory.search", "q": "grace", "id": "find"})
    assert [u["id"] for u in found["users"]] == ["w1"] and found["users"][0]["presence"] == "available"

    dialled = await ada.request({"type": "call.dial", "to": {"user": found["users"][0]["id"]}, "id": "dial"})
    assert dialled["ok"] is True and dialled["device"] == {"id": "e0", "online": True}
    out_leg = dialled["session_id"]
    in_leg = sipgate_fake.state.sessions[out_leg][1].call_id
    sipgate_fake.release(2)  # sipgate's newCall of each leg
    ringing_out = await ada.expect("call.ringing", call_id=out_leg)
    ringing_in = await grace.expect("call.ringing", call_id=in_leg)
    assert (ringing_out["direction"], ringing_out["number"], ringing_out["users"]) == ("out", "+4921155500101",
                                                                                       ["w0"])
    assert (ringing_in["direction"], ringing_in["number"], ringing_in["users"]) == ("in", "+4921155500100", ["w1"])
    assert await presence(juergen, "p1") == {"w0": "in_call", "w1": "ringing", "w2": "available"}

    sipgate_fake.release(2)  # Grace answers
    assert (await grace.expect("call.answered", call_id=in_leg))["by"] == "w1"
    await ada.expect("call.answered", call_id=out_leg)
    assert await presence(juergen, "p2") == {"w0": "in_call", "w1": "in_call", "w2": "available"}

    handed = await grace.request({"type": "call.transfer", "call_id": in_leg, "to": {"user": "w2"}, "id": "xfer"})
    assert handed == {"type": "result", "ok": True, "id": "xfer"}
    assert sipgate_fake.state.transfers == [(in_leg, {"attended": False, "phoneNumber": "+4921155500102"})]
    sipgate_fake.release(10)
    await sipgate_fake.settled()
    await grace.expect("call.ended", call_id=in_leg)
    forwarded = await juergen.expect("call.ringing")
    assert forwarded["orig_call_id"] == in_leg and forwarded["users"] == ["w2"]
    await juergen.expect("call.ended", call_id=forwarded["call_id"])
    await ada.expect("call.ended", call_id=out_leg)
    assert all(status == 200 for _, _, status in sipgate_fake.state.pushed)
    assert await presence(juergen, "p3") == {"w0": "available", "w1": "available", "w2": "available"}


async def test_no_name_email_or_user_number_is_stored(office, sipgate_fake, database_url):
    _, _, (ada, grace, _) = office
    me = await ada.request({"type": "me", "id": 1})
    assert me["user"]["name"] == "Ada Lovelace"  # the data was there to leak
    assert len((await grace.request({"type": "directory.search", "q": "", "id": 2}))["users"]) == 3
    dialled = await ada.request({"type": "call.dial", "to": {"user": "w1"}, "id": 3})
    assert dialled["ok"] is True
    names = [*sipgate_fake.state.access_tokens, *sipgate_fake.state.refresh_tokens]
    for u in sipgate_fake.state.users:
        names += [u["firstname"], u["lastname"], u["email"], u["email"].split("@")[0]]
    names += [d["alias"] for ds in sipgate_fake.state.devices.values() for d in ds]
    numbers = {uid: [n["number"], n["number"][2:]] for uid, ns in sipgate_fake.state.numbers.items() for n in ns}
    assert_absent(await dump_tables(database_url), *names, *[n for ns in numbers.values() for n in ns])

    # the call's pushes (their user[] carries names) are stored as ids; of numbers only the call's own two
    # (from, to: what its pop and record need, CONTRACT §6), never a number of a user not in the call
    sipgate_fake.release(100)
    await sipgate_fake.settled()
    await grace.expect("call.ended")
    assert_absent(await dump_tables(database_url), *names, *numbers["w2"])
