"""The CRM side of a call, end to end against a fake HubSpot on a real local server: credentials from the
session, expiry and renewal, the lookup deadline, one request for many sessions, call records and notes."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.test_fanout import hangup, new_call
from tests.fakes.base import Running
from tests.fakes.hubspot import State, make_app

CALLER = "4915791234567"


@pytest.fixture
async def crm():
    state = State()
    state.add_contact("51", "Julia", "Schmidt", phone="0157 91234567", owner="83210754", company_id="9001",
                      company="Acme GmbH")
    async with Running(make_app(state)) as base:
        state.base = base
        yield state


async def hubspot_account(h, crm, users=("w0",), **kw):
    acc = await h.account(crm="hubspot", crm_instance=crm.base, **kw)
    clients = {}
    for u in users:
        clients[u] = await h.connect(await h.user(acc["account_id"], u, crm_user="83210754" if u == "w0" else None))
    return acc, clients


def answer(cid: str, by: str = "w0") -> str:
    return f"event=answer&callId={cid}&user=A&userId={by}&from={CALLER}&to=492111234567&direction=in"


async def creds(client, token="good-token"):
    assert (await client.request({"type": "crm.credentials", "access_token": token, "id": "c"}))["ok"] is True


async def test_pop_record_logged_and_note(harness, crm):
    acc, c = await hubspot_account(harness, crm)
    rep = c["w0"]
    await creds(rep)
    await harness.post(acc["url"], new_call("CHS1"))
    ringing = await rep.expect("call.ringing")
    assert ringing["resolved"] is True
    assert ringing["contacts"] == [{"crm": "hubspot", "kind": "contact", "id": "51", "name": "Julia Schmidt",
                                    "company": "Acme GmbH",
                                    "url": "https://app-eu1.hubspot.com/contacts/62515/record/0-1/51"}]
    await harness.post(acc["url"], answer("CHS1"))
    await asyncio.sleep(1.1)
    await harness.post(acc["url"], hangup("CHS1"))
    logged = await rep.expect("call.logged", timeout=15)
    assert logged["crm"] == "hubspot" and logged["call_id"] == "CHS1"
    (call,) = crm.created
    assert logged["record_id"] == call["id"]
    assert logged["url"] == f"https://app-eu1.hubspot.com/contacts/62515/record/0-48/{call['id']}"
    p = call["properties"]
    assert p["hs_call_direction"] == "INBOUND" and p["hs_call_status"] == "COMPLETED"
    assert int(p["hs_call_duration"]) >= 1000 and p["hubspot_owner_id"] == "83210754"
    assert [a["to"]["id"] for a in call["associations"]] == ["51", "9001"]
    assert (await rep.request({"type": "call.note", "call_id": "CHS1", "text": "Wants the offer.", "id": "n"})) == \
        {"type": "result", "ok": True, "id": "n"}
    for _ in range(100):
        if crm.notes:
            break
        await asyncio.sleep(0.1)
    assert "Wants the offer." in crm.calls[call["id"]]["properties"]["hs_call_body"]
    assert len(crm.created) == 1  # written once


async def test_note_during_the_call_goes_into_the_record(harness, crm):
    acc, c = await hubspot_account(harness, crm)
    await creds(c["w0"])
    await harness.post(acc["url"], new_call("CHS2"))
    await c["w0"].expect("call.ringing")
    assert (await c["w0"].request({"type": "call.note", "call_id": "CHS2", "text": "Early note", "id": 1}))["ok"]
    assert (await c["w0"].request({"type": "call.note", "call_id": "NOSUCH", "text": "x", "id": 2}))["code"] == \
        "not_found"
    await harness.post(acc["url"], hangup("CHS2", "cancel"))
    await c["w0"].expect("call.logged", timeout=15)
    (call,) = crm.created
    assert "Early note" in call["properties"]["hs_call_body"]
    assert call["properties"]["hs_call_status"] == "NO_ANSWER"


async def test_missing_credentials_pop_unresolved_then_resolved(harness, crm):
    acc, c = await hubspot_account(harness, crm)
    rep = c["w0"]
    await harness.post(acc["url"], new_call("CHS3"))
    ringing = await rep.expect("call.ringing")
    assert ringing["resolved"] is False and ringing["contacts"] == []
    assert (await rep.expect("crm.credentials_required")) == {"type": "crm.credentials_required", "reason": "missing"}
    await creds(rep)
    resolved = await rep.expect("call.resolved")
    assert resolved["call_id"] == "CHS3" and resolved["contacts"][0]["id"] == "51"


async def test_expired_token_is_renewed_once(make_harness, crm):
    h = await make_harness(lookup_deadline_ms=300)
    acc, c = await hubspot_account(h, crm)
    rep = c["w0"]
    await creds(rep, "stale-token")
    await h.post(acc["url"], new_call("CHS4"))
    assert (await rep.expect("crm.credentials_required")) == {"type": "crm.credentials_required", "reason": "expired"}
    await creds(rep)
    first = await rep.expect("call.ringing")
    contacts = first["contacts"] if first["resolved"] else (await rep.expect("call.resolved"))["contacts"]
    assert contacts[0]["id"] == "51"


async def test_crm_slower_than_the_deadline(make_harness, crm):
    h = await make_harness(lookup_deadline_ms=200)
    acc, c = await hubspot_account(h, crm)
    await creds(c["w0"])
    crm.delay = 1.0
    await h.post(acc["url"], new_call("CHS5"))
    ringing = await c["w0"].expect("call.ringing")
    assert ringing["resolved"] is False and ringing["contacts"] == []
    resolved = await c["w0"].expect("call.resolved")
    assert resolved["contacts"][0]["name"] == "Julia Schmidt"


async def test_crm_that_hangs_pops_at_the_deadline(make_harness, crm):
    h = await make_harness(lookup_deadline_ms=200)
    acc, c = await hubspot_account(h, crm)
    await creds(c["w0"])
    crm.delay = 3600
    await h.post(acc["url"], new_call("CHS6"))
    ringing = await c["w0"].expect("call.ringing", timeout=5)
    assert ringing["resolved"] is False
    await h.post(acc["url"], hangup("CHS6", "cancel"))  # the rest of the call is not held up by the CRM
    assert (await c["w0"].expect("call.ended"))["cause"] == "cancel"


async def test_ten_sessions_cost_one_request(harness, crm):
    users = tuple(f"w{i}" for i in range(10))
    acc, c = await hubspot_account(harness, crm, users=users)
    for client in c.values():
        await creds(client)
    await harness.post(acc["url"], new_call("CHS7", users=users))
    for u, client in c.items():
        ringing = await client.expect("call.ringing")
        assert ringing["contacts"][0]["id"] == "51", u
    await harness.post(acc["url"], new_call("CHS8", users=users))
    for client in c.values():
        await client.expect("call.ringing", call_id="CHS8")
    assert crm.count("POST", "/contacts/search") == 1  # the second call was served from the cache


async def test_record_waits_for_credentials(harness, crm):
    acc, c = await hubspot_account(harness, crm)
    await harness.post(acc["url"], new_call("CHS9"))
    await harness.post(acc["url"], hangup("CHS9", "cancel"))
    await c["w0"].expect("call.ended")
    await asyncio.sleep(4)
    assert crm.created == []  # nobody has given a token: the job waits
    assert await harness.pool.fetchval("SELECT state FROM call_records") == "ready"
    await creds(c["w0"])
    await c["w0"].expect("call.logged", timeout=15)
    assert len(crm.created) == 1


async def test_rate_limit_and_5xx_on_record_are_retried(harness, crm):
    acc, c = await hubspot_account(harness, crm)
    await creds(c["w0"])
    await harness.post(acc["url"], new_call("CHS10"))
    await c["w0"].expect("call.ringing")
    crm.rate_limit_next(1, retry_after=0)
    crm.fail_next(1, 503)
    await harness.post(acc["url"], hangup("CHS10", "cancel"))
    await c["w0"].expect("call.logged", timeout=20)
    assert len(crm.created) == 1


async def test_forwarded_legs_make_one_record(harness, crm):
    """Leg 1 rings w0 and is forwarded; leg 2 (same xcid) is answered by w1: one record, w1's, both legs."""
    acc, c = await hubspot_account(harness, crm, users=("w0", "w1"))
    await harness.user(acc["account_id"], "w2")
    await harness.admin.map_user((await harness.admin.list_users(acc["account_id"]))["users"][1]["user_id"], "555")
    for client in c.values():
        await creds(client)
    leg1 = (f"event=newCall&direction=in&from={CALLER}&to=492111234567&callId=LEG1&origCallId=LEG1"
            "&userId%5B%5D=w0&xcid=sharedxcid0001")
    leg2 = (f"event=newCall&direction=in&from={CALLER}&to=492111234567&callId=LEG2&origCallId=LEG1"
            "&userId%5B%5D=w1&xcid=sharedxcid0001&diversion=492111234567")
    await harness.post(acc["url"], leg1)
    await c["w0"].expect("call.ringing", call_id="LEG1")
    await harness.post(acc["url"], "event=hangup&callId=LEG1&cause=forwarded&direction=in&xcid=sharedxcid0001")
    await harness.post(acc["url"], leg2)
    await c["w1"].expect("call.ringing", call_id="LEG2")
    await harness.post(acc["url"], answer("LEG2", by="w1"))
    await asyncio.sleep(1.1)
    await harness.post(acc["url"], "event=hangup&callId=LEG2&cause=normalClearing&direction=in&xcid=sharedxcid0001")
    logged = await c["w1"].expect("call.logged", timeout=15)
    await c["w0"].expect("call.logged", timeout=5)  # everyone the call rang for hears of it
    assert logged["call_id"] == "LEG1"
    (call,) = crm.created
    p = call["properties"]
    assert p["hs_call_status"] == "COMPLETED" and int(p["hs_call_duration"]) >= 1000
    assert p["hubspot_owner_id"] == "555"  # the answering user's CRM user
    row = await harness.pool.fetchrow("SELECT call_ids, state FROM call_records")
    assert sorted(row["call_ids"]) == ["LEG1", "LEG2"] and row["state"] == "done"


async def test_a_miss_is_cached_too(harness, crm):
    acc, c = await hubspot_account(harness, crm)
    await creds(c["w0"])
    for cid in ("CMISS1", "CMISS2"):
        await harness.post(acc["url"], new_call(cid, frm="4930555123456"))
        ringing = await c["w0"].expect("call.ringing", call_id=cid)
        assert ringing["contacts"] == [] and ringing["resolved"] is True
    assert crm.count("POST", "/contacts/search") == 1 and crm.count("POST", "/companies/search") == 1


async def test_record_job_survives_a_restart(make_harness, crm):
    first = await make_harness()
    acc, c = await hubspot_account(first, crm)
    await first.post(acc["url"], new_call("CREST"))
    await first.post(acc["url"], hangup("CREST", "cancel"))
    await c["w0"].expect("call.ended")
    await first.stop()  # no session gave a token: the job is left in PostgreSQL
    first.runner = first.http = first.pool = None
    first.clients = []
    assert crm.created == []
    second = await make_harness()
    rep = await second.connect((await second.admin.new_user_token(
        (await second.admin.list_users(acc["account_id"]))["users"][0]["user_id"]))["token"])
    await creds(rep)
    logged = await rep.expect("call.logged", timeout=20)
    assert logged["call_id"] == "CREST" and len(crm.created) == 1


async def test_transferred_call_is_one_record_written_after_the_last_leg(harness, crm):
    """Transfer: w0 answers, hands over to w1 (new leg, same xcid) and hangs up; w1 talks on. One record,
    written when w1's leg ends, with both legs and w1 as the answering user."""
    acc, c = await hubspot_account(harness, crm, users=("w0", "w1"))
    for client in c.values():
        await creds(client)
    xcid = "xcidtransfer001"
    await harness.post(acc["url"], f"event=newCall&direction=in&from={CALLER}&to=492111234567&callId=TR1"
                                   f"&origCallId=TR1&userId%5B%5D=w0&xcid={xcid}")
    await harness.post(acc["url"], answer("TR1", by="w0"))
    await harness.post(acc["url"], f"event=newCall&direction=in&from={CALLER}&to=492111234567&callId=TR2"
                                   f"&origCallId=TR1&userId%5B%5D=w1&xcid={xcid}&diversion=492111234567")
    await harness.post(acc["url"], answer("TR2", by="w1"))
    await harness.post(acc["url"], f"event=hangup&callId=TR1&cause=normalClearing&direction=in&xcid={xcid}")
    await c["w0"].expect("call.ended", call_id="TR1")
    await asyncio.sleep(4)  # longer than a job's settling time: still nothing, w1 is talking
    assert crm.created == []
    await harness.post(acc["url"], f"event=hangup&callId=TR2&cause=normalClearing&direction=in&xcid={xcid}")
    await c["w1"].expect("call.logged", timeout=15)
    (call,) = crm.created
    assert call["properties"]["hs_call_status"] == "COMPLETED"
    row = await harness.pool.fetchrow("SELECT call_ids, data FROM call_records")
    assert sorted(row["call_ids"]) == ["TR1", "TR2"] and row["data"]["answered_by"] == "w1"


async def test_note_that_will_never_be_written_is_answered_not_logged(harness, crm):
    """Call logging off (and a directory account, which forces it off), or a record job that failed: the
    note is refused with a reason instead of an ``ok`` for a note that would never reach the CRM."""
    acc, c = await hubspot_account(harness, crm, log_calls=False)
    await harness.post(acc["url"], new_call("CHN1"))
    await c["w0"].expect("call.ringing")
    reply = await c["w0"].request({"type": "call.note", "call_id": "CHN1", "text": "x", "id": "n1"})
    assert reply == {"type": "error", "code": "not_logged", "id": "n1",
                     "message": "call logging is off for this account"}

    directory = await harness.account(name="Dir")
    d = await harness.connect(await harness.user(directory["account_id"], "w0"))
    await harness.post(directory["url"], new_call("CHN2"))
    await d.expect("call.ringing")
    reply = await d.request({"type": "call.note", "call_id": "CHN2", "text": "x", "id": 7})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "not_logged", 7)

    acc3, c3 = await hubspot_account(harness, crm, users=("w5",))
    await harness.post(acc3["url"], new_call("CHN3", users=("w5",)))
    await c3["w5"].expect("call.ringing")
    await harness.post(acc3["url"], hangup("CHN3", "cancel"))
    await c3["w5"].expect("call.ended")
    await harness.pool.execute("UPDATE call_records SET state = 'failed' WHERE $1 = ANY(call_ids)", "CHN3")
    reply = await c3["w5"].request({"type": "call.note", "call_id": "CHN3", "text": "x", "id": "n3"})
    assert reply == {"type": "error", "code": "not_logged", "id": "n3",
                     "message": "the call record could not be written"}


async def test_a_record_is_logged_for_the_user_it_rang_for_not_a_later_holder_of_the_same_sipgate_id(harness, crm):
    """w0 takes a call and is removed before its record is written; w0 is added again for someone else, whose
    session has a CRM token. That session's token must not write the old call, nor get its call.logged."""
    acc, c = await hubspot_account(harness, crm)
    old = c["w0"]
    await harness.post(acc["url"], new_call("CRE1"))
    await old.expect("call.ringing")
    await harness.post(acc["url"], answer("CRE1"))
    await harness.post(acc["url"], hangup("CRE1"))
    await old.expect("call.ended")
    await harness.admin.remove_user(old.seen[0]["user_id"])
    await old.expect("__closed__")
    newcomer = await harness.connect(await harness.user(acc["account_id"], "w0"))
    await creds(newcomer)
    for _ in range(40):  # the job is ready 3 s after the hangup, and claimed within a round of 2 s after that
        if crm.created:
            break
        await asyncio.sleep(0.25)
    assert crm.created == []
    assert not [m for m in newcomer.seen if m["type"] == "call.logged"]
