"""One call per CRM through the whole product: webhook in, pop with the contact out, hangup, the record
created on a local server that answers in that CRM's shapes, call.logged, and a note appended."""

from __future__ import annotations

import asyncio

import pytest

from tests.crm_specs import BY_KIND, SPECS, Spec
from tests.e2e.test_fanout import hangup, new_call
from tests.fakes.base import Running


@pytest.mark.parametrize("spec", SPECS, ids=[s.kind for s in SPECS])
async def test_call_through_each_crm(harness, spec: Spec):
    state = spec.fake.State()
    state.add_contact(spec.ids[0], "Julia", "Schmidt", spec.stored, owner=spec.owner, company_id=spec.company_id,
                      company="Acme GmbH")
    async with Running(spec.fake.make_app(state)) as base:
        acc = await harness.account(crm=spec.kind, crm_instance=base)
        rep = await harness.connect(await harness.user(acc["account_id"], "w0", crm_user=spec.owner))
        assert (await rep.request({"type": "crm.credentials", "access_token": "good-token", "id": 1}))["ok"]
        cid = f"CE2E{spec.kind.upper()}"
        await harness.post(acc["url"], new_call(cid))
        ringing = await rep.expect("call.ringing")
        assert ringing["resolved"] is True
        (contact,) = ringing["contacts"]
        assert contact["crm"] == spec.kind and contact["id"] == spec.ids[0] and contact["name"] == "Julia Schmidt"
        assert contact["kind"] == spec.contact_kind and spec.url_part in contact["url"]
        await harness.post(acc["url"], f"event=answer&callId={cid}&user=A&userId=w0&direction=in")
        await harness.post(acc["url"], hangup(cid))
        logged = await rep.expect("call.logged", timeout=20)
        assert logged["crm"] == spec.kind and logged["call_id"] == cid
        (created,) = state.created
        assert str(created["id"]) == logged["record_id"]
        assert spec.owner_of(created) == spec.owner and spec.contact_of(created) == spec.ids[0]
        await rep.request({"type": "call.note", "call_id": cid, "text": "Call back on Friday", "id": 2})
        for _ in range(100):
            if "Call back on Friday" in spec.body_of(state, logged["record_id"]):
                break
            await asyncio.sleep(0.1)
        assert "Call back on Friday" in spec.body_of(state, logged["record_id"])
        assert len(state.created) == 1


@pytest.mark.parametrize("spec", SPECS, ids=[s.kind for s in SPECS])
async def test_crm_slower_than_the_deadline_then_resolved(make_harness, spec: Spec):
    h = await make_harness(lookup_deadline_ms=200)
    state = spec.fake.State()
    state.add_contact(spec.ids[0], "Julia", "Schmidt", spec.stored, owner=spec.owner)
    state.delay = 0.8
    async with Running(spec.fake.make_app(state)) as base:
        acc = await h.account(crm=spec.kind, crm_instance=base, log_calls=False)
        rep = await h.connect(await h.user(acc["account_id"], "w0"))
        await rep.request({"type": "crm.credentials", "access_token": "good-token", "id": 1})
        await h.post(acc["url"], new_call("CSLOW" + spec.kind.upper()))
        ringing = await rep.expect("call.ringing")
        assert ringing["resolved"] is False and ringing["contacts"] == []
        resolved = await rep.expect("call.resolved")
        assert [c["id"] for c in resolved["contacts"]] == [spec.ids[0]]


async def test_salesforce_call_whose_create_answer_was_lost_is_logged_once(harness):
    """The Task is stored and the connection drops before its answer: the job's retry finds the Task by its
    CallObject instead of logging the call a second time, and the pop still learns where it went."""
    spec = BY_KIND["salesforce"]
    state = spec.fake.State()
    state.drop_create_answers = 1
    async with Running(spec.fake.make_app(state)) as base:
        acc = await harness.account(crm="salesforce", crm_instance=base)
        rep = await harness.connect(await harness.user(acc["account_id"], "w0"))
        assert (await rep.request({"type": "crm.credentials", "access_token": "good-token", "id": 1}))["ok"]
        await harness.post(acc["url"], new_call("CLOSTSF"))
        await rep.expect("call.ringing")
        await harness.post(acc["url"], hangup("CLOSTSF"))
        logged = await rep.expect("call.logged", timeout=30)
        (created,) = state.created
        assert logged["record_id"] == created["id"] and state.count("GET", "/query/") == 1
