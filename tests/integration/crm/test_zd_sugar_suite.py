"""Zendesk, SugarCRM and SuiteCRM adapters against their fakes on a real local server: call record content
field by field against the vendor fixtures, hit verification with look-alikes, ranking order, Retry-After,
vendor error shapes, ``--crm-instance`` forms, duration splitting, and the lookup filters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
import pytest

from hejcti.crm import adapter_class
from hejcti.crm.base import CallRecord, Contact, Credentials, CrmAuthError, CrmPermanentError, duration_parts
from tests.fakes import sugarcrm as sugar_fake
from tests.fakes import suitecrm as suite_fake
from tests.fakes import zendesk as zd_fake
from tests.fakes.base import Running

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "crm"
GOOD = Credentials("good-token")
CALLER = "+4915791234567"  # NSN 15791234567, last eight digits 91234567
JULIA = "+493012345678"  # the fixtures' caller (+49 30 12345678)
STARTED = datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC)
ENDED = datetime(2025, 11, 24, 14, 5, 45, tzinfo=UTC)
LINE = "+4921112345670"


def fixture(crm: str, name: str) -> Any:
    return json.loads((FIXTURES / crm / name).read_text())


class Served:
    def __init__(self, kind: str, state: Any, adapter: Any, base: str, http: aiohttp.ClientSession) -> None:
        self.kind, self.state, self.adapter, self.base, self.http = kind, state, adapter, base, http


async def _serve(kind: str, fake: Any) -> AsyncIterator[Served]:
    state = fake.State()
    async with Running(fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        yield Served(kind, state, adapter_class(kind)(instance=base, region="DE", http=http, budget=30), base, http)


@pytest.fixture
async def zd() -> AsyncIterator[Served]:
    async for s in _serve("zendesk", zd_fake):
        yield s


@pytest.fixture
async def sugar() -> AsyncIterator[Served]:
    async for s in _serve("sugarcrm", sugar_fake):
        yield s


@pytest.fixture
async def suite() -> AsyncIterator[Served]:
    async for s in _serve("suitecrm", suite_fake):
        yield s


def call(direction: str, answered: bool, contact: Contact | None, owner: str | None, *, seconds: int | None = 154,
         number: str | None = JULIA) -> CallRecord:
    return CallRecord(key="xc-" + direction + str(answered), call_id="C1", direction=direction,  # type: ignore[arg-type]
                      number=number, own_number=LINE, answered=answered, voicemail=False,
                      cause="normalClearing" if answered else "cancel", started_at=STARTED, ended_at=ENDED,
                      duration_s=seconds if answered else None, contact=contact, owner=owner, sipgate_user="w0")


# ------------------------------------------------------------------------------------ 9. record content

SUGAR_REQ = fixture("sugarcrm", "call_log_request.json")
SUITE_REQ = fixture("suitecrm", "call_log_request.json")["data"]
FREE_TEXT = ("name", "description")  # ours say the same in our words: checked separately


async def three_calls(served: Served, found: dict[str, Contact], owner: str) -> list[dict[str, Any]]:
    """Answered inbound (the contact), missed inbound (the lead), outbound of 3590 s (the account)."""
    await served.adapter.log_call(call("in", True, found["contact"], owner), GOOD)
    await served.adapter.log_call(call("in", False, found["lead"], owner), GOOD)
    await served.adapter.log_call(call("out", True, found["account"], owner, seconds=3590), GOOD)
    return served.state.created


def structured(record: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in FREE_TEXT + ("id", "_module") + skip}


async def test_sugarcrm_call_records_match_the_vendor_request(sugar):
    s = sugar.state
    contact_id, owner = SUGAR_REQ["parent_id"], SUGAR_REQ["assigned_user_id"]
    s.add_contact(contact_id, "Julia", "Schmidt", "+49 30 12345678", owner=owner, company_id="9a1e6d4c-1",
                  company="Acme GmbH")
    s.add_contact("b71c5f30-lead", "Max", "Mustermann", "030 12345678", module="Leads")
    s.add_contact("0c9d2e11-acct", "Acme", "GmbH", "+49 30 12345678", module="Accounts")
    found = {c.kind: c for c in await sugar.adapter.lookup(JULIA, GOOD)}

    answered, missed, outbound = await three_calls(sugar, found, owner)

    assert structured(answered) == structured(SUGAR_REQ)  # every field, the contacts link included
    assert answered["name"] == "Inbound call from 030 12345678" and "154 s" in answered["description"]
    assert structured(missed) == {**structured(SUGAR_REQ, ("contacts",)), "status": "Not Held",
                                  "duration_hours": 0, "duration_minutes": 0, "parent_type": "Leads",
                                  "parent_id": "b71c5f30-lead", "leads": {"add": ["b71c5f30-lead"]}}
    assert missed["name"].startswith("Missed call from")
    assert structured(outbound) == {**structured(SUGAR_REQ, ("contacts",)), "direction": "Outbound",
                                    "duration_hours": 1, "duration_minutes": 0, "parent_type": "Accounts",
                                    "parent_id": "0c9d2e11-acct"}  # an account gets no contacts/leads link
    assert outbound["name"] == "Outbound call to 030 12345678"


async def test_suitecrm_call_records_match_the_vendor_request(suite):
    s = suite.state
    attrs = SUITE_REQ["attributes"]
    contact_id, owner = attrs["parent_id"], attrs["assigned_user_id"]
    s.add_contact(contact_id, "Julia", "Schmidt", "+49 30 12345678", owner=owner, company="Acme GmbH")
    s.add_contact("5e2a9c70-lead", "Max", "Mustermann", "030 12345678", module="Leads")
    s.add_contact("4d5c9a0e-acct", "Acme", "GmbH", "+49 30 12345678", module="Accounts")
    found = {c.kind: c for c in await suite.adapter.lookup(JULIA, GOOD)}

    answered, missed, outbound = await three_calls(suite, found, owner)

    assert structured(answered) == structured(attrs)
    assert answered["name"] == "Inbound call from 030 12345678" and "154 s" in answered["description"]
    assert structured(missed) == {**structured(attrs), "status": "Not Held", "duration_hours": 0,
                                  "duration_minutes": 0, "parent_type": "Leads", "parent_id": "5e2a9c70-lead"}
    assert structured(outbound) == {**structured(attrs), "direction": "Outbound", "duration_hours": 1,
                                    "duration_minutes": 0, "parent_type": "Accounts", "parent_id": "4d5c9a0e-acct"}
    assert outbound["name"] == "Outbound call to 030 12345678"
    assert {c["type"] for c in s.calls.values()} == {"Call"}  # created as module Calls, stored as object Call


async def test_zendesk_ticket_is_option_c_of_the_reference(zd):
    s = zd.state
    s.add_contact("35436", "Julia", "Schmidt", "+49 30 12345678", company_id="57542", company="Acme GmbH")
    (julia,) = await zd.adapter.lookup(JULIA, GOOD)
    agent = "9873843"

    await zd.adapter.log_call(call("in", True, julia, agent), GOOD)
    await zd.adapter.log_call(call("in", False, julia, agent), GOOD)
    await zd.adapter.log_call(call("out", True, julia, agent), GOOD)
    answered, missed, outbound = (dict(t) for t in s.created)
    assert [t["external_id"] for t in (answered, missed, outbound)] == [  # how a retry finds its ticket
        "hejcti-xc-inTrue-in", "hejcti-xc-inFalse-in", "hejcti-xc-outTrue-out"]
    for t in (answered, missed, outbound):
        assert set(t) - {"id", "comments"} == {"subject", "requester_id", "assignee_id", "tags", "comment",
                                               "external_id"}
        assert t["requester_id"] == 35436 and t["assignee_id"] == 9873843  # integers, as Zendesk ids are
        assert t["comment"]["public"] is False and set(t["comment"]) == {"body", "public"}
    assert answered["subject"] == "Inbound call from 030 12345678"
    assert answered["tags"] == ["cti_call", "cti_answered"]
    assert "Talk time: 154 s." in answered["comment"]["body"]
    assert missed["subject"] == "Missed call from 030 12345678" and missed["tags"] == ["cti_call", "cti_missed"]
    assert "Talk time" not in missed["comment"]["body"]
    assert outbound["subject"] == "Outbound call to 030 12345678"
    assert outbound["tags"] == ["cti_call", "cti_answered"] and "Talk time: 154 s." in outbound["comment"]["body"]


# ----------------------------------------------------------------------------------- 5. duration split


@pytest.mark.parametrize("seconds, parts", [(None, (0, 0)), (0, (0, 0)), (10, (0, 1)), (154, (0, 3)),
                                            (3540, (0, 59)), (3590, (1, 0)), (3600, (1, 0)), (3601, (1, 1)),
                                            (7199, (2, 0))])
def test_duration_minutes_stay_below_60(seconds, parts):
    assert duration_parts(seconds) == parts


async def _one_hour(served: Served) -> None:
    await served.adapter.log_call(call("in", True, None, None, seconds=3590), GOOD)
    (created,) = served.state.created
    assert (created["duration_hours"], created["duration_minutes"]) == (1, 0)


async def test_sugarcrm_3590_seconds_is_one_hour(sugar):
    await _one_hour(sugar)


async def test_suitecrm_3590_seconds_is_one_hour(suite):
    await _one_hour(suite)


# ---------------------------------------------------------------------------- 10. hit verification


async def test_zendesk_drops_a_different_number_that_ends_in_the_callers_digits(zd):
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 157 91234567")
    zd.state.add_contact("35499", "Wien", "Office", "+43 15791234567")  # Austrian: also ends in 15791234567
    assert [c.id for c in await zd.adapter.lookup(CALLER, GOOD)] == ["35436"]
    assert "type:user phone:*15791234567" in unquote_plus(zd.state.requests[0][1])


@pytest.mark.parametrize("search", [True, False], ids=["globalsearch", "filter"])
async def test_sugarcrm_drops_look_alikes(sugar, search):
    s = sugar.state
    s.search_available = search
    s.add_contact("f3c8e4a2-1", "Julia", "Schmidt", "+49 157 91234567")
    # globalsearch matches digit substrings: one more digit at the end is still a hit there
    s.add_contact("f3c8e4a2-8", "Long", "Number", "+49 1579 12345678")
    # the filter fallback matches the last eight digits: another area code with the same eight is a hit there
    s.add_contact("f3c8e4a2-9", "Berlin", "Office", "+49 30 91234567")
    assert [c.id for c in await sugar.adapter.lookup(CALLER, GOOD)] == ["f3c8e4a2-1"]


async def test_suitecrm_drops_look_alikes(suite):
    suite.state.add_contact("7b0f6a2e-1", "Julia", "Schmidt", "+49 157 91234567")
    suite.state.add_contact("7b0f6a2e-9", "Berlin", "Office", "+49 30 91234567")  # LIKE %9%1%2%3%4%5%6%7 hits
    suite.state.add_contact("7b0f6a2e-8", "Spaced", "Other", "+49 30 9 1 2 3 4 5 6 7", module="Leads")
    assert [c.id for c in await suite.adapter.lookup(CALLER, GOOD)] == ["7b0f6a2e-1"]


# ------------------------------------------------------------------------------------------ 11. ranking

# inserted worst first: a suffix match (a local number without area code), a company, then people
RANKED = [("r-suffix", "Local", "Number", "91234567", None, "2025-11-23", "Contacts"),
          ("r-company", "Acme", "GmbH", "+49 157 91234567", "u-other", "2025-11-22", "Accounts"),
          ("r-old", "Old", "Contact", "0157 91234567", "u-other", "2025-11-01", "Contacts"),
          ("r-new", "New", "Lead", "+49 15791234567", "u-other", "2025-11-20", "Leads"),
          ("r-mine", "Own", "Contact", "015791234567", "u-me", "2024-01-01", "Contacts")]
EXPECTED = ["r-mine", "r-new", "r-old", "r-company", "r-suffix"]


async def test_sugarcrm_ranking(sugar):
    sugar.state.search_available = False  # the filter finds the local number (globalsearch would not)
    for rid, first, last, phone, owner, day, module in RANKED:
        sugar.state.add_contact(rid, first, last, phone, owner=owner, module=module)
        sugar.state.records[-1]["date_modified"] = f"{day}T10:00:00+00:00"
    got = await sugar.adapter.lookup(CALLER, GOOD, crm_user="u-me")
    assert [c.id for c in got] == EXPECTED
    assert [c.match for c in got] == ["exact"] * 4 + ["suffix"]


async def test_suitecrm_ranking(suite):
    for rid, first, last, phone, owner, day, module in RANKED:
        suite.state.add_contact(rid, first, last, phone, owner=owner, module=module)
        suite.state.records[module][-1]["attributes"]["date_modified"] = f"{day} 10:00:00"
    got = await suite.adapter.lookup(CALLER, GOOD, crm_user="u-me")
    assert [c.id for c in got] == EXPECTED
    assert [c.kind for c in got] == ["contact", "lead", "contact", "account", "contact"]


async def test_zendesk_ranking_by_recency_and_users_have_no_owner(zd):
    s = zd.state
    for uid, day in (("301", "2025-01-05"), ("302", "2025-11-20"), ("303", "2025-06-30")):
        s.add_contact(uid, "User", uid, "+49 157 91234567")
        s.users[-1]["updated_at"] = f"{day}T08:00:00Z"
    s.users[0]["role"] = "agent"  # the oldest is an agent: the mapped agent's own user record
    got = await zd.adapter.lookup(CALLER, GOOD, crm_user="301")
    assert [c.id for c in got] == ["302", "303", "301"]  # an agent's user record is not "their own record"
    assert [c.owner_id for c in got] == [None, None, None]


# ------------------------------------------------------------------------------------ 12. Retry-After


async def test_zendesk_waits_for_retry_after(zd):
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 157 91234567")
    zd.state.rate_limit_next(1, retry_after=1)
    assert len(await zd.adapter.lookup(CALLER, GOOD)) == 1
    first, second = zd.state.stamps[:2]
    assert second - first >= 0.9 and zd.state.count("GET", "/search.json") == 2


async def test_sugarcrm_waits_for_retry_after_on_its_429(sugar):
    sugar.state.add_contact("f3c8e4a2-1", "Julia", "Schmidt", "+49 157 91234567")
    sugar.state.rate_limit_next(1, retry_after=1)
    async with sugar.http.get(f"{sugar.base}/rest/v11/globalsearch", headers={"OAuth-Token": "good-token"}) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "1"
        assert set(await r.json()) == {"error", "error_message"}  # Sugar's error shape (reference §5.7)
    sugar.state.stamps.clear()
    sugar.state.rate_limit_next(1, retry_after=1)
    assert len(await sugar.adapter.lookup(CALLER, GOOD)) == 1
    first, second, _company = sugar.state.stamps  # the search, again after 1 s, then the hit's account
    assert second - first >= 0.9


async def test_suitecrm_waits_for_retry_after_on_a_busy_server(suite):
    suite.state.add_contact("7b0f6a2e-1", "Julia", "Schmidt", "+49 157 91234567")
    suite.state.rate_limit_next(1, retry_after=1)  # self-hosted: a 503 from the web server with Retry-After
    assert len(await suite.adapter.lookup(CALLER, GOOD)) == 1
    stamps = suite.state.stamps
    assert len(stamps) == 4 and stamps[-1] - stamps[0] >= 0.9  # three modules, one of them again after 1 s


# --------------------------------------------------------------------------------- 13. vendor errors


async def test_suitecrm_400_module_error_is_permanent(suite):
    suite.state.vendor_errors.append((400, fixture("suitecrm", "error_bad_request.json")))
    with pytest.raises(CrmPermanentError, match="Module Contact does not exist"):
        await suite.adapter.lookup(CALLER, GOOD)
    for module in ("Contacts", "Leads", "Accounts"):  # each module asked once: nothing retried
        assert suite.state.count("GET", f"/Api/V8/module/{module}") == 1


async def test_suitecrm_400_on_a_missing_call_is_permanent(suite):
    with pytest.raises(CrmPermanentError, match="is not found"):
        await suite.adapter.append_note("0000-missing", "text", GOOD)
    assert suite.state.count("GET", "/Api/V8/module/Calls/0000-missing") == 1


@pytest.mark.parametrize("status, name", [(404, "error_not_found.json"), (422, "error_record_invalid.json")])
async def test_zendesk_error_shapes_are_permanent(zd, status, name):
    zd.state.vendor_errors.append((status, fixture("zendesk", name)))
    with pytest.raises(CrmPermanentError):
        await zd.adapter.lookup(CALLER, GOOD)
    assert len(zd.state.requests) == 1
    zd.state.vendor_errors.append((status, fixture("zendesk", name)))
    with pytest.raises(CrmPermanentError):
        await zd.adapter.log_call(call("in", True, None, None), GOOD)
    assert zd.state.count("POST", "/api/v2/tickets.json") == 1 and zd.state.created == []


async def test_sugarcrm_not_found_is_permanent(sugar):
    sugar.state.vendor_errors.append((404, fixture("sugarcrm", "error_not_found.json")))
    with pytest.raises(CrmPermanentError):
        await sugar.adapter.append_note("0000-missing", "text", GOOD)
    assert len(sugar.state.requests) == 1


# ------------------------------------------------------------------------------ 8. Sugar's need_login


async def test_sugarcrm_fake_answers_need_login_without_a_token_and_invalid_grant_with_a_bad_one(sugar):
    url = f"{sugar.base}/rest/v11/globalsearch"
    async with sugar.http.get(url) as r:
        assert r.status == 401 and await r.json() == fixture("sugarcrm", "need_login.json")
    async with sugar.http.get(url, headers={"OAuth-Token": "stale"}) as r:
        assert r.status == 401 and await r.json() == fixture("sugarcrm", "token_expired.json")
    with pytest.raises(CrmAuthError, match="need_login"):
        await sugar.adapter.lookup(CALLER, Credentials(""))


# --------------------------------------------------------------------- 6/7. lookups of odd written forms


async def test_suitecrm_finds_numbers_written_with_spaces_and_punctuation(suite):
    suite.state.add_contact("7b0f6a2e-1", "Julia", "Schmidt", "0157 9123 4567")
    suite.state.add_contact("7b0f6a2e-2", "Max", "Mustermann", "+49 (157) 912 345 67", module="Leads")
    suite.state.add_contact("7b0f6a2e-3", "Acme", "GmbH", "+49-157-9123-45-67", module="Accounts")
    got = await suite.adapter.lookup(CALLER, GOOD)
    assert sorted(c.id for c in got) == ["7b0f6a2e-1", "7b0f6a2e-2", "7b0f6a2e-3"]
    query = unquote_plus([p for _, p in suite.state.requests if "/Contacts" in p][0])
    assert "filter[phone_work][like]=%9%1%2%3%4%5%6%7&" in query


async def test_sugarcrm_filter_finds_the_last_digits_inside_the_field(sugar):
    sugar.state.search_available = False
    sugar.state.add_contact("f3c8e4a2-1", "Julia", "Schmidt", "+49 157 91234567 (mobil)")
    (c,) = await sugar.adapter.lookup(CALLER, GOOD)
    assert c.id == "f3c8e4a2-1" and c.match == "exact"


# ------------------------------------------------------------------------------ 1. Zendesk's company


async def test_zendesk_company_from_the_users_organization(zd):
    s = zd.state
    s.add_contact("35436", "Julia", "Schmidt", "+49 157 91234567", company_id="57542", company="Acme GmbH")
    s.add_contact("35437", "Max", "Mustermann", "0157 91234567", company_id="57542", company="Acme GmbH")
    s.add_contact("35438", "Erika", "Muster", "+49 157 9123 4567", company_id="60001", company="Beta AG")
    s.add_contact("35439", "Ohne", "Firma", "015791234567")
    got = {c.id: c for c in await zd.adapter.lookup(CALLER, GOOD)}
    assert {k: c.company for k, c in got.items()} == {"35436": "Acme GmbH", "35437": "Acme GmbH",
                                                      "35438": "Beta AG", "35439": None}
    assert got["35436"].public()["company"] == "Acme GmbH"
    (org_call,) = [unquote_plus(p) for _, p in s.requests if "organizations" in p]
    assert org_call == "/api/v2/organizations/show_many.json?ids=57542,60001"  # one request for all hits


async def test_zendesk_pop_survives_a_failing_organization_lookup(zd):
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 157 91234567", company_id="57542", company="Acme GmbH")
    await zd.adapter.lookup(CALLER, GOOD)
    orig = zd.adapter.request

    async def failing(method, url, **kw):
        if "organizations" in url:
            raise CrmPermanentError("boom", crm="zendesk")
        return await orig(method, url, **kw)

    zd.adapter.request = failing
    (c,) = await zd.adapter.lookup(CALLER, GOOD)
    assert c.id == "35436" and c.company is None


# ------------------------------------------------------------------------- 3. Zendesk --crm-instance


@pytest.mark.parametrize("given", ["acme", "acme.zendesk.com", "https://acme.zendesk.com",
                                   "https://acme.zendesk.com/", "ACME.zendesk.com"])
def test_zendesk_adapter_base_url(given):
    adapter = adapter_class("zendesk")(instance=given, region="DE", http=None)
    assert adapter.base_url(GOOD).lower() == "https://acme.zendesk.com"


@pytest.mark.parametrize("given", ["acme", "acme.zendesk.com", "https://acme.zendesk.com"])
async def test_zendesk_instance_forms_through_admin(harness, given):
    acc = await harness.account(crm="zendesk", crm_instance=given)
    shown = await harness.admin.show_account(acc["account_id"])
    assert shown["crm_instance"] == "https://acme.zendesk.com"


@pytest.mark.parametrize("given", ["acme.example.com", "ac me", ".zendesk.com", "acme/x"])
async def test_zendesk_bad_instances_are_refused(harness, given):
    from hejcti.errors import BadRequestError

    with pytest.raises(BadRequestError, match="--crm-instance"):
        await harness.account(crm="zendesk", crm_instance=given)


# --------------------------------------------------------------------- 4. Sugar/Suite need an instance


@pytest.mark.parametrize("kind", ["sugarcrm", "suitecrm"])
async def test_sugar_and_suite_need_an_instance(harness, kind):
    from hejcti.errors import BadRequestError

    for missing in (None, "", "  "):
        with pytest.raises(BadRequestError, match=f"--crm {kind} needs --crm-instance URL"):
            await harness.account(crm=kind, crm_instance=missing)
    acc = await harness.account(crm=kind, crm_instance="https://crm.example.com/")
    assert (await harness.admin.show_account(acc["account_id"]))["crm_instance"] == "https://crm.example.com"


async def test_zendesk_create_whose_answer_is_lost_is_sent_again_under_its_key(zd):
    """Zendesk's Idempotency-Key makes a repeated create harmless: one ticket, and its id, after a lost answer."""
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 30 12345678")
    (julia,) = await zd.adapter.lookup(JULIA, GOOD)
    zd.state.lose_answers = 1
    logged = await zd.adapter.log_call(call("in", True, julia, "9873843"), GOOD)
    assert zd.state.count("POST", "/api/v2/tickets.json") == 2  # sent again after the 502
    (ticket,) = zd.state.created
    assert logged.record_id == str(ticket["id"])
    assert set(zd.state.keyed) == {"hejcti-xc-inTrue-in"}
