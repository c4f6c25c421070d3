"""Each adapter reads its vendor's own documented answers (the fixture files, via aioresponses): a hit, several
matches, a miss, the expired-token answer and the rate-limit answer; and SugarCRM falls back to the filter API
when its search is unavailable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses

from hejcti.crm import adapter_class
from hejcti.crm.base import Credentials, CrmAuthError, CrmRateLimitError
from tests.conftest import FIXTURES

CALLER = "+493012345678"  # the number in the vendors' examples
CREDS = Credentials("tok")
INSTANCE = {"salesforce": "https://acme.my.salesforce.com", "pipedrive": "https://acme.pipedrive.com",
            "zendesk": "acme", "sugarcrm": "https://acme.sugarondemand.com", "suitecrm": "https://crm.acme.example"}
SEARCH = {
    "salesforce": ("GET", r".*/services/data/v62\.0/search/.*"),
    "pipedrive": ("GET", r".*/api/v2/persons/search.*"),
    "zendesk": ("GET", r"https://acme\.zendesk\.com/api/v2/search\.json.*"),
    "sugarcrm": ("GET", r".*/rest/v11/globalsearch.*"),
    "suitecrm": ("GET", r".*/Api/V8/module/Contacts.*"),
}
OTHER_MODULES = r".*/Api/V8/module/(Leads|Accounts).*"
EXPIRED_STATUS = {"salesforce": 401, "pipedrive": 401, "zendesk": 401, "sugarcrm": 401, "suitecrm": 401}
FIRST = {"salesforce": "003Dn00000Qm1fTIAR", "pipedrive": "42", "zendesk": "35436",
         "sugarcrm": "f3c8e4a2-5b2f-11ef-9c1d-0242ac120002", "suitecrm": "7b0f6a2e-3c1d-4e5f-a6b7-5f1b2c3d4e5f"}


def fx(kind: str, name: str) -> str:
    return (FIXTURES / "crm" / kind / name).read_text()


def mock_search(m: aioresponses, kind: str, body: str, status: int = 200, headers: dict | None = None) -> None:
    method, pattern = SEARCH[kind]
    m.add(re.compile(pattern), method, status=status, body=body, content_type="application/json", headers=headers,
          repeat=True)
    if kind == "suitecrm":
        m.add(re.compile(OTHER_MODULES), "GET", body=fx("suitecrm", "lookup_miss.json"),
              content_type="application/json", repeat=True)
    if kind == "pipedrive":
        m.add(re.compile(r".*/api/v1/users/me.*"), "GET", body=fx("pipedrive", "users_me.json"),
              content_type="application/json", repeat=True)
        # no person verifies → organizations are searched too (reference §3.3)
        m.add(re.compile(r".*/api/v2/organizations/search.*"), "GET", body=fx("pipedrive", "lookup_miss.json"),
              content_type="application/json", repeat=True)


def hit_file(kind: str) -> str:
    return "globalsearch_hit.json" if kind == "sugarcrm" else "lookup_hit.json"


COMPANIES = r".*/rest/v11/(Contacts|Leads)/filter"


def mock_companies(m: aioresponses, body: str, status: int = 200) -> None:
    """SugarCRM's follow-up after a global search: the filter API by the hits' ids, for their account_name."""
    m.add(re.compile(COMPANIES), "POST", status=status, body=body, content_type="application/json", repeat=True)


def globalsearch_multiple() -> str:
    """lookup_multiple.json as global search answers it: no account_id/account_name (not in Sugar's search
    index), a score per hit and a total."""
    data = json.loads(fx("sugarcrm", "lookup_multiple.json"))
    records = [{k: v for k, v in r.items() if k not in ("account_id", "account_name")} | {"_score": 2.0}
               for r in data["records"]]
    return json.dumps({**data, "total": len(records), "records": records})


def company_requests(m: aioresponses) -> list[dict]:
    return [call.kwargs["json"] for (method, url), calls in m.requests.items()
            if re.fullmatch(COMPANIES, str(url)) for call in calls]


@pytest.fixture
async def make():
    async with aiohttp.ClientSession() as http:
        yield lambda kind, budget=30: adapter_class(kind)(instance=INSTANCE[kind], region="DE", http=http,
                                                           budget=budget)


@pytest.mark.parametrize("kind", list(SEARCH))
async def test_vendor_hit(make, kind):
    with aioresponses() as m:
        mock_search(m, kind, fx(kind, hit_file(kind)))
        if kind == "sugarcrm":
            mock_companies(m, fx(kind, "lookup_hit.json"))
        (c,) = await make(kind).lookup(CALLER, CREDS)
    assert c.id == FIRST[kind] and c.name == "Julia Schmidt" and c.match == "exact" and c.url


@pytest.mark.parametrize("kind", list(SEARCH))
async def test_vendor_several_matches(make, kind):
    body = globalsearch_multiple() if kind == "sugarcrm" else fx(kind, "lookup_multiple.json")
    with aioresponses() as m:
        mock_search(m, kind, body)
        if kind == "sugarcrm":
            mock_companies(m, fx(kind, "lookup_multiple.json"))
        found = await make(kind).lookup(CALLER, CREDS)
    assert len(found) >= 2 and found[0].id == FIRST[kind]  # the newest exact match first


async def test_sugarcrm_global_search_hits_get_their_company_from_the_filter_api(make):
    with aioresponses() as m:
        mock_search(m, "sugarcrm", globalsearch_multiple())
        mock_companies(m, fx("sugarcrm", "lookup_multiple.json"))
        found = await make("sugarcrm").lookup(CALLER, CREDS)
        (sent,) = company_requests(m)  # one request for the Contacts hits, none for Leads
    assert [(c.name, c.company) for c in found] == [("Julia Schmidt", "Acme GmbH"), ("Max Mustermann", "Acme GmbH")]
    assert found[0].parent_id == "9a1e6d4c-5b2f-11ef-8a3d-0242ac120002"
    assert sorted(sent["filter"][0]["id"]["$in"]) == sorted(c.id for c in found)
    assert "account_name" in sent["fields"]


async def test_sugarcrm_hit_pops_without_company_when_the_follow_up_fails(make):
    refused = json.dumps({"error": "not_authorized", "error_message": "No access to Contacts"})
    with aioresponses() as m:
        mock_search(m, "sugarcrm", fx("sugarcrm", "globalsearch_hit.json"))
        mock_companies(m, refused, status=403)
        (c,) = await make("sugarcrm").lookup(CALLER, CREDS)
        assert len(company_requests(m)) == 1  # a refusal is not retried
    assert c.id == FIRST["sugarcrm"] and c.name == "Julia Schmidt" and c.company is None


@pytest.mark.parametrize("kind", list(SEARCH))
async def test_vendor_miss(make, kind):
    with aioresponses() as m:
        mock_search(m, kind, fx(kind, "lookup_miss.json"))
        assert await make(kind).lookup(CALLER, CREDS) == []


@pytest.mark.parametrize("kind", list(SEARCH))
async def test_vendor_expired_token(make, kind):
    with aioresponses() as m:
        mock_search(m, kind, fx(kind, "token_expired.json"), status=EXPIRED_STATUS[kind])
        with pytest.raises(CrmAuthError):
            await make(kind).lookup(CALLER, CREDS)


@pytest.mark.parametrize("kind, status, headers", [
    ("salesforce", 403, None), ("pipedrive", 429, {"Retry-After": "30"}), ("zendesk", 429, {"Retry-After": "30"})])
async def test_vendor_rate_limit_beyond_the_deadline_fails_fast(make, kind, status, headers):
    name = "rate_limited.txt" if kind == "zendesk" else "rate_limited.json"
    with aioresponses() as m:
        mock_search(m, kind, fx(kind, name), status=status, headers=headers)
        with pytest.raises(CrmRateLimitError):
            await make(kind, budget=0.3).lookup(CALLER, CREDS)


async def test_sugarcrm_falls_back_to_filter_when_search_is_unavailable(make):
    with aioresponses() as m:
        mock_search(m, "sugarcrm", fx("sugarcrm", "search_unavailable.json"), status=503)
        m.add(re.compile(r".*/rest/v11/Contacts/filter"), "POST", body=fx("sugarcrm", "lookup_hit.json"),
              content_type="application/json")
        for module in ("Leads", "Accounts"):
            m.add(re.compile(rf".*/rest/v11/{module}/filter"), "POST", body=fx("sugarcrm", "lookup_miss.json"),
                  content_type="application/json")
        (c,) = await make("sugarcrm").lookup(CALLER, CREDS)
        assert c.id == FIRST["sugarcrm"] and c.company == "Acme GmbH"
        sent = [call.kwargs for (method, url), calls in m.requests.items() if "Contacts/filter" in str(url)
                for call in calls][0]
    conditions = sent["json"]["filter"][0]["$or"]
    assert {"phone_work": {"$ends": "12345678"}} in conditions
    assert any(c.get("phone_mobile", {}).get("$in") and "030 12345678" in c["phone_mobile"]["$in"]
               for c in conditions)


def test_fixtures_are_the_vendors(tmp_path: Path):
    # the copies under tests/fixtures keep the shapes the reference documents
    assert json.loads(fx("salesforce", "token_expired.json"))[0]["errorCode"] == "INVALID_SESSION_ID"
    assert json.loads(fx("suitecrm", "token_expired.json"))["error"] == "access_denied"
    assert fx("zendesk", "rate_limited.txt").startswith("Number of allowed API requests")
