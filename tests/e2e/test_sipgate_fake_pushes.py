"""The fake sipgate as a whole, against the real app: connected and pointed at the app with the admin
functions, a click-to-call from the client makes the fake post the call's pushes (paced by the test) to the
URLs sipgate's settings name, and both users' sessions see the call; a transfer and an offline device too."""

from __future__ import annotations

import aiohttp
import pytest

from hejcti.sipgate import Credential, SipgateClient
from tests.fakes.sipgate import PAT, PAT_ID


@pytest.fixture
async def setup(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    acc = await h.account()
    aid = acc["account_id"]
    await h.admin.connect_sipgate(aid, token_id=PAT_ID, token=PAT)
    configured = await h.admin.configure_webhooks(aid)
    assert configured["after"]["incomingUrl"] == acc["url"] == sipgate_fake.state.settings["outgoingUrl"]
    sessions = {u: await h.connect(await h.user(aid, u)) for u in ("w0", "w1", "w2")}
    async with aiohttp.ClientSession() as http:
        yield sipgate_fake, SipgateClient(http, Credential.pat(PAT_ID, PAT), base_url=sipgate_fake.api_url), sessions


async def test_click_to_call_to_a_colleague_pops_for_both_then_transfer_and_end(setup):
    sipgate_fake, client, s = setup
    sipgate_fake.state.manual = True
    out_leg = await client.dial("e0", "+4921155500101")  # Ada calls Grace
    in_leg = sipgate_fake.state.sessions[out_leg][1].call_id
    sipgate_fake.release(2)  # the two newCall pushes
    ringing_out = await s["w0"].expect("call.ringing", call_id=out_leg)
    ringing_in = await s["w1"].expect("call.ringing", call_id=in_leg)
    assert ringing_out["direction"] == "out" and ringing_out["number"] == "+4921155500101"
    assert ringing_in["direction"] == "in" and ringing_in["users"] == ["w1"]
    sipgate_fake.release(2)  # both answers
    assert (await s["w1"].expect("call.answered", call_id=in_leg))["by"] == "w1"
    await s["w0"].expect("call.answered", call_id=out_leg)

    await client.transfer(in_leg, "+4921155500102")  # Grace hands the call to Jürgen
    sipgate_fake.release(10)
    await sipgate_fake.settled()
    await s["w1"].expect("call.ended", call_id=in_leg)
    forwarded = await s["w2"].expect("call.ringing")
    assert forwarded["orig_call_id"] == in_leg and forwarded["users"] == ["w2"]
    await s["w2"].expect("call.ended", call_id=forwarded["call_id"])
    await s["w0"].expect("call.ended", call_id=out_leg)
    assert sipgate_fake.state.transfers == [(in_leg, {"attended": False, "phoneNumber": "+4921155500102"})]
    assert all(status == 200 for _, _, status in sipgate_fake.state.pushed)


async def test_hangup_ends_every_leg(setup):
    sipgate_fake, client, s = setup
    sipgate_fake.state.manual = True
    out_leg = await client.dial("e0", "11")  # Grace by her extension
    sipgate_fake.release(2)
    await s["w1"].expect("call.ringing")
    await client.hangup(out_leg)
    sipgate_fake.release(10)
    await sipgate_fake.settled()
    assert (await s["w0"].expect("call.ended", call_id=out_leg))["cause"] == "cancel"
    await s["w1"].expect("call.ended")


async def test_an_offline_device_gets_200_and_no_call(setup):
    sipgate_fake, client, s = setup
    sipgate_fake.state.set_online("e0", False)
    assert await client.dial("e0", "+4921155500101")  # sipgate says 200 all the same
    await sipgate_fake.settled()
    assert sipgate_fake.state.pushed == [] and s["w1"].of("call.ringing") == []
