"""A fake HubSpot that answers in HubSpot's shapes (reference §2.8): contact and company search with the
OR'ed filter-group semantics over the stored and the calculated phone properties, account details, calls.

Calls are searchable too (``POST /crm/v3/objects/calls/search``, ``EQ``/``IN`` on any property, oldest first),
behind an index that lags as HubSpot's does (reference §2.3, "new records show up after a few seconds"):
a new call stays out of the next ``index_lag_searches`` call searches. The lag is counted in searches, not
seconds, so that tests do not depend on timing."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, digits, json_response

_ids = itertools.count(46203421009)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "crm" / "hubspot"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def calculated(phone: str | None, region: str = "DE") -> str | None:
    """HubSpot's hs_searchable_calculated_*: digits without the country code."""
    if not phone:
        return None
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(phone, region))
    except phonenumbers.NumberParseException:
        return "".join(ch for ch in phone if ch.isdigit()).lstrip("0") or None


@dataclass
class State(FakeState):
    contacts: list[dict[str, Any]] = field(default_factory=list)  # {"id", "properties": {...}, "updatedAt"}
    companies: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a looser search, as a CRM's may be: a record is also returned when its phone shares the last seven
    #: digits with a searched value (look-alikes the adapter must drop when it verifies the hits)
    loose: bool = False
    returned: list[str] = field(default_factory=list)  # ids of every record a search answered with
    #: how many call searches a new call is not yet in (HubSpot's search index lags behind its writes)
    index_lag_searches: int = 0
    _unindexed: dict[str, int] = field(default_factory=dict)  # call id → searches it is still missing from
    #: the account's owners, as ``GET /crm/v3/owners`` answers them (``add_owner``); archived ones only on request
    owners: list[dict[str, Any]] = field(default_factory=list)

    def add_owner(self, oid: str, first: str, last: str, email: str, archived: bool = False) -> None:
        self.owners.append({"id": oid, "email": email, "type": "PERSON", "firstName": first, "lastName": last,
                            "userId": int(oid) + 1000, "userIdIncludingInactive": int(oid) + 1000,
                            "createdAt": "2019-12-25T13:01:35.228Z", "updatedAt": "2023-08-22T13:40:26.790Z",
                            "archived": archived, "teams": []})

    def add_contact(self, cid: str, first: str, last: str, phone: str | None = None, mobile: str | None = None,
                    owner: str | None = None, company_id: str | None = None, company: str | None = None,
                    modified: str = "2025-10-30T16:41:12.004Z", email: str | None = None) -> None:
        self.contacts.append({"id": cid, "properties": {
            "firstname": first, "lastname": last, "email": email, "phone": phone, "mobilephone": mobile, "hubspot_owner_id": owner,
            "associatedcompanyid": company_id, "company": company, "lastmodifieddate": modified,
            "hs_object_id": cid}, "createdAt": "2024-05-02T09:14:03.512Z", "updatedAt": modified, "archived": False})

    def add_company(self, cid: str, name: str, phone: str) -> None:
        self.companies.append({"id": cid, "properties": {"name": name, "phone": phone, "hs_object_id": cid,
                                                         "hs_lastmodifieddate": "2025-01-01T00:00:00Z"},
                               "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z",
                               "archived": False})


def _matches(props: dict[str, Any], flt: dict[str, Any]) -> bool:
    name, op = flt["propertyName"], flt["operator"]
    if name.startswith("hs_searchable_calculated_"):
        source = "mobilephone" if "mobile" in name else "phone"
        value = calculated(props.get(source))
    else:
        value = props.get(name)
    if value is None:
        return False
    if op == "EQ":
        return value == flt["value"]
    if op == "IN":
        return value in flt["values"]
    return False


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return json_response(fixture("token_expired.json"), 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:
        # as HubSpot's search limit answers (fixture rate_limited_search.json): no Retry-After header, which
        # HubSpot does not document (reference §2.6), whatever the test asked for
        return json_response(fixture("rate_limited_search.json"), 429)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/crm/v3/objects/{obj}/search", self.search)
        app.router.add_get("/account-info/v3/details", self.details)
        app.router.add_post("/crm/v3/objects/calls", self.create_call)
        app.router.add_get("/crm/v3/objects/calls/{id}", self.get_call)
        app.router.add_patch("/crm/v3/objects/calls/{id}", self.patch_call)
        app.router.add_get("/crm/v3/owners", self.owners)

    async def search(self, request: web.Request) -> web.Response:
        await self.slow()
        body = await request.json()
        if request.match_info["obj"] == "calls":
            return self.search_calls(body)
        records = self.state.contacts if request.match_info["obj"] == "contacts" else self.state.companies
        hits = [r for r in records if any(all(_matches(r["properties"], f) for f in g["filters"])
                                          for g in body.get("filterGroups", []))]
        if self.state.loose:
            searched = {digits(v)[-7:] for g in body.get("filterGroups", []) for f in g["filters"]
                        for v in [f.get("value"), *(f.get("values") or [])] if len(digits(v)) >= 7}
            hits += [r for r in records if r not in hits and any(
                len(digits(r["properties"].get(k))) >= 7 and digits(r["properties"].get(k))[-7:] in searched
                for k in ("phone", "mobilephone"))]
        self.state.returned += [r["id"] for r in hits]
        wanted = set(body.get("properties", [])) | {"createdate", "email", "firstname", "hs_object_id",
                                                    "lastmodifieddate", "lastname"}
        results = [{**r, "properties": {k: v for k, v in r["properties"].items() if k in wanted}} for r in hits]
        return json_response({"total": len(results), "results": results})

    def search_calls(self, body: dict[str, Any]) -> web.Response:
        """Calls whose properties pass a filter group, oldest first (the adapter sorts by ``hs_createdate``
        ascending), as far as the index has them."""
        s = self.state
        indexed = []
        for cid, call in s.calls.items():
            if s._unindexed.get(cid, 0) > 0:
                s._unindexed[cid] -= 1
                continue
            indexed.append(call)
        hits = [c for c in indexed if any(all(_matches(c["properties"], f) for f in g["filters"])
                                          for g in body.get("filterGroups", []))]
        hits = hits[: int(body.get("limit") or 10)]
        wanted = set(body.get("properties") or []) | {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"}
        results = []
        for c in hits:
            props = {**c["properties"], "hs_createdate": c["createdAt"], "hs_lastmodifieddate": c["createdAt"]}
            results.append({"id": c["id"], "properties": {k: v for k, v in props.items() if k in wanted},
                            "createdAt": c["createdAt"], "updatedAt": c["createdAt"], "archived": False})
        return json_response({"total": len(results), "results": results})

    async def owners(self, request: web.Request) -> web.Response:
        """HubSpot's owners, ``limit`` a page (at most 500), ``after`` the next page's cursor in ``paging``."""
        archived = request.query.get("archived", "false") == "true"
        owners = [o for o in self.state.owners if o["archived"] == archived]
        start, limit = int(request.query.get("after") or 0), min(int(request.query.get("limit") or 100), 500)
        page = {"results": owners[start:start + limit]}
        if start + limit < len(owners):
            after = str(start + limit)
            page["paging"] = {"next": {"after": after, "link": f"https://api.hubapi.com/crm/v3/owners?after={after}"}}
        return json_response(page)

    async def details(self, _: web.Request) -> web.Response:
        return json_response({"portalId": 62515, "accountType": "STANDARD", "timeZone": "Europe/Berlin",
                              "uiDomain": "app-eu1.hubspot.com", "dataHostingLocation": "eu1"})

    async def create_call(self, request: web.Request) -> web.Response:
        body = await request.json()
        props = body.get("properties", {})
        if "hs_timestamp" not in props:
            return json_response({"status": "error", "message": "hs_timestamp is required",
                                  "category": "VALIDATION_ERROR"}, 400)
        for a in body.get("associations", []):
            if a["types"][0]["associationTypeId"] not in (194, 182, 206, 220):
                return json_response({"status": "error", "message": "bad association",
                                      "category": "VALIDATION_ERROR"}, 400)
        cid = str(next(_ids))
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stored = {"id": cid, "properties": {**props, "hs_object_id": cid}, "createdAt": now,
                  "associations": body.get("associations", [])}
        self.state.calls[cid] = stored
        self.state.created.append(stored)
        if self.state.index_lag_searches:
            self.state._unindexed[cid] = self.state.index_lag_searches
        return self.created_answer(request, json_response(
            {"id": cid, "properties": {**stored["properties"], "hs_createdate": now, "hs_lastmodifieddate": now},
             "createdAt": now, "updatedAt": now, "archived": False}, 201))

    async def get_call(self, request: web.Request) -> web.Response:
        call = self.state.calls.get(request.match_info["id"])
        if call is None:
            return json_response({"status": "error", "message": "not found", "category": "OBJECT_NOT_FOUND"}, 404)
        return json_response({"id": call["id"], "properties": {"hs_call_body": call["properties"].get("hs_call_body")}})

    async def patch_call(self, request: web.Request) -> web.Response:
        call = self.state.calls.get(request.match_info["id"])
        if call is None:
            return json_response({"status": "error", "message": "not found", "category": "OBJECT_NOT_FOUND"}, 404)
        props = (await request.json()).get("properties", {})
        call["properties"].update(props)
        self.state.notes.append((call["id"], props.get("hs_call_body", "")))
        return json_response({"id": call["id"], "properties": call["properties"]})


def make_app(state: State) -> web.Application:
    return Fake(state).app()
