"""A fake Pipedrive (reference §3.8): v2 person and organization search, users/me, call logs, notes, the 401
envelope and 429 with Retry-After and X-RateLimit headers (bodies: tests/fixtures/crm/pipedrive).

Search semantics (a gap in the reference, §7.2; this is the fake's chosen mode): with ``exact_match=false`` a
phone matches when the term is a case-insensitive substring of the stored string, or when the term's digits
are a substring of the stored digits (so ``4930…``/``30…`` find ``+49 30 1234-5678``); ``exact_match=true`` is
full equality. Organizations are searched on their custom field values.

``GET /api/v1/callLogs`` lists the call logs of the token's user (``users/me``; a log written without a
``user_id`` is that user's), ``start``/``limit`` (at most 50) with ``additional_data.pagination`` as in
``GetCallLogsResponse`` of pipedrive/client-nodejs, and ``data: null`` past the end, as v1 lists answer. The
order is undocumented; the fake lists oldest first, so that a search for a recent log has to page."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, digits, json_response

_ids = (f"6a4c2e8f0b1d3f5a7c9e{i:04x}" for i in itertools.count(1))
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
ME = 1234567  # the user of every token (users/me)
MAX_LIMIT = 50  # GET /v1/callLogs: "The upper limit is 50"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "crm" / "pipedrive"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def envelope_error(status: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"success": False, "error": error, "error_info": INFO, "data": None,
                          "additional_data": None}, status, headers)


def _found(stored: str, term: str, exact: bool, loose: bool) -> bool:
    if exact:
        return stored.lower() == term.lower()
    if term.lower() in stored.lower():
        return True
    d, t = digits(stored), digits(term)
    if len(t) >= 2 and t in d:
        return True
    return loose and len(t) >= 7 and len(d) >= 7 and d[-7:] == t[-7:]


@dataclass
class State(FakeState):
    persons: list[dict[str, Any]] = field(default_factory=list)
    organizations: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a looser search, as a CRM's may be: a record is also returned when its phone shares the last seven
    #: digits with the term (look-alikes the adapter must drop when it verifies the hits)
    loose: bool = False
    returned: list[str] = field(default_factory=list)  # ids of every record a search answered with
    terms: list[tuple[str, str]] = field(default_factory=list)  # (persons|organizations, term) in order
    #: the company's users, as ``GET /api/v1/users`` answers them (``add_user``), deactivated ones included
    users: list[dict[str, Any]] = field(default_factory=list)

    def add_user(self, uid: int, name: str, email: str, active: bool = True) -> None:
        self.users.append({"id": uid, "name": name, "default_currency": "EUR", "locale": "de_DE", "lang": 1,
                           "email": email, "phone": None, "activated": active, "last_login": "2025-11-20 08:14:02",
                           "created": "2024-02-01 09:00:00", "modified": "2025-11-20 08:14:02",
                           "has_created_company": False, "access": [{"app": "sales", "admin": False}],
                           "active_flag": active, "timezone_name": "Europe/Berlin", "timezone_offset": "+01:00",
                           "role_id": 1, "icon_url": None, "is_you": uid == ME, "is_deleted": False})

    def add_contact(self, cid: str, first: str, last: str, phone: str, owner: str | None = None,
                    company_id: str | None = None, company: str | None = None, **_: Any) -> None:
        self.persons.append({"id": int(cid), "type": "person", "name": f"{first} {last}".strip(), "phones": [phone],
                             "emails": [], "visible_to": 3, "owner": {"id": int(owner) if owner else None},
                             "organization": {"id": int(company_id), "name": company} if company_id else None,
                             "custom_fields": [], "notes": []})

    def add_organization(self, oid: str, name: str, phone: str, owner: str | None = None) -> None:
        """An organization with its phone in a custom field (Pipedrive has no standard one): the v2 search
        item shape (``OrganizationSearchItemItem``: custom_fields is a list of strings)."""
        self.organizations.append({"id": int(oid), "type": "organization", "name": name, "address": None,
                                   "visible_to": 3, "owner": {"id": int(owner) if owner else None},
                                   "custom_fields": [phone], "notes": []})


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return json_response(fixture("token_expired.json"), 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:
        headers = {"X-RateLimit-Limit": "80", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        else:  # the test wants a 429 without any retry hint
            headers.pop("X-RateLimit-Reset")
        return json_response(fixture("rate_limited.json"), 429, headers)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/persons/search", self.search)
        app.router.add_get("/api/v2/organizations/search", self.search_organizations)
        app.router.add_get("/api/v1/users/me", self.me)
        app.router.add_get("/api/v1/users", self.list_users)
        app.router.add_post("/api/v1/callLogs", self.create_log)
        app.router.add_get("/api/v1/callLogs", self.list_logs)
        app.router.add_get("/api/v1/callLogs/{id}", self.get_log)
        app.router.add_post("/api/v1/notes", self.add_note)

    async def list_users(self, _: web.Request) -> web.Response:
        """``GET /api/v1/users``: every user of the company, in one answer (v1 does not page it)."""
        return json_response({"success": True, "data": self.state.users})

    async def search(self, request: web.Request) -> web.Response:
        return await self._search(request, "persons", "phone", 0.79, self.state.persons, lambda p: p["phones"])

    async def search_organizations(self, request: web.Request) -> web.Response:
        return await self._search(request, "organizations", "custom_fields", 0.5, self.state.organizations,
                                  lambda o: o["custom_fields"])

    async def _search(self, request: web.Request, kind: str, field_name: str, score: float,
                      records: list[dict[str, Any]], values: Any) -> web.Response:
        """``GET /api/v2/{persons,organizations}/search``: the records whose ``field_name`` holds the term."""
        await self.slow()
        term = request.query.get("term", "")
        if len(term) < 2:
            return envelope_error(400, "term must be at least 2 characters")
        exact = request.query.get("exact_match") == "true"
        self.state.terms.append((kind, term))
        fields = request.query.get("fields", field_name).split(",")
        items = [{"result_score": score, "item": r} for r in records if field_name in fields
                 and any(_found(v, term, exact, self.state.loose) for v in values(r))]
        self.state.returned += [str(i["item"]["id"]) for i in items]
        return json_response({"success": True, "data": {"items": items}, "additional_data": {"next_cursor": None}})

    async def me(self, _: web.Request) -> web.Response:
        return json_response({"success": True, "data": {"id": ME, "name": "Anna Agent", "company_id": 7654321,
                                                        "company_name": "Acme", "company_domain": "acme"}})

    async def create_log(self, request: web.Request) -> web.Response:
        body = await request.json()
        missing = [k for k in ("outcome", "to_phone_number", "start_time", "end_time") if not body.get(k)]
        if missing:
            return envelope_error(400, f"{missing[0]} is required")
        lid = next(_ids)
        stored = {**body, "id": lid, "has_recording": False, "company_id": 7654321}
        self.state.logs[lid] = stored
        self.state.created.append(stored)
        return self.created_answer(request, json_response({"success": True, "data": stored}, 200))

    async def list_logs(self, request: web.Request) -> web.Response:
        try:
            start = int(request.query.get("start", "0"))
            limit = min(int(request.query.get("limit", str(MAX_LIMIT))), MAX_LIMIT)
        except ValueError:
            return envelope_error(400, "start and limit must be integers")
        mine = [log for log in self.state.logs.values() if log.get("user_id") in (None, ME)]
        page = mine[start:start + limit]
        return json_response({"success": True, "data": page or None, "additional_data": {"pagination": {
            "start": start, "limit": limit, "more_items_in_collection": start + limit < len(mine)}}})

    async def get_log(self, request: web.Request) -> web.Response:
        log = self.state.logs.get(request.match_info["id"])
        if log is None:
            return envelope_error(404, "A resource required for this operation was not found.")
        return json_response({"success": True, "data": log})

    async def add_note(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not any(body.get(k) for k in ("person_id", "org_id", "deal_id", "lead_id")):
            return envelope_error(400, "Note must be attached to a deal, person, organization or lead.")
        self.state.notes.append((str(body.get("person_id") or body.get("org_id")), body["content"]))
        return json_response({"success": True, "data": {"id": len(self.state.notes), **body}}, 201)


def make_app(state: State) -> web.Application:
    return Fake(state).app()
