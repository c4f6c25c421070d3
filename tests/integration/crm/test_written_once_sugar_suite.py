"""SugarCRM and SuiteCRM write each call once: a Calls record's id comes from the job's key, so the retry after a
create whose answer was lost finds the record (with its description, so only the missing note is appended) and a
create sent twice is refused by the CRM instead of logged twice. And SugarCRM pops carry the contact's company,
which its global search does not return."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import pytest
from aioresponses import aioresponses

from hejcti.app import RECORDS
from hejcti.crm import adapter_class
from hejcti.crm.base import CallRecord, Contact, Credentials
from tests.conftest import FIXTURES
from tests.crm_specs import BY_KIND
from tests.e2e.test_fanout import hangup, new_call
from tests.fakes.base import Running, lost_create
from tests.integration.test_listener import until

GOOD = Credentials("good-token")
CALLER = "+4915791234567"  # new_call's caller
LINE = "+4921112345670"
START = datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC)
END = datetime(2025, 11, 24, 14, 5, 45, tzinfo=UTC)
KINDS = ("sugarcrm", "suitecrm")
NOTE = "Call back on Friday"


def call(contact: Contact | None, key: str = "xc1", note: str | None = None) -> CallRecord:
    return CallRecord(key=key, call_id="C1", direction="in", number=CALLER, own_number=LINE, answered=True,
                      voicemail=False, cause="normalClearing", started_at=START, ended_at=END, duration_s=154,
                      contact=contact, owner=None, sipgate_user="w0", note=note)


@pytest.fixture(params=KINDS)
async def crm(request):
    """(spec, fake state, adapter) with Julia Schmidt of Acme GmbH in the fake."""
    spec = BY_KIND[request.param]
    state = spec.fake.State()
    state.add_contact(spec.ids[0], "Julia", "Schmidt", spec.stored, owner=spec.owner, company_id=spec.company_id,
                      company="Acme GmbH")
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        yield spec, state, adapter_class(spec.kind)(instance=base, region="DE", http=http, budget=30)


# ------------------------------------------------------------------------------ the adapters' find_logged


@pytest.mark.parametrize("how", ["500", "drop"])
async def test_the_record_whose_answer_was_lost_is_found_with_its_body(crm, how):
    spec, state, adapter = crm
    (julia,) = await adapter.lookup(CALLER, GOOD)
    record = call(julia, note="Wants the offer.")
    created = await lost_create(state, adapter, record, GOOD, how)
    found = await adapter.find_logged(record, GOOD)
    assert found is not None and found.record_id == str(created["id"])
    assert found.body == spec.body_of(state, found.record_id) and found.body.endswith("Wants the offer.")
    assert found.url is not None and found.record_id in found.url
    assert await adapter.find_logged(replace(record, key="xc2"), GOOD) is None  # another call's key


async def test_keys_are_matched_exactly(crm):
    """Quotes, percent signs and underscores in a key are no wildcards: each key finds its own record only."""
    spec, state, adapter = crm
    odd = ["it's 100%_done", "it's 100x_done", "50%", "5_%", '"\\']
    ids = {key: (await adapter.log_call(call(None, key=key), GOOD)).record_id for key in odd[:3]}
    assert len(set(ids.values())) == 3
    for key in odd:
        found = await adapter.find_logged(call(None, key=key), GOOD)
        assert (found.record_id if found else None) == ids.get(key), key
    assert await adapter.find_logged(call(None, key="%"), GOOD) is None


async def test_a_create_sent_again_is_one_record_with_the_later_description(crm):
    """Should a create be repeated all the same (the search for it refused), the CRM refuses the known id: the
    record it has gets the description of the later attempt, and no second record is made."""
    spec, state, adapter = crm
    await lost_create(state, adapter, call(None, note="First part."), GOOD)
    logged = await adapter.log_call(call(None, note="First part.\nSecond part."), GOOD)
    (created,) = state.created
    assert logged.record_id == str(created["id"])
    body = spec.body_of(state, logged.record_id)
    assert body.endswith("First part.\nSecond part.") and body.count("First part.") == 1


# -------------------------------------------------------------------- through the records worker (9.2)


async def _job(harness, account_id: str):
    return await harness.pool.fetchrow("SELECT * FROM call_records WHERE account_id = $1", account_id)


async def _due_now(harness, account_id: str) -> None:
    """The account's record job runs now instead of after its pause."""
    await harness.pool.execute("UPDATE call_records SET run_after = now() WHERE account_id = $1", account_id)
    harness.app[RECORDS].wake()


@pytest.mark.parametrize("kind, how", [("sugarcrm", "500"), ("suitecrm", "drop")])
async def test_a_lost_create_answer_and_a_note_meanwhile_give_one_record_with_the_note(harness, kind, how):
    spec = BY_KIND[kind]
    state = spec.fake.State()
    state.add_contact(spec.ids[0], "Julia", "Schmidt", spec.stored, owner=spec.owner, company_id=spec.company_id,
                      company="Acme GmbH")
    state.lose_next_create(how=how)
    async with Running(spec.fake.make_app(state)) as base:
        acc = await harness.account(crm=kind, crm_instance=base)
        rep = await harness.connect(await harness.user(acc["account_id"], "w0", crm_user=spec.owner))
        assert (await rep.request({"type": "crm.credentials", "access_token": "good-token", "id": 1}))["ok"]
        cid = f"CLOST{kind.upper()}"
        await harness.post(acc["url"], new_call(cid))
        (contact,) = (await rep.expect("call.ringing"))["contacts"]
        assert contact["company"] == "Acme GmbH"  # SugarCRM: from the follow-up to its global search
        await harness.post(acc["url"], f"event=answer&callId={cid}&user=A&userId=w0&direction=in")
        await harness.post(acc["url"], hangup(cid))
        await _due_now(harness, acc["account_id"])
        for _ in range(200):  # the create is stored, its answer lost: the job waits for its next attempt
            job = await _job(harness, acc["account_id"])
            if job is not None and job["last_error"] and job["lease_until"] is None:
                break
            await asyncio.sleep(0.05)
        assert job["state"] == "ready" and job["attempts"] == 1 and len(state.created) == 1
        assert (await rep.request({"type": "call.note", "call_id": cid, "text": NOTE, "id": 2}))["ok"]
        await _due_now(harness, acc["account_id"])
        logged = await rep.expect("call.logged", timeout=20)
        (created,) = state.created
        assert logged["record_id"] == str(created["id"])
        await until(lambda: NOTE in spec.body_of(state, logged["record_id"]), timeout=10)
        assert spec.body_of(state, logged["record_id"]).count(NOTE) == 1
        for _ in range(100):
            job = await _job(harness, acc["account_id"])
            if not job["note_pending"]:
                break
            await asyncio.sleep(0.05)
        assert job["state"] == "done" and job["crm_record_id"] == logged["record_id"] and not job["note_pending"]
        assert len(state.created) == 1


# ---------------------------------------------------------------------- SugarCRM's company on a pop (9.3)


@pytest.fixture
async def sugar():
    spec = BY_KIND["sugarcrm"]
    state = spec.fake.State()
    state.add_contact(spec.ids[0], "Julia", "Schmidt", "+49 157 91234567", company_id="9a1e6d4c-1",
                      company="Acme GmbH")
    state.add_contact("b71c5f30-lead", "Max", "Mustermann", "0157 91234567", company="Beta AG", module="Leads")
    state.add_contact("0c9d2e11-acct", "Gamma", "KG", "+49 157 91234567", module="Accounts")
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        yield state, base, http


async def test_sugarcrm_contacts_and_leads_pop_with_their_company(sugar):
    state, base, http = sugar
    async with http.get(f"{base}/rest/v11/globalsearch", headers={"OAuth-Token": "good-token"},
                        params={"q": "15791234567", "module_list": "Contacts,Leads,Accounts"}) as r:
        hits = (await r.json())["records"]
    assert len(hits) == 3 and not any("account_name" in h or "account_id" in h for h in hits)  # as Sugar's index
    adapter = adapter_class("sugarcrm")(instance=base, region="DE", http=http, budget=30)
    got = {c.kind: c for c in await adapter.lookup(CALLER, GOOD)}
    assert {k: c.company for k, c in got.items()} == {"contact": "Acme GmbH", "lead": "Beta AG",
                                                      "account": "Gamma KG"}
    assert got["contact"].parent_id == "9a1e6d4c-1" and got["contact"].public()["company"] == "Acme GmbH"
    assert state.count("POST", "/Contacts/filter") == 1 and state.count("POST", "/Leads/filter") == 1
    assert state.count("POST", "/Accounts/filter") == 0


@pytest.mark.parametrize("trouble", ["fails", "too_late"])
async def test_sugarcrm_pops_without_company_when_the_follow_up_fails(sugar, trouble):
    state, base, http = sugar
    if trouble == "fails":
        state.filter_fails = 100
    else:
        state.filter_delay = 5.0  # far beyond the lookup's budget
    adapter = adapter_class("sugarcrm")(instance=base, region="DE", http=http, budget=0.5)
    got = {c.kind: c for c in await adapter.lookup(CALLER, GOOD)}
    assert state.count("POST", "/Contacts/filter") >= 1  # the follow-up was asked, and failed or came too late
    assert set(got) == {"contact", "lead", "account"}
    assert got["contact"].id == BY_KIND["sugarcrm"].ids[0] and got["contact"].company is None
    assert got["lead"].company is None and got["account"].company == "Gamma KG"


async def test_sugarcrm_vendor_hit_gets_its_company_from_the_filter_api():
    """The corrected fixture: a global search hit has no account_name; the filter API's answer has it."""
    hit = (FIXTURES / "crm" / "sugarcrm" / "globalsearch_hit.json").read_text()
    assert "account_name" not in hit
    async with aiohttp.ClientSession() as http:
        adapter = adapter_class("sugarcrm")(instance="https://acme.sugarondemand.com", region="DE", http=http,
                                            budget=30)
        with aioresponses() as m:
            m.get(re.compile(r".*/rest/v11/globalsearch.*"), body=hit, content_type="application/json")
            m.post(re.compile(r".*/rest/v11/Contacts/filter"), content_type="application/json",
                   body=(FIXTURES / "crm" / "sugarcrm" / "lookup_hit.json").read_text())
            (c,) = await adapter.lookup("+493012345678", GOOD)
            (sent,) = [kw.kwargs["json"] for (method, url), kws in m.requests.items()
                       if "Contacts/filter" in str(url) for kw in kws]
    assert c.company == "Acme GmbH" and c.parent_id == "9a1e6d4c-5b2f-11ef-8a3d-0242ac120002"
    assert sent["filter"] == [{"id": {"$in": [c.id]}}] and set(sent["fields"].split(",")) >= {"account_name"}
    assert json.loads(hit)["records"][0]["_module"] == "Contacts"
