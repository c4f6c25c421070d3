"""A fake Pipedrive (reference §3.8): v2 person search (substring on the stored phones), users/me, call logs,
notes, the 401 envelope and 429 with Retry-After and X-RateLimit headers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, json_response

_ids = (f"6a4c2e8f0b1d3f5a7c9e{i:04x}" for i in itertools.count(1))
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


def envelope_error(status: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"success": False, "error": error, "error_info": INFO, "data": None,
                          "additional_data": None}, status, headers)


@dataclass
class State(FakeState):
    persons: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_contact(self, cid: str, first: str, last: str, phone: str, owner: str | None = None,
                    company_id: str | None = None, company: str | None = None, **_: Any) -> None:
        self.persons.append({"id": int(cid), "type": "person", "name": f"{first} {last}".strip(), "phones": [phone],
                             "emails": [], "visible_to": 3, "owner": {"id": int(owner) if owner else None},
                             "organization": {"id": int(company_id), "name": company} if company_id else None,
                             "custom_fields": [], "notes": []})


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return envelope_error(401, "Invalid token: access token has expired")

    def rate_limited(self, retry_after: float | None) -> web.Response:
        headers = {"X-RateLimit-Limit": "80", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        else:
            headers.pop("X-RateLimit-Reset")
        return envelope_error(429, "Request over limit", headers)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/persons/search", self.search)
        app.router.add_get("/api/v1/users/me", self.me)
        app.router.add_post("/api/v1/callLogs", self.create_log)
        app.router.add_get("/api/v1/callLogs/{id}", self.get_log)
        app.router.add_post("/api/v1/notes", self.add_note)

    async def search(self, request: web.Request) -> web.Response:
        await self.slow()
        term = request.query.get("term", "")
        if len(term) < 2:
            return envelope_error(400, "term must be at least 2 characters")
        exact = request.query.get("exact_match") == "true"
        items = [{"result_score": 0.79, "item": p} for p in self.state.persons
                 if any((ph.lower() == term.lower()) if exact else (term.lower() in ph.lower()) for ph in p["phones"])]
        return json_response({"success": True, "data": {"items": items}, "additional_data": {"next_cursor": None}})

    async def me(self, _: web.Request) -> web.Response:
        return json_response({"success": True, "data": {"id": 1234567, "name": "Anna Agent", "company_id": 7654321,
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
        return json_response({"success": True, "data": stored}, 200)

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
