"""HubSpot and Pipedrive write a call once when the answer to the create was lost (issue 9, point 2): the CRM
stored the call and then answered with a 500 or dropped the connection, so the job tries again; the retry
finds the record the first attempt wrote (``find_logged``) instead of writing a second one, and a note typed
in between lands in that record, once.

HubSpot: the job's key in ``hs_call_external_id``, searched with ``EQ``; its search index lags, so a miss is
asked once more. Pipedrive: no field for a key, so the user's call logs are paged through for the one with
the same owner, person, numbers, outcome and times.

Fixtures: ``hubspot/calls_search_hit.json`` is the search answer of reference §2.3
(CollectionResponseWithTotalSimplePublicObject) for a call; ``pipedrive/call_logs_list.json`` is
``GetCallLogsResponse`` of pipedrive/client-nodejs (``data`` as ``ResponseCallLogObject``,
``additional_data.pagination`` start/limit/more_items_in_collection)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs

from hejcti.crm import adapter_class
from hejcti.crm.base import CallRecord, Contact, Credentials, CrmAdapter, CrmTransientError
from hejcti.lookup import Account
from hejcti.metrics import Metrics
from tests.conftest import FIXTURES
from tests.crm_specs import BY_KIND
from tests.fakes.base import Running, lost_create
from tests.integration.test_records_durability import (
    FakeHub,
    FakeLookups,
    FakeSession,
    hang_up,
    job,
    make_ready,
    note,
    ring,
    seed,
)
from workers.records import Records

GOOD = Credentials("good-token")
CALLER = "+4915791234567"
OWN = "+4921112345670"
START = datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC)
END = datetime(2025, 11, 24, 14, 5, 45, tzinfo=UTC)
RING_CALLER = "+49 30 12345678"  # how the fakes store the number tests.integration.test_records_durability rings with


def fx(kind: str, name: str) -> Any:
    return json.loads((FIXTURES / "crm" / kind / name).read_text())


def call(contact: Contact | None, *, key: str = "xc1", owner: str | None = None,
         start: datetime = START) -> CallRecord:
    return CallRecord(key=key, call_id="C1", direction="in", number=CALLER, own_number=OWN, answered=True,
                      voicemail=False, cause="normalClearing", started_at=start, ended_at=start + (END - START),
                      duration_s=154, contact=contact, owner=owner, sipgate_user="w0", note="Wants the offer.")


def seed_julia(kind: str, state: Any, phone: str) -> None:
    spec = BY_KIND[kind]
    state.add_contact(spec.ids[0], "Julia", "Schmidt", phone, owner=spec.owner, company_id=spec.company_id,
                      company="Acme GmbH")


def adapter(kind: str, base: str, http: aiohttp.ClientSession) -> CrmAdapter:
    a = adapter_class(kind)(instance=base, region="DE", http=http, budget=30)
    if kind == "hubspot":
        a.index_lag_s = 0.01  # type: ignore[attr-defined]  # the pause before the second search, short here
    return a


@pytest.fixture
async def served(kind):
    """(state, adapter) for the CRM named by the test's ``kind`` parameter, its fake seeded with the caller."""
    state = BY_KIND[kind].fake.State()
    seed_julia(kind, state, BY_KIND[kind].stored)
    async with Running(BY_KIND[kind].fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        yield state, adapter(kind, base, http)


# -------------------------------------------------------------------------------- adapter level


@pytest.mark.parametrize("how", ["500", "drop"])
@pytest.mark.parametrize("kind", ["hubspot", "pipedrive"])
async def test_the_call_whose_answer_was_lost_is_found_with_its_body(served, kind, how):
    state, crm = served
    (contact,) = await crm.lookup(CALLER, GOOD)
    record = call(contact, owner=BY_KIND[kind].owner)
    created = await lost_create(state, crm, record, GOOD, how)
    found = await crm.find_logged(record, GOOD)
    assert found is not None and found.record_id == str(created["id"])
    assert found.body == record.description("DE") and found.body.endswith("Wants the offer.")
    assert found.url is not None and found.url.endswith(
        f"/record/0-48/{created['id']}" if kind == "hubspot" else f"/person/{contact.id}")


@pytest.mark.parametrize("kind", ["hubspot"])
async def test_hubspot_finds_by_the_key_only(served):
    state, crm = served
    (contact,) = await crm.lookup(CALLER, GOOD)
    record = call(contact)
    logged = await crm.log_call(record, GOOD)
    assert state.calls[logged.record_id]["properties"]["hs_call_external_id"] == "hejcti-xc1-in"
    assert await crm.find_logged(replace(record, key="xc2"), GOOD) is None  # another call's key
    assert await crm.find_logged(replace(record, key="XC1"), GOOD) is None  # the key exactly
    assert (await crm.find_logged(replace(record, started_at=START + timedelta(hours=1)), GOOD)).record_id == \
        logged.record_id  # the key decides, not the time
    before = state.count("POST", "/calls/search")
    assert await crm.find_logged(call(contact, key="xc9"), GOOD) is None
    assert state.count("POST", "/calls/search") - before == 2  # a miss is asked once more, then no more


@pytest.mark.parametrize("kind", ["hubspot", "salesforce"])
async def test_the_two_ends_of_one_call_get_a_record_each(served, kind):
    """Two Hej CTI accounts sharing one CRM both see a call between them under the same xcid, one inbound,
    one outbound: the key written (HubSpot ``hs_call_external_id``, Salesforce ``CallObject``) is the key and
    the direction, so each end's search finds its own record, never the other end's."""
    state, crm = served
    inbound = call(None, key="xc-shared")
    outbound = replace(inbound, direction="out")
    first = await crm.log_call(inbound, GOOD)
    assert await crm.find_logged(outbound, GOOD) is None
    second = await crm.log_call(outbound, GOOD)
    assert second.record_id != first.record_id and len(state.created) == 2
    assert (await crm.find_logged(inbound, GOOD)).record_id == first.record_id
    assert (await crm.find_logged(outbound, GOOD)).record_id == second.record_id


@pytest.mark.parametrize("kind", ["hubspot"])
async def test_hubspot_asks_again_when_the_index_lags(served):
    """A call created a moment ago is not in HubSpot's search yet: the first search misses it, the second
    (after ``index_lag_s``) finds it."""
    state, crm = served
    state.index_lag_searches = 1
    (contact,) = await crm.lookup(CALLER, GOOD)
    record = call(contact, key="xc-lag")
    created = await lost_create(state, crm, record, GOOD)
    before = state.count("POST", "/calls/search")
    found = await crm.find_logged(record, GOOD)
    assert found is not None and found.record_id == created["id"]
    assert state.count("POST", "/calls/search") - before == 2


@pytest.mark.parametrize("kind", ["pipedrive"])
async def test_pipedrive_finds_the_call_by_owner_person_and_time(served):
    state, crm = served
    (contact,) = await crm.lookup(CALLER, GOOD)
    owner = BY_KIND["pipedrive"].owner
    # 120 other calls of the same caller, an hour apart, written before: the list is paged (50 a page)
    for i in range(120):
        await crm.log_call(call(contact, key=f"old{i}", owner=owner, start=START - timedelta(hours=i + 1)), GOOD)
    record = call(contact, owner=owner)
    logged = await crm.log_call(record, GOOD)
    before = state.count("GET", "/api/v1/callLogs?")
    found = await crm.find_logged(record, GOOD)
    assert found is not None and found.record_id == logged.record_id and found.body == record.description("DE")
    assert state.count("GET", "/api/v1/callLogs?") - before == 3  # 50 + 50 + 21
    assert (await crm.find_logged(replace(record, key="another"), GOOD)).record_id == logged.record_id  # no key
    near = replace(record, started_at=START + timedelta(seconds=1), ended_at=END + timedelta(seconds=1))
    assert (await crm.find_logged(near, GOOD)).record_id == logged.record_id  # a second's rounding
    for other in (
        replace(record, started_at=START + timedelta(seconds=30), ended_at=END + timedelta(seconds=30)),
        replace(record, contact=None),  # another (no) person
        replace(record, owner="7654321"),  # another owner
        replace(record, number="+4915799999999"),  # another caller
        replace(record, answered=False, duration_s=None),  # another outcome
    ):
        assert await crm.find_logged(other, GOOD) is None


@pytest.mark.parametrize("kind", ["pipedrive"])
async def test_pipedrive_a_missed_call_is_not_taken_for_the_one_before(served):
    """The caller rings again 40 s after a missed call, and the create of the second missed call fails with
    a 500 that the CRM did not act on: same owner, person, numbers, outcome and duration as the first call's
    log, but another call, so nothing is found and the retry writes it."""
    state, crm = served
    (contact,) = await crm.lookup(CALLER, GOOD)
    first = replace(call(contact, key="xcA"), answered=False, duration_s=None, ended_at=START + timedelta(seconds=20))
    await crm.log_call(first, GOOD)
    second = replace(first, key="xcB", started_at=first.started_at + timedelta(seconds=40),
                     ended_at=first.ended_at + timedelta(seconds=40))
    state.fail_next(1, 500)
    with pytest.raises(CrmTransientError):
        await crm.log_call(second, GOOD)
    assert len(state.created) == 1
    assert await crm.find_logged(second, GOOD) is None
    assert (await crm.find_logged(first, GOOD)).record_id == str(state.created[0]["id"])


@pytest.mark.parametrize("kind", ["pipedrive"])
async def test_pipedrive_reads_at_most_max_log_pages(served):
    state, crm = served
    (contact,) = await crm.lookup(CALLER, GOOD)
    for i in range(60):
        await crm.log_call(call(contact, key=f"old{i}", start=START - timedelta(hours=i + 1)), GOOD)
    record = call(contact)
    await crm.log_call(record, GOOD)
    crm.max_log_pages = 1  # type: ignore[attr-defined]
    assert await crm.find_logged(record, GOOD) is None
    assert state.count("GET", "/api/v1/callLogs?") == 1


# -------------------------------------------------------------------- the vendors' documented answers


async def test_hubspot_reads_the_documented_search_answer():
    async with aiohttp.ClientSession() as http:
        crm = adapter("hubspot", "https://api.hubapi.com", http)
        with aioresponses() as m:
            m.get("https://api.hubapi.com/account-info/v3/details", payload=fx("hubspot", "account_details.json"))
            m.post("https://api.hubapi.com/crm/v3/objects/calls/search", payload=fx("hubspot", "calls_search_hit.json"))
            found = await crm.find_logged(call(None), GOOD)
            (sent,) = [v for (_, url), v in m.requests.items() if str(url).endswith("/calls/search")]
    assert found is not None and found.record_id == "46203421009" and found.body.endswith("Wants the offer.")
    assert found.url == "https://app-eu1.hubspot.com/contacts/62515/record/0-48/46203421009"
    assert sent[0].kwargs["json"]["filterGroups"] == [
        {"filters": [{"propertyName": "hs_call_external_id", "operator": "EQ", "value": "hejcti-xc1-in"}]}]


async def test_pipedrive_reads_the_documented_list_answer():
    base = "https://acme.pipedrive.com"
    contact = Contact(crm="pipedrive", kind="person", id="42", name="Julia Schmidt", parent_id="7")
    record = replace(call(contact, owner="1234567"), note="Wants the offer & a call back.")
    logs = re.compile(re.escape(f"{base}/api/v1/callLogs") + r"\?.*")
    async with aiohttp.ClientSession() as http:
        crm = adapter("pipedrive", base, http)
        with aioresponses() as m:
            m.get(logs, payload=fx("pipedrive", "call_logs_list.json"))
            found = await crm.find_logged(record, GOOD)
            m.get(logs, payload={"success": True, "data": None, "additional_data": {"pagination": {
                "start": 0, "limit": 50, "more_items_in_collection": False}}})
            assert await crm.find_logged(record, GOOD) is None  # v1's empty list: data null
    assert found is not None and found.record_id == "6a4c2e8f0b1d3f5a7c9e1b3d"
    assert found.url == "https://acme.pipedrive.com/person/42"
    assert found.body == record.description("DE")  # the HTML note read back as the text it was made from


# ---------------------------------------------------------------- through the records worker


class Accounts:
    """The account of the records worker tests, with this CRM and its user mapped."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def get(self, account_id: str) -> Account:
        return Account(id=account_id, crm_kind=self.kind, crm_instance=None, region="DE", log_calls=True)

    async def crm_users(self, account_id: str) -> dict[str, str | None]:
        return {"w0": BY_KIND[self.kind].owner}


@pytest.mark.parametrize("how", ["500", "drop"])
@pytest.mark.parametrize("kind", ["hubspot", "pipedrive"])
async def test_lost_create_and_a_note_meanwhile_make_one_record_with_the_note_once(pool, kind, how):
    spec = BY_KIND[kind]
    state = spec.fake.State()
    seed_julia(kind, state, RING_CALLER)
    await seed(pool, crm=kind)
    session = FakeSession("acc_a", "w0")
    session.credentials = GOOD
    hub = FakeHub(session)
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        crm = adapter(kind, base, http)
        r = Records(pool=pool, hub=hub, accounts=Accounts(kind), lookups=FakeLookups(crm),  # type: ignore[arg-type]
                    metrics=Metrics())
        await ring(pool, "LOST")
        assert await note(r, "LOST", "first") is True
        await hang_up(pool, "LOST")
        await make_ready(pool)
        state.lose_next_create(1, how)
        assert await r.once() == 1  # written, its answer lost: tried again later
        (created,) = state.created
        rid = str(created["id"])
        assert (await job(pool))["state"] == "ready"
        assert await note(r, "LOST", "second") is True  # meanwhile
        await pool.execute("UPDATE call_records SET run_after = now()")
        with capture_logs() as logs:
            assert await r.once() == 1
        assert len(state.created) == 1  # found, not written again
        (found,) = [e for e in logs if e["event"] == "call.record.found"]
        assert found["crm_record"] == rid
        row = await job(pool)
        assert row["state"] == "done" and row["crm_record_id"] == rid and row["note_pending"] is True
        assert hub.published[-1]["record_id"] == rid  # the pop learns where the call went
        assert await r.once() == 1  # only the part of the note the record lacks
        body = spec.body_of(state, rid)
        assert body.count("first") == 1 and body.count("second") == 1
        assert len(state.created) == 1 and spec.contact_of(created) == spec.ids[0]
        row = await job(pool)
        assert row["state"] == "done" and row["note_pending"] is False


class Remapped(Accounts):
    """The account's user mapping as the test sets it between attempts (``owners``)."""

    def __init__(self, kind: str, owners: dict[str, str | None]) -> None:
        super().__init__(kind)
        self.owners = owners

    async def crm_users(self, account_id: str) -> dict[str, str | None]:
        return dict(self.owners)


@pytest.mark.parametrize("changed", ["contact", "owner"])
async def test_pipedrive_retry_sends_the_first_creates_contact_and_owner(pool, changed):
    """The first attempt's create went out without the caller's person (its lookup failed) or without an owner
    (the user was not mapped yet), and its answer was lost; by the retry the lookup works and the user is
    mapped. The retry keeps what the first create was built from, so the call log it looks for is the one the
    first attempt wrote: one call log, not two. The job keeps ids only, never the contact's name."""
    spec = BY_KIND["pipedrive"]
    state = spec.fake.State()
    seed_julia("pipedrive", state, RING_CALLER)
    await seed(pool, crm="pipedrive")
    session = FakeSession("acc_a", "w0")
    session.credentials = GOOD
    accounts = Remapped("pipedrive", {"w0": spec.owner} if changed == "contact" else {})
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        crm = adapter("pipedrive", base, http)
        r = Records(pool=pool, hub=FakeHub(session), accounts=accounts, lookups=FakeLookups(crm),  # type: ignore[arg-type]
                    metrics=Metrics())
        await ring(pool, "FIRST")
        await hang_up(pool, "FIRST")
        await make_ready(pool)
        if changed == "contact":
            state.fail_next(crm.max_attempts, 500)  # every try of the job's lookup: no person for the create
        state.lose_next_create(1, "500")
        assert await r.once() == 1
        (created,) = state.created
        assert "person_id" not in created if changed == "contact" else "user_id" not in created
        assert (await job(pool))["state"] == "ready"
        accounts.owners = {"w0": spec.owner}  # mapped now; and the lookup answers now
        await pool.execute("UPDATE call_records SET run_after = now()")
        with capture_logs() as logs:
            assert await r.once() == 1
        assert len(state.created) == 1  # found, not written again
        assert [e["crm_record"] for e in logs if e["event"] == "call.record.found"] == [str(created["id"])]
        row = await job(pool)
        assert row["state"] == "done" and row["crm_record_id"] == str(created["id"])
        assert "Julia" not in json.dumps(row["data"]) and "Acme" not in json.dumps(row["data"])
        kept = row["data"]["first_create"]
        if changed == "owner":  # the person's ids only, and no owner, as the first create went out
            assert kept["contact"] == {"crm": "pipedrive", "kind": "person", "id": "42", "parent_id": "7"}
            assert kept.get("owner") is None
        else:
            assert kept.get("contact") is None and kept["owner"] == spec.owner
