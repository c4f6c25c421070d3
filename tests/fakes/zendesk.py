"""A fake Zendesk Support (reference §4.8): user search with the leading-wildcard phone query, tickets with
private comments, organizations/show_many, 401 invalid_token and a text/plain 429."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, json_response

_ids = itertools.count(101)


def digits(v: str | None) -> str:
    return "".join(ch for ch in v or "" if ch.isdigit())


@dataclass
class State(FakeState):
    users: list[dict[str, Any]] = field(default_factory=list)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    organizations: dict[int, dict[str, Any]] = field(default_factory=dict)
    keyed: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key -> the answer it got
    lose_answers: int = 0  # creates that succeed but whose answer is lost on the way (a 502 from a proxy)

    def add_contact(self, cid: str, first: str, last: str, phone: str, owner: str | None = None,
                    company_id: str | None = None, company: str | None = None, **_: Any) -> None:
        if company_id and company:
            self.organizations[int(company_id)] = {
                "url": f"https://acme.zendesk.com/api/v2/organizations/{company_id}.json", "id": int(company_id),
                "name": company, "shared_tickets": False, "shared_comments": False, "external_id": None,
                "created_at": "2024-03-01T09:12:44Z", "updated_at": "2025-09-17T11:20:05Z", "domain_names": [],
                "details": "", "notes": "", "group_id": None, "tags": [], "organization_fields": {}}
        self.users.append({"id": int(cid), "url": f"https://acme.zendesk.com/api/v2/users/{cid}.json",
                           "name": f"{first} {last}".strip(), "email": None, "phone": phone,
                           "shared_phone_number": False, "organization_id": int(company_id) if company_id else None,
                           "role": "end-user", "updated_at": "2025-10-30T16:41:12Z", "result_type": "user"})


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return json_response({"error": "invalid_token", "error_description": "The access token provided is expired, "
                              "revoked, malformed or invalid for other reasons."}, 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return web.Response(status=429, text="Number of allowed API requests per minute exceeded",
                            content_type="text/plain", headers=headers)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/search.json", self.search)
        app.router.add_post("/api/v2/tickets.json", self.create_ticket)
        app.router.add_get("/api/v2/organizations/show_many.json", self.show_organizations)
        app.router.add_put("/api/v2/tickets/{id}.json", self.update_ticket)

    async def search(self, request: web.Request) -> web.Response:
        await self.slow()
        query = request.query.get("query", "")
        m = re.search(r"phone:(\*?)(\d+)", query)
        if "type:user" not in query or not m:
            return json_response({"error": "invalid", "description": "unsupported query"}, 400)
        wildcard, wanted = m.group(1) == "*", m.group(2)
        hits = [u for u in self.state.users
                if (digits(u["phone"]).endswith(wanted) if wildcard else digits(u["phone"]) == wanted)]
        return json_response({"results": hits, "facets": None, "next_page": None, "previous_page": None,
                              "count": len(hits)})

    async def show_organizations(self, request: web.Request) -> web.Response:
        ids = [int(i) for i in request.query.get("ids", "").split(",") if i.strip().isdigit()]
        orgs = [self.state.organizations[i] for i in ids if i in self.state.organizations]
        return json_response({"organizations": orgs, "next_page": None, "previous_page": None, "count": len(orgs)})

    async def create_ticket(self, request: web.Request) -> web.Response:
        ticket = (await request.json()).get("ticket") or {}
        if not ticket.get("comment", {}).get("body"):
            return json_response({"error": "RecordInvalid", "description": "Record validation errors",
                                  "details": {"description": [{"description": "Description: cannot be blank",
                                                               "error": "BlankValue"}]}}, 422)
        key = request.headers.get("Idempotency-Key")
        if key and key in self.state.keyed:  # a repeat: the first answer again, no second ticket
            return json_response(self.state.keyed[key], 201, headers={"x-idempotency-lookup": "hit"})
        tid = next(_ids)
        stored = {**ticket, "id": tid, "comments": [ticket["comment"]]}
        self.state.tickets[tid] = stored
        self.state.created.append(stored)
        answer = {"ticket": {"id": tid, "subject": ticket.get("subject"), "status": "new"}, "audit": {"id": tid * 10}}
        if key:
            self.state.keyed[key] = answer
        if self.state.lose_answers:
            self.state.lose_answers -= 1
            return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")
        return json_response(answer, 201, headers={"x-idempotency-lookup": "miss"} if key else None)

    async def update_ticket(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if tid not in self.state.tickets:
            return json_response({"error": "RecordNotFound", "description": "Not found"}, 404)
        comment = (await request.json())["ticket"]["comment"]
        self.state.tickets[tid]["comments"].append(comment)
        self.state.notes.append((str(tid), comment["body"]))
        return json_response({"ticket": {"id": tid}})


def make_app(state: State) -> web.Application:
    return Fake(state).app()
