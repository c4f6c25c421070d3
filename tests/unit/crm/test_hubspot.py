"""HubSpot adapter against HubSpot's own response shapes (aioresponses)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
import pytest
from aioresponses import aioresponses

from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAuthError,
    CrmCredentialsMissingError,
    CrmPermanentError,
    CrmRateLimitError,
    CrmTimeoutError,
)
from hejcti.crm.hubspot import Adapter
from tests.conftest import FIXTURES

FX = FIXTURES / "crm" / "hubspot"
API = "https://api.hubapi.com"
SEARCH = f"{API}/crm/v3/objects/contacts/search"
COMPANIES = f"{API}/crm/v3/objects/companies/search"
DETAILS = f"{API}/account-info/v3/details"
CREDS = Credentials("tok")
CALLER = "+493012345678"


def fx(name: str):
    return json.loads((FX / name).read_text())


@pytest.fixture
async def adapter():
    async with aiohttp.ClientSession() as http:
        yield Adapter(instance=None, region="DE", http=http, budget=30)


@pytest.fixture
def mocked():
    with aioresponses() as m:
        m.get(DETAILS, payload=fx("account_details.json"), repeat=True)
        yield m


def sent(m, url: str, n: int = 0) -> dict:
    calls = [c for (method, u), cs in m.requests.items() for c in cs if str(u) == url]
    return calls[n].kwargs["json"]


async def test_hit_with_deep_link_and_company(adapter, mocked):
    mocked.post(SEARCH, payload=fx("lookup_hit.json"))
    (c,) = await adapter.lookup(CALLER, CREDS)
    assert (c.kind, c.id, c.name, c.company) == ("contact", "51", "Julia Schmidt", "Acme GmbH")
    assert c.url == "https://app-eu1.hubspot.com/contacts/62515/record/0-1/51"
    assert c.match == "exact" and c.owner_id == "83210754" and c.parent_id == "9001"


async def test_request_searches_written_forms_and_calculated_digits(adapter, mocked):
    mocked.post(SEARCH, payload=fx("lookup_miss.json"))
    mocked.post(COMPANIES, payload=fx("lookup_miss.json"))
    assert await adapter.lookup(CALLER, CREDS) == []
    body = sent(mocked, SEARCH)
    groups = [g["filters"][0] for g in body["filterGroups"]]
    assert [g["propertyName"] for g in groups] == ["phone", "mobilephone", "hs_searchable_calculated_phone_number",
                                                   "hs_searchable_calculated_mobile_number"]
    assert {"+493012345678", "493012345678", "03012345678", "+49 30 12345678", "030 12345678"} <= set(groups[0]["values"])
    assert groups[2] == {"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": "3012345678"}
    assert len(body["filterGroups"]) <= 5  # HubSpot's limit
    assert sent(mocked, COMPANIES)["filterGroups"][0]["filters"][0]["propertyName"] == "phone"  # then companies


async def test_several_matches_ranked_own_then_newest(adapter, mocked):
    multiple = fx("lookup_multiple.json")
    multiple["results"][1]["properties"]["hubspot_owner_id"] = "me"
    mocked.post(SEARCH, payload=multiple)
    ids = [c.id for c in await adapter.lookup(CALLER, CREDS, crm_user="me")]
    assert ids == ["20451", "51"]
    mocked.post(SEARCH, payload=fx("lookup_multiple.json"))
    assert [c.id for c in await adapter.lookup(CALLER, CREDS)] == ["51", "20451"]  # newest first


async def test_odd_formats_verify_and_strangers_are_dropped(adapter, mocked):
    data = fx("lookup_multiple.json")
    data["results"][0]["properties"]["phone"] = "+49 (0)30 1234-5678"
    data["results"][1]["properties"]["phone"] = "+49 30 99999999"  # a hit HubSpot returned that is not the caller
    mocked.post(SEARCH, payload=data)
    assert [c.id for c in await adapter.lookup(CALLER, CREDS)] == ["51"]


async def test_company_when_no_contact(adapter, mocked):
    mocked.post(SEARCH, payload=fx("lookup_miss.json"))
    mocked.post(COMPANIES, payload={"total": 1, "results": [{"id": "9001", "properties": {
        "name": "Acme GmbH", "phone": "030 12345678", "hs_lastmodifieddate": "2025-01-01T00:00:00Z"}}]})
    (c,) = await adapter.lookup(CALLER, CREDS)
    assert (c.kind, c.name) == ("account", "Acme GmbH")
    assert c.url == "https://app-eu1.hubspot.com/contacts/62515/record/0-2/9001"


async def test_expired_token(adapter, mocked):
    mocked.post(SEARCH, status=401, payload=fx("token_expired.json"))
    with pytest.raises(CrmAuthError):
        await adapter.lookup(CALLER, Credentials("old"))
    mocked.post(SEARCH, payload=fx("lookup_hit.json"))
    assert len(await adapter.lookup(CALLER, Credentials("new"))) == 1


@pytest.mark.parametrize("headers", [{"Retry-After": "0"}, {}])
async def test_429_is_retried(adapter, mocked, headers):
    body = fx("rate_limited_search.json")
    mocked.post(SEARCH, status=429, payload=body, headers=headers)
    mocked.post(SEARCH, payload=fx("lookup_hit.json"))
    assert len(await adapter.lookup(CALLER, CREDS)) == 1


async def test_ten_secondly_limit_does_not_fit_a_lookup(mocked):
    async with aiohttp.ClientSession() as http:
        adapter = Adapter(instance=None, region="DE", http=http, budget=1.5)
        mocked.post(SEARCH, status=429, payload=fx("rate_limited.json"))
        with pytest.raises(CrmRateLimitError) as e:
            await adapter.lookup(CALLER, CREDS)
    assert e.value.retry_after == 10.0


async def test_5xx_then_success(adapter, mocked):
    mocked.post(SEARCH, status=502, body="<html>bad gateway</html>")
    mocked.post(SEARCH, payload=fx("lookup_hit.json"))
    assert len(await adapter.lookup(CALLER, CREDS)) == 1


async def test_slow_crm_times_out(adapter, mocked):
    adapter.request_timeout = 0.2
    adapter.budget = 0.1
    mocked.post(SEARCH, exception=TimeoutError())
    with pytest.raises(CrmTimeoutError):
        await adapter.lookup(CALLER, CREDS)


@pytest.mark.parametrize("status, body", [(200, "{not json"), (400, json.dumps({"status": "error",
                                                                                  "category": "VALIDATION_ERROR"})),
                                          (404, "{}")])
async def test_permanent_failures_are_not_retried(adapter, mocked, status, body):
    mocked.post(SEARCH, status=status, body=body, content_type="application/json")
    with pytest.raises(CrmPermanentError):
        await adapter.lookup(CALLER, CREDS)
    assert sum(len(v) for (m, u), v in mocked.requests.items() if str(u) == SEARCH) == 1


async def test_missing_credentials(adapter):
    with pytest.raises(CrmCredentialsMissingError):
        await adapter.lookup(CALLER, None)


def record(**kw) -> CallRecord:
    base = dict(key="x1", call_id="C1", direction="in", number=CALLER, own_number="+492111234567", answered=True,
                voicemail=False, cause="normalClearing", started_at=datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC),
                ended_at=datetime(2025, 11, 24, 14, 5, 45, tzinfo=UTC), duration_s=154,
                contact=Contact("hubspot", "contact", "51", "Julia", parent_id="9001"), owner="83210754",
                sipgate_user="w0", note="Wants a call back")
    base.update(kw)
    return CallRecord(**base)


async def test_call_record_created(adapter, mocked):
    mocked.post(f"{API}/crm/v3/objects/calls", status=201, payload=fx("call_log_created.json"))
    logged = await adapter.log_call(record(), CREDS)
    assert logged.record_id == "46203421009"
    assert logged.url == "https://app-eu1.hubspot.com/contacts/62515/record/0-48/46203421009"
    body = sent(mocked, f"{API}/crm/v3/objects/calls")
    p = body["properties"]
    assert p["hs_timestamp"] == "2025-11-24T14:03:11Z" and p["hs_call_duration"] == "154000"
    assert p["hs_call_direction"] == "INBOUND" and p["hs_call_status"] == "COMPLETED"
    assert p["hs_call_from_number"] == CALLER and p["hubspot_owner_id"] == "83210754"
    assert "Wants a call back" in p["hs_call_body"]
    assert [(a["to"]["id"], a["types"][0]["associationTypeId"]) for a in body["associations"]] == [("51", 194),
                                                                                                 ("9001", 182)]


async def test_missed_call_record(adapter, mocked):
    mocked.post(f"{API}/crm/v3/objects/calls", status=201, payload=fx("call_log_created.json"))
    await adapter.log_call(record(answered=False, duration_s=None, contact=None, owner=None), CREDS)
    p = sent(mocked, f"{API}/crm/v3/objects/calls")["properties"]
    assert p["hs_call_status"] == "NO_ANSWER" and p["hs_call_duration"] == "0" and "hubspot_owner_id" not in p


async def test_note_is_appended(adapter, mocked):
    url = f"{API}/crm/v3/objects/calls/77"
    mocked.get(f"{url}?properties=hs_call_body", payload={"id": "77", "properties": {"hs_call_body": "Answered."}})
    mocked.patch(url, payload={"id": "77"})
    await adapter.append_note("77", "Sent the offer.", CREDS)
    assert sent(mocked, url) == {"properties": {"hs_call_body": "Answered.\n\nSent the offer."}}


@pytest.mark.parametrize("kind, url, ok", [
    ("salesforce", "https://acme.my.salesforce.com", True),
    ("salesforce", "https://169.254.169.254/latest", False),
    ("salesforce", "http://acme.my.salesforce.com", False),
    ("salesforce", "https://salesforce.com.evil.example", False),
    ("pipedrive", "https://acme.pipedrive.com", True),
    ("zendesk", "https://acme.zendesk.com", True),
    ("hubspot", "https://api.hubapi.com", True),
    ("hubspot", "https://evilapi.hubapi.com.example", False),
    ("sugarcrm", "https://acme.sugarondemand.com", False),  # self-hosted CRMs: only --crm-instance
])
def test_session_instance_url_must_be_the_crms_own(kind, url, ok):
    from hejcti.crm import adapter_class

    adapter = adapter_class(kind)(instance=None, region="DE", http=None)
    if ok:
        assert adapter.base_url(Credentials("t", instance_url=url)) == url
    else:
        with pytest.raises(CrmPermanentError, match="instance_url"):
            adapter.base_url(Credentials("t", instance_url=url))
    configured = adapter_class(kind)(instance="https://crm.internal.example", region="DE", http=None)
    assert configured.base_url(Credentials("t", instance_url=url)) == "https://crm.internal.example"
