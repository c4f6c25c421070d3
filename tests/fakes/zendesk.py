"""A fake Zendesk Support (reference §4.8): user search with the leading-wildcard phone query, tickets with
private comments, organizations/show_many, 401 invalid_token and a text/plain 429.

Creates keep Zendesk's idempotency rules: a known ``Idempotency-Key`` with the same body gets the first answer
again (``x-idempotency-lookup: hit``) and no second ticket, with another body a 400 ``IdempotentRequestError``.
``lose_next_create`` (or ``lose_answers``) makes a create act and then lose its answer, a replay too.
``GET /api/v2/tickets.json?external_id=`` lists tickets by external id. Every answer but a 429 carries the
rate-limit window headers Zendesk sends (``ratelimit-reset: 20`` and the rest, fixtures index)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, digits, json_response

_ids = itertools.count(101)


@dataclass
class State(FakeState):
    users: list[dict[str, Any]] = field(default_factory=list)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    organizations: dict[int, dict[str, Any]] = field(default_factory=dict)
    keyed: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key -> the answer it got
    keyed_bodies: dict[str, Any] = field(default_factory=dict)  # Idempotency-Key -> the body it came with
    lose_answers: int = 0  # creates that act but whose answer is lost (the same as lose_next_create(n, "500"))
    refuse_lists: int = 0  # the next lists of tickets answer 403 (a token that may not list tickets)
    unfiltered_lists: bool = False  # lists ignore ``external_id`` and show every ticket (an API that knew no filter)
    create_bodies: list[Any] = field(default_factory=list)  # the ``ticket`` of every create request, in order

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


    def add_agent(self, uid: int, name: str, email: str, role: str = "agent", active: bool = True) -> None:
        """A user who works in Zendesk (``agent`` or ``admin``), as ``GET /api/v2/users.json`` lists them."""
        self.users.append({"id": uid, "url": f"https://acme.zendesk.com/api/v2/users/{uid}.json", "name": name,
                           "email": email, "phone": None, "shared_phone_number": None, "organization_id": None,
                           "role": role, "active": active, "suspended": False, "time_zone": "Europe/Berlin",
                           "locale": "de", "updated_at": "2025-10-30T16:41:12Z"})


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return json_response({"error": "invalid_token", "error_description": "The access token provided is expired, "
                              "revoked, malformed or invalid for other reasons."}, 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}", **WINDOW, "X-Rate-Limit-Remaining": "0",
                   "ratelimit-remaining": "0", "ratelimit-reset": f"{retry_after:g}"} if retry_after is not None else {}
        return web.Response(status=429, text="Number of allowed API requests per minute exceeded",
                            content_type="text/plain", headers=headers)

    @web.middleware
    async def window(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The rate-limit window headers on every answer (a 429 sets its own: ``rate_limited``)."""
        response = await handler(request)
        if response.status != 429:
            for name, value in WINDOW.items():
                response.headers.setdefault(name, value)
        return response

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.window, self.middleware])
        self.routes(app)
        return app

    async def list_users(self, request: web.Request) -> web.Response:
        """Users of the asked roles (``role[]``), deactivated ones included, in cursor pages (``page[size]``,
        ``page[after]``) with ``meta`` and ``links`` as Zendesk's cursor pagination answers."""
        roles = set(request.query.getall("role[]", [])) or {"end-user", "agent", "admin"}
        users = [u for u in self.state.users if u.get("role") in roles]
        size = min(int(request.query.get("page[size]") or 100), 100)
        start = int(request.query.get("page[after]") or 0)
        page = users[start:start + size]
        more = start + size < len(users)
        after = str(start + size) if more else None
        return json_response({"users": page, "meta": {"has_more": more, "after_cursor": after,
                                                      "before_cursor": str(start) if page else None},
                              "links": {"next": f"https://acme.zendesk.com/api/v2/users.json?page[after]={after}"
                                        if more else None, "prev": None}})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/search.json", self.search)
        app.router.add_get("/api/v2/users.json", self.list_users)
        app.router.add_post("/api/v2/tickets.json", self.create_ticket)
        app.router.add_get("/api/v2/tickets.json", self.list_tickets)
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
        s = self.state
        s.create_bodies.append(ticket)
        if s.lose_answers:  # the older switch
            s.lose_next_create(s.lose_answers, "500")
            s.lose_answers = 0
        key = request.headers.get("Idempotency-Key")
        if key and key in s.keyed:
            if ticket != s.keyed_bodies[key]:  # within the key's two hours (not modelled: keys never expire here)
                return json_response({"error": "IdempotentRequestError", "description": "Request parameters "
                                      "do not match parameters of the previous request with the same "
                                      "idempotency key"}, 400)
            # a repeat: the first answer again, no second ticket
            return self.created_answer(request, json_response(s.keyed[key], 201, {"x-idempotency-lookup": "hit"}))
        if not ticket.get("comment", {}).get("body"):
            return json_response({"error": "RecordInvalid", "description": "Record validation errors",
                                  "details": {"description": [{"description": "Description: cannot be blank",
                                                               "error": "BlankValue"}]}}, 422)
        tid = next(_ids)
        stored = {**ticket, "id": tid, "comments": [ticket["comment"]]}
        s.tickets[tid] = stored
        s.created.append(stored)
        answer = {"ticket": {"id": tid, "subject": ticket.get("subject"), "status": "new"}, "audit": {"id": tid * 10}}
        if key:
            s.keyed[key], s.keyed_bodies[key] = answer, ticket
        return self.created_answer(request, json_response(answer, 201, {"x-idempotency-lookup": "miss"} if key else None))

    async def list_tickets(self, request: web.Request) -> web.Response:
        """List Tickets; with ``external_id`` only the tickets that carry it (Zendesk's ticket object: the first
        comment is its read-only ``description``)."""
        if self.state.refuse_lists:
            self.state.refuse_lists -= 1
            return json_response({"error": "Forbidden", "description": "You do not have access to this page. "
                                  "Please contact the account owner of this help desk for further help."}, 403)
        wanted = request.query.get("external_id")
        tickets = [{"url": f"https://acme.zendesk.com/api/v2/tickets/{t['id']}.json", "id": t["id"],
                    "external_id": t.get("external_id"), "subject": t.get("subject"),
                    "description": t["comments"][0]["body"], "status": "open", "tags": t.get("tags", []),
                    "requester_id": t.get("requester_id"), "assignee_id": t.get("assignee_id")}
                   for t in self.state.tickets.values()
                   if wanted is None or self.state.unfiltered_lists or t.get("external_id") == wanted]
        return json_response({"tickets": tickets, "next_page": None, "previous_page": None, "count": len(tickets)})

    async def update_ticket(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["id"])
        if tid not in self.state.tickets:
            return json_response({"error": "RecordNotFound", "description": "Not found"}, 404)
        comment = (await request.json())["ticket"]["comment"]
        self.state.tickets[tid]["comments"].append(comment)
        self.state.notes.append((str(tid), comment["body"]))
        return json_response({"ticket": {"id": tid}})


#: what Zendesk sends on every answer (the zenpy cassette's values; fixtures index, "Headers for the fake")
WINDOW = {"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "697", "ratelimit-limit": "700",
          "ratelimit-remaining": "697", "ratelimit-reset": "20"}


def make_app(state: State) -> web.Application:
    return Fake(state).app()
