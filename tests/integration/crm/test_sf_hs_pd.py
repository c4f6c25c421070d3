"""Salesforce, HubSpot and Pipedrive in depth: the content of the call record against the vendor's request shape,
look-alike hits the search returns, expiry and rate-limit signatures, Pipedrive's search order, deep links on
real vendor domains, ranking, numbers in odd formats, notes appended. Against the local fakes (real servers) and,
where a real vendor domain matters, the vendor's own answers through aioresponses."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from hejcti.crm import adapter_class
from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAuthError,
    CrmPermanentError,
    CrmRateLimitError,
    CrmTransientError,
    rank,
)
from tests.conftest import FIXTURES
from tests.crm_specs import BY_KIND
from tests.fakes.base import Running

CALLER = "+4915791234567"  # the caller of the fakes' scenario (as in test_adapters_fake)
OWN = "+4921112345670"  # our line
VENDOR_CALLER = "+493012345678"  # the caller in the vendors' example payloads
GOOD = Credentials("good-token")
KINDS = ("salesforce", "hubspot", "pipedrive")
LOOKALIKE = "+49 30 91234567"  # the caller's last eight digits behind another area code (Berlin)
START = datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC)
END = datetime(2025, 11, 24, 14, 5, 45, tzinfo=UTC)


def fx(kind: str, name: str) -> Any:
    return json.loads((FIXTURES / "crm" / kind / name).read_text())


@pytest.fixture(params=KINDS)
async def crm(request):
    """(spec, fake state, adapter) with an empty fake; the test seeds what it needs."""
    spec = BY_KIND[request.param]
    state = spec.fake.State()
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        yield spec, state, adapter_class(spec.kind)(instance=base, region="DE", http=http, budget=30)


def seed_julia(spec, state, stored: str | None = None) -> None:
    state.add_contact(spec.ids[0], "Julia", "Schmidt", stored or spec.stored, owner=spec.owner,
                      company_id=spec.company_id, company="Acme GmbH")


def call(contact: Contact | None, *, direction: str = "in", answered: bool = True, owner: str | None = None,
         duration: int | None = 154, key: str = "xc1") -> CallRecord:
    return CallRecord(key=key, call_id="C1", direction=direction, number=CALLER, own_number=OWN, answered=answered,
                      voicemail=False, cause="normalClearing" if answered else "cancel", started_at=START,
                      ended_at=END if answered else datetime(2025, 11, 24, 14, 3, 40, tzinfo=UTC),
                      duration_s=duration if answered else None, contact=contact, owner=owner, sipgate_user="w0")


# ------------------------------------------------------------------------- 4. call record content


SCENARIOS = ["answered_in", "missed_in", "answered_out"]


def _record_for(spec, contact: Contact, scenario: str) -> CallRecord:
    if scenario == "answered_in":
        return call(contact, owner=spec.owner)
    if scenario == "missed_in":
        return call(contact, answered=False, owner=spec.owner)
    return call(contact, direction="out", owner=spec.owner)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_call_record_content_matches_the_vendor_request(crm, scenario):
    spec, state, adapter = crm
    seed_julia(spec, state)
    (contact,) = await adapter.lookup(CALLER, GOOD)
    if spec.kind == "salesforce" and scenario == "missed_in":  # a lead: WhoId, and no WhatId (Task rules)
        contact = Contact("salesforce", "lead", "00QDn00000HxY2zMAF", "Lena Lead", company="Lead GmbH",
                          owner_id=spec.owner)
    await adapter.log_call(_record_for(spec, contact, scenario), GOOD)
    (created,) = state.created
    answered, inbound = scenario != "missed_in", scenario != "answered_out"
    theirs_from = inbound  # the caller is "from" on an inbound call, "to" on an outbound one
    shape = fx(spec.kind, "call_log_request.json")

    if spec.kind == "salesforce":
        body = {k: v for k, v in created.items() if k != "id"}
        expect_keys = set(shape) - ({"WhatId"} if contact.kind == "lead" else set())
        assert set(body) == expect_keys
        assert body["TaskSubtype"] == "Call" and body["Status"] == "Completed"
        assert body["CallType"] == ("Inbound" if inbound else "Outbound")
        assert body["CallDurationInSeconds"] == (154 if answered else 0)
        assert body["CallDisposition"] == ("Answered" if answered else "Missed")
        assert body["CallObject"] == f"hejcti-xc1-{'in' if inbound else 'out'}" and body["ActivityDate"] == "2025-11-24"
        assert body["WhoId"] == contact.id
        assert body.get("WhatId") == (None if contact.kind == "lead" else spec.company_id)
        assert body["OwnerId"] == spec.owner
    elif spec.kind == "hubspot":
        p = created["properties"]
        assert set(p) - {"hs_object_id"} == set(shape["properties"]) - {"hs_call_recording_url"}
        assert p["hs_timestamp"].startswith("2025-11-24T14:03:11")
        assert p["hs_call_direction"] == ("INBOUND" if inbound else "OUTBOUND")
        assert p["hs_call_status"] == ("COMPLETED" if answered else "NO_ANSWER")
        assert p["hs_call_duration"] == ("154000" if answered else "0")  # milliseconds, as a string
        assert p["hs_call_disposition"] == ("f240bbac-87c9-4f6e-bf70-924b57d47db7" if answered
                                            else "73a0d17f-1163-4015-bdd5-ec830791da20")
        assert (p["hs_call_from_number"], p["hs_call_to_number"]) == ((CALLER, OWN) if theirs_from else (OWN, CALLER))
        assert p["hubspot_owner_id"] == spec.owner
        assert [(a["to"]["id"], a["types"]) for a in created["associations"]] == [
            (spec.ids[0], [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]),
            (spec.company_id, [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 182}])]
    else:
        body = {k: v for k, v in created.items() if k not in ("id", "has_recording", "company_id")}
        assert set(body) == set(shape)
        assert body["outcome"] == ("connected" if answered else "no_answer")
        assert body["duration"] == ("154" if answered else "0")  # seconds, as a string
        assert (body["from_phone_number"], body["to_phone_number"]) == ((CALLER, OWN) if theirs_from
                                                                        else (OWN, CALLER))
        assert body["person_id"] == int(spec.ids[0]) and body["org_id"] == int(spec.company_id)
        assert body["user_id"] == int(spec.owner)
        assert body["start_time"] == "2025-11-24 14:03:11"
        assert body["end_time"] == ("2025-11-24 14:05:45" if answered else "2025-11-24 14:03:40")


# ---------------------------------------------------------------------------------- 5. look-alikes


async def test_a_lookalike_the_search_returns_is_not_popped(crm):
    spec, state, adapter = crm
    seed_julia(spec, state)
    state.add_contact(spec.ids[2], "Look", "Alike", LOOKALIKE, owner=spec.owner)
    state.loose = True
    found = await adapter.lookup(CALLER, GOOD)
    assert spec.ids[2] in state.returned  # the CRM did answer with it ...
    assert [c.id for c in found] == [spec.ids[0]]  # ... and it is not in the pop


async def test_only_a_lookalike_is_a_miss(crm):
    spec, state, adapter = crm
    state.add_contact(spec.ids[2], "Look", "Alike", LOOKALIKE)
    state.loose = True
    assert await adapter.lookup(CALLER, GOOD) == []
    assert spec.ids[2] in state.returned


# ------------------------------------------------------------- 1. Salesforce expiry and API limit


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


SF = "https://acme.my.salesforce.com"
SF_SEARCH = re.compile(r"https://acme\.my\.salesforce\.com/services/data/v62\.0/search/.*")


def requests_to(m: aioresponses, pattern: re.Pattern[str]) -> list[Any]:
    return [c for (_, url), calls in m.requests.items() if pattern.match(str(url)) for c in calls]


async def test_salesforce_invalid_session_id_is_expiry(http):
    adapter = adapter_class("salesforce")(instance=SF, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(SF_SEARCH, status=401, payload=fx("salesforce", "token_expired.json"))
        with pytest.raises(CrmAuthError):
            await adapter.lookup(VENDOR_CALLER, GOOD)


@pytest.mark.parametrize("body", ['[{"message":"Bad header","errorCode":"INVALID_AUTH_HEADER"}]',
                                  "<html><body>401 Unauthorized</body></html>"])
async def test_salesforce_other_401_is_not_taken_for_an_expired_session(http, body):
    adapter = adapter_class("salesforce")(instance=SF, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(SF_SEARCH, status=401, body=body, repeat=True)
        with pytest.raises(CrmPermanentError):
            await adapter.lookup(VENDOR_CALLER, GOOD)
        assert len(requests_to(m, SF_SEARCH)) == 1


async def test_salesforce_request_limit_fails_fast_and_is_not_retried_quickly(http):
    adapter = adapter_class("salesforce")(instance=SF, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(SF_SEARCH, status=403, payload=fx("salesforce", "rate_limited.json"), repeat=True)
        m.get(SF_SEARCH, payload=fx("salesforce", "lookup_hit.json"))  # never reached
        with pytest.raises(CrmRateLimitError) as e:
            await adapter.lookup(VENDOR_CALLER, GOOD)
        assert len(requests_to(m, SF_SEARCH)) == 1  # even a 30 s budget does not retry the daily limit
    assert e.value.retry_after is not None and e.value.retry_after >= 60


async def test_salesforce_finds_the_task_whose_answer_was_lost():
    spec = BY_KIND["salesforce"]
    state = spec.fake.State()
    seed_julia(spec, state)
    state.drop_create_answers = 1
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as session:
        adapter = adapter_class("salesforce")(instance=base, region="DE", http=session, budget=30)
        (contact,) = await adapter.lookup(CALLER, GOOD)
        record = replace(call(contact), note="Wants the offer.")
        with pytest.raises(CrmTransientError) as e:
            await adapter.log_call(record, GOOD)
        assert e.value.maybe_applied is True
        (task,) = state.created  # stored, and not sent again by the adapter's own retries
        found = await adapter.find_logged(record, GOOD)
        assert found is not None and found.record_id == task["id"] and found.url == f"{base}/{task['id']}"
        assert found.body == task["Description"] and found.body.endswith("Wants the offer.")
        assert await adapter.find_logged(replace(record, key="xc2"), GOOD) is None  # another call's key
        odd = replace(record, key="it's a \\ key")  # quoted for SOQL, found exactly
        logged = await adapter.log_call(odd, GOOD)
        assert (await adapter.find_logged(odd, GOOD)).record_id == logged.record_id
        assert state.count("GET", "/query/") == 3


async def test_salesforce_fake_request_limit_is_one_request():
    spec = BY_KIND["salesforce"]
    state = spec.fake.State()
    seed_julia(spec, state)
    state.rate_limit_next(1)
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as session:
        adapter = adapter_class("salesforce")(instance=base, region="DE", http=session, budget=1.5)
        with pytest.raises(CrmRateLimitError):
            await adapter.lookup(CALLER, GOOD)
        assert state.count("GET", "/search/") == 1
        assert len(await adapter.lookup(CALLER, GOOD)) == 1  # the next call, once the limit is gone


# ------------------------------------------------------------------------- 2. HubSpot email, 401


HS = "https://api.hubapi.com"
HS_SEARCH = f"{HS}/crm/v3/objects/contacts/search"


async def test_hubspot_names_a_contact_without_names_by_email():
    spec = BY_KIND["hubspot"]
    state = spec.fake.State()
    state.add_contact("61", "", "", phone=CALLER, email="julia@example.com")
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as session:
        adapter = adapter_class("hubspot")(instance=base, region="DE", http=session, budget=30)
        (c,) = await adapter.lookup(CALLER, GOOD)
    assert c.name == "julia@example.com"


async def test_hubspot_search_requests_the_reference_properties(http):
    adapter = adapter_class("hubspot")(instance=None, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(f"{HS}/account-info/v3/details", payload=fx("hubspot", "account_details.json"), repeat=True)
        hit = fx("hubspot", "lookup_hit.json")
        hit["results"][0]["properties"].update(firstname=None, lastname=None, email="julia@example.com")
        m.post(HS_SEARCH, payload=hit)
        (c,) = await adapter.lookup(VENDOR_CALLER, GOOD)
        sent = requests_to(m, re.compile(re.escape(HS_SEARCH)))[0].kwargs["json"]
    assert {"firstname", "lastname", "email", "phone", "mobilephone", "company", "hubspot_owner_id",
            "associatedcompanyid"} <= set(sent["properties"])
    assert c.name == "julia@example.com"


@pytest.mark.parametrize("status, body, error", [
    (401, json.dumps(fx("hubspot", "token_expired.json")), CrmAuthError),
    (401, json.dumps({"status": "error", "message": "The OAuth token used to make this call is invalid",
                      "correlationId": "0d1e", "category": "INVALID_AUTHENTICATION"}), CrmAuthError),
    (401, json.dumps({"status": "error", "message": "Unauthorized", "category": "UNKNOWN"}), CrmPermanentError),
    (401, "<html>401</html>", CrmPermanentError),
])
async def test_hubspot_401_per_category(http, status, body, error):
    adapter = adapter_class("hubspot")(instance=None, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(f"{HS}/account-info/v3/details", payload=fx("hubspot", "account_details.json"), repeat=True)
        m.post(HS_SEARCH, status=status, body=body, content_type="application/json", repeat=True)
        with pytest.raises(error):
            await adapter.lookup(VENDOR_CALLER, GOOD)
        assert len(requests_to(m, re.compile(re.escape(HS_SEARCH)))) == 1


# ---------------------------------------------------------------------- 3. Pipedrive search order


@pytest.fixture
async def pipedrive():
    spec = BY_KIND["pipedrive"]
    state = spec.fake.State()
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as session:
        yield spec, state, adapter_class("pipedrive")(instance=base, region="DE", http=session, budget=30)


async def test_pipedrive_e164_digits_first_and_stop_at_the_first_verified_hit(pipedrive):
    spec, state, adapter = pipedrive
    seed_julia(spec, state, "+49 157 91234567")
    (c,) = await adapter.lookup(CALLER, GOOD)
    assert c.id == spec.ids[0]
    assert state.terms == [("persons", "4915791234567")]


async def test_pipedrive_national_number_second_and_no_seven_digit_term(pipedrive):
    spec, state, adapter = pipedrive
    seed_julia(spec, state, "0157 91234567")  # its digits hold the national number, not the E.164 digits
    # the first term finds only this look-alike (the caller's number with an extension): no verified hit,
    # so the search goes on
    state.add_contact(spec.ids[2], "Look", "Alike", "+49 157 91234567-0")
    (c,) = await adapter.lookup(CALLER, GOOD)
    assert c.id == spec.ids[0]
    assert state.terms == [("persons", "4915791234567"), ("persons", "15791234567")]
    assert state.returned[0] == spec.ids[2]


async def test_pipedrive_organization_when_no_person_verifies(pipedrive):
    spec, state, adapter = pipedrive
    state.add_organization("7", "Acme GmbH", "+49 (0)157 9123-4567", owner=spec.owner)
    (c,) = await adapter.lookup(CALLER, GOOD)
    assert c.public() == {"crm": "pipedrive", "kind": "organization", "id": "7", "name": "Acme GmbH",
                          "company": "Acme GmbH", "url": "https://acme.pipedrive.com/organization/7"}
    assert [w for w, _ in state.terms] == ["persons", "persons", "organizations", "organizations"]
    assert any("fields=custom_fields" in p for _, p in state.requests if "/organizations/search" in p)


async def test_pipedrive_miss_searches_persons_then_organizations(pipedrive):
    _, state, adapter = pipedrive
    assert await adapter.lookup(CALLER, GOOD) == []
    assert state.terms == [("persons", "4915791234567"), ("persons", "15791234567"),
                           ("organizations", "4915791234567"), ("organizations", "15791234567")]


PD = "https://acme.pipedrive.com"
PD_PERSONS = re.compile(r"https://acme\.pipedrive\.com/api/v2/persons/search.*")
PD_ORGS = re.compile(r"https://acme\.pipedrive\.com/api/v2/organizations/search.*")


@pytest.mark.parametrize("failing", ["first", "second", "organizations"])
async def test_pipedrive_a_failed_search_is_not_hidden(http, failing):
    adapter = adapter_class("pipedrive")(instance=PD, region="DE", http=http, budget=30)
    miss, bad = fx("pipedrive", "lookup_miss.json"), fx("pipedrive", "error_bad_request.json")
    with aioresponses() as m:
        # persons (E.164 digits), persons (national number), organizations: a miss until the failing one
        for step in ("first", "second"):
            m.get(PD_PERSONS, **({"status": 400, "payload": bad} if failing == step else {"payload": miss}))
        if failing == "organizations":
            m.get(PD_ORGS, status=400, payload=bad)
        m.get(PD_PERSONS, payload=fx("pipedrive", "lookup_hit.json"), repeat=True)  # a later hit must not hide it
        m.get(PD_ORGS, payload=miss, repeat=True)
        with pytest.raises(CrmPermanentError):
            await adapter.lookup(VENDOR_CALLER, GOOD)


async def test_pipedrive_a_search_that_stays_down_raises(pipedrive):
    spec, state, adapter = pipedrive
    seed_julia(spec, state, "0157 91234567")
    adapter.budget = 0.5
    state.fail_next(20, 503)
    with pytest.raises(CrmTransientError):
        await adapter.lookup(CALLER, GOOD)


# --------------------------------------------------------------- 6. deep links on vendor domains


async def test_salesforce_lightning_links_on_the_org_domain(http):
    adapter = adapter_class("salesforce")(instance=SF, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(SF_SEARCH, payload=fx("salesforce", "lookup_multiple.json"))
        found = await adapter.lookup(VENDOR_CALLER, GOOD)
    lightning = "https://acme.lightning.force.com/lightning/r"
    assert {c.id: c.url for c in found} == {
        "003Dn00000Qm1fTIAR": f"{lightning}/Contact/003Dn00000Qm1fTIAR/view",
        "003Dn00000Qm1gAIAR": f"{lightning}/Contact/003Dn00000Qm1gAIAR/view",
        "00QDn00000HxY2zMAF": f"{lightning}/Lead/00QDn00000HxY2zMAF/view",
        "001Dn00000LkP2wIAF": f"{lightning}/Account/001Dn00000LkP2wIAF/view",
    }


async def test_hubspot_link_with_portal_and_ui_domain(http):
    adapter = adapter_class("hubspot")(instance=None, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(f"{HS}/account-info/v3/details", payload=fx("hubspot", "account_details.json"))
        m.post(HS_SEARCH, payload=fx("hubspot", "lookup_hit.json"))
        (c,) = await adapter.lookup(VENDOR_CALLER, GOOD)
    details = fx("hubspot", "account_details.json")
    assert c.url == f"https://{details['uiDomain']}/contacts/{details['portalId']}/record/0-1/51"
    assert c.url == "https://app-eu1.hubspot.com/contacts/62515/record/0-1/51"


@pytest.mark.parametrize("instance", [PD, "https://api.pipedrive.com"])
async def test_pipedrive_person_link_on_the_company_domain(http, instance):
    adapter = adapter_class("pipedrive")(instance=instance, region="DE", http=http, budget=30)
    host = re.escape(instance)
    with aioresponses() as m:
        m.get(re.compile(host + r"/api/v2/persons/search.*"), payload=fx("pipedrive", "lookup_hit.json"))
        m.get(f"{instance}/api/v1/users/me", payload=fx("pipedrive", "users_me.json"))  # company_domain "acme"
        (c,) = await adapter.lookup(VENDOR_CALLER, GOOD)
    assert c.url == "https://acme.pipedrive.com/person/42"


# ------------------------------------------------------------------------------------ 7. ranking


def _sf(sobject: str, rid: str, phone: str, owner: str, modified: str) -> dict[str, Any]:
    return {"attributes": {"type": sobject, "url": f"/services/data/v62.0/sobjects/{sobject}/{rid}"}, "Id": rid,
            "Name": rid, "Phone": phone, "OwnerId": owner, "LastModifiedDate": modified}


async def test_salesforce_ranking(http):
    me, other = "005ME", "005OTHER"
    records = [  # deliberately not in rank order
        _sf("Contact", "003SUFFIXMINE", "12345678", me, "2025-11-01T00:00:00.000+0000"),
        _sf("Account", "001EXACTOTHER", "+49 30 12345678", other, "2025-11-20T00:00:00.000+0000"),
        _sf("Contact", "003EXACTOLD", "030 12345678", other, "2024-01-01T00:00:00.000+0000"),
        _sf("Account", "001EXACTMINE", "030 12345678", me, "2024-01-01T00:00:00.000+0000"),
        _sf("Lead", "00QEXACTMINE", "+493012345678", me, "2023-01-01T00:00:00.000+0000"),
        _sf("Contact", "003EXACTNEW", "+49 30 12345678", other, "2025-10-30T16:41:12.000+0000"),
    ]
    adapter = adapter_class("salesforce")(instance=SF, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(SF_SEARCH, payload={"searchRecords": records}, repeat=True)
        mine = await adapter.lookup(VENDOR_CALLER, GOOD, crm_user=me)
        nobody = await adapter.lookup(VENDOR_CALLER, GOOD)
    assert [c.id for c in mine] == ["00QEXACTMINE", "003EXACTNEW", "003EXACTOLD", "001EXACTMINE",
                                    "001EXACTOTHER", "003SUFFIXMINE"]
    assert [c.id for c in nobody] == ["003EXACTNEW", "003EXACTOLD", "00QEXACTMINE", "001EXACTOTHER",
                                      "001EXACTMINE", "003SUFFIXMINE"]
    assert [c.match for c in mine] == ["exact"] * 5 + ["suffix"]
    assert mine == rank(list(reversed(mine)), me)  # the order is base.rank's


def _hs(cid: str, phone: str, owner: str, modified: str) -> dict[str, Any]:
    return {"id": cid, "properties": {"firstname": cid, "lastname": "", "phone": phone, "hubspot_owner_id": owner,
                                      "lastmodifieddate": modified}, "updatedAt": modified}


async def test_hubspot_ranking(http):
    results = [_hs("1", "12345678", "me", "2025-11-20T00:00:00Z"),  # suffix, mine, newest
               _hs("2", "+49 30 12345678", "other", "2024-01-01T00:00:00Z"),
               _hs("3", "030 12345678", "me", "2023-01-01T00:00:00Z"),
               _hs("4", "+493012345678", "other", "2025-06-01T00:00:00Z")]
    adapter = adapter_class("hubspot")(instance=None, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(f"{HS}/account-info/v3/details", payload=fx("hubspot", "account_details.json"))
        m.post(HS_SEARCH, payload={"total": 4, "results": results}, repeat=True)
        assert [c.id for c in await adapter.lookup(VENDOR_CALLER, GOOD, crm_user="me")] == ["3", "4", "2", "1"]
        assert [c.id for c in await adapter.lookup(VENDOR_CALLER, GOOD)] == ["4", "2", "3", "1"]


def _pd(pid: int, phone: str, owner: int) -> dict[str, Any]:
    return {"result_score": 0.5, "item": {"id": pid, "type": "person", "name": f"P{pid}", "phones": [phone],
                                          "owner": {"id": owner}, "organization": None}}


async def test_pipedrive_ranking(http):
    items = [_pd(1, "12345678", 99), _pd(2, "+49 30 12345678", 5), _pd(3, "030 12345678", 99)]
    adapter = adapter_class("pipedrive")(instance=PD, region="DE", http=http, budget=30)
    with aioresponses() as m:
        m.get(PD_PERSONS, payload={"success": True, "data": {"items": items}}, repeat=True)
        assert [c.id for c in await adapter.lookup(VENDOR_CALLER, GOOD, crm_user="99")] == ["3", "2", "1"]
        assert [c.id for c in await adapter.lookup(VENDOR_CALLER, GOOD, crm_user="5")] == ["2", "3", "1"]


# ------------------------------------------------------------------------------- 8. odd formats


@pytest.mark.parametrize("stored", ["+49 (0)157 9123-4567", "0049 157 91234567", "(0157) 91234567"])
async def test_numbers_stored_in_odd_formats(crm, stored):
    spec, state, adapter = crm
    seed_julia(spec, state, stored)
    state.add_contact(spec.ids[2], "Other", "Person", "+44 20 7946 0991")
    (c,) = await adapter.lookup(CALLER, GOOD)
    assert (c.id, c.name, c.match) == (spec.ids[0], "Julia Schmidt", "exact")


# ------------------------------------------------------------------------------ 9. note appended


async def test_note_is_appended_not_replaced_nor_duplicated(crm):
    spec, state, adapter = crm
    seed_julia(spec, state)
    (contact,) = await adapter.lookup(CALLER, GOOD)
    logged = await adapter.log_call(call(contact, owner=spec.owner), GOOD)
    rid = logged.record_id
    before = spec.body_of(state, rid)
    assert before
    await adapter.append_note(rid, "Sent the offer.", GOOD)
    await adapter.append_note(rid, "Call back Friday.", GOOD)
    after = spec.body_of(state, rid)
    if spec.kind == "pipedrive":  # a call log cannot be edited: each note is a Pipedrive note on the person
        head = "<p>Note on the call of 2025-11-24 14:03:11 UTC:</p>"
        assert state.logs[rid]["note"] == before
        assert state.notes == [(spec.ids[0], f"{head}<p>Sent the offer.</p>"),
                               (spec.ids[0], f"{head}<p>Call back Friday.</p>")]
        assert after == before + f"{head}<p>Sent the offer.</p>" + f"{head}<p>Call back Friday.</p>"
    else:
        assert after == f"{before}\n\nSent the offer.\n\nCall back Friday."
    assert len(state.created) == 1


# --------------------------------------------------------------------- fakes answer as the fixtures


@pytest.mark.parametrize("kind, expired, limited", [
    ("salesforce", "token_expired.json", "rate_limited.json"),
    ("hubspot", "token_expired.json", "rate_limited_search.json"),
    ("pipedrive", "token_expired.json", "rate_limited.json"),
])
async def test_fakes_error_bodies_are_the_fixtures(kind, expired, limited):
    spec = BY_KIND[kind]
    state = spec.fake.State()
    path = {"salesforce": "/services/data/v62.0/search/?q=x", "hubspot": "/crm/v3/objects/contacts/search",
            "pipedrive": "/api/v2/persons/search?term=49"}[kind]
    method = "POST" if kind == "hubspot" else "GET"
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as session:
        async with session.request(method, base + path, headers={"Authorization": "Bearer stale"}) as r:
            assert r.status == 401 and await r.json() == fx(kind, expired)
        state.rate_limit_next(1, retry_after=None)
        async with session.request(method, base + path, headers={"Authorization": "Bearer good-token"}) as r:
            assert r.status == (403 if kind == "salesforce" else 429) and await r.json() == fx(kind, limited)
            assert "Retry-After" not in r.headers
        if kind == "hubspot":  # HubSpot documents no Retry-After: the fake never sends one
            state.rate_limit_next(1, retry_after=2)
            async with session.request(method, base + path, headers={"Authorization": "Bearer good-token"}) as r:
                assert r.status == 429 and "Retry-After" not in r.headers
