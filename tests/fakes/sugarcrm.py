"""A fake SugarCRM (reference §5.8): OAuth-Token header, global search over digits (switchable to 503
search_unavailable), the filter API on raw strings, Calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, json_response

PHONES = {"Contacts": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Leads": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Accounts": ["phone_office", "phone_alternate"]}


def digits(v: str | None) -> str:
    return "".join(ch for ch in v or "" if ch.isdigit())


def _holds(value: str | None, cond: dict[str, Any]) -> bool:
    value = value or ""
    (op, arg), = cond.items()
    return {"$equals": lambda: value == arg, "$in": lambda: value in arg, "$ends": lambda: value.endswith(arg),
            "$starts": lambda: value.startswith(arg), "$contains": lambda: arg in value}.get(op, lambda: False)()


@dataclass
class State(FakeState):
    records: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_available: bool = True

    def add_contact(self, cid: str, first: str, last: str, phone: str, owner: str | None = None,
                    company_id: str | None = None, company: str | None = None, module: str = "Contacts",
                    **_: Any) -> None:
        self.records.append({"id": cid, "name": f"{first} {last}".strip(), "first_name": first, "last_name": last,
                             PHONES[module][0]: phone, "account_id": company_id, "account_name": company,
                             "assigned_user_id": owner, "date_modified": "2025-10-30T16:41:12+00:00",
                             "_acl": {"fields": {}}, "_module": module})


class Fake(FakeCrm):
    state: State

    def unauthenticated(self, request: web.Request) -> web.Response | None:
        if not request.headers.get("OAuth-Token"):  # reference §5.2: no token at all is need_login
            return json_response({"error": "need_login", "error_message": "No valid authentication for user."}, 401)
        return None

    def token_of(self, request: web.Request) -> str:
        return request.headers.get("OAuth-Token", "")

    def expired(self) -> web.Response:  # a token was sent but is not (or no longer) valid
        return json_response({"error": "invalid_grant", "error_message": "The access token provided has expired."}, 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return json_response({"error": "too_many_requests", "error_message": "Slow down"}, 429, headers)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/rest/v11/globalsearch", self.globalsearch)
        app.router.add_post("/rest/v11/{module}/filter", self.filter)
        app.router.add_post("/rest/v11/Calls", self.create_call)
        app.router.add_get("/rest/v11/Calls/{id}", self.get_call)
        app.router.add_put("/rest/v11/Calls/{id}", self.put_call)

    async def globalsearch(self, request: web.Request) -> web.Response:
        await self.slow()
        if not self.state.search_available:
            return json_response({"error": "search_unavailable", "error_message": "Search is currently unavailable"},
                                 503)
        q = digits(request.query.get("q"))
        modules = request.query.get("module_list", "").split(",")
        hits = [{**r, "_score": 1.0} for r in self.state.records if r["_module"] in modules and len(q) >= 3
                and any(q in digits(r.get(f)) for f in PHONES[r["_module"]])]
        return json_response({"next_offset": -1, "total": len(hits), "query_time": 1.2, "records": hits})

    async def filter(self, request: web.Request) -> web.Response:
        await self.slow()
        module = request.match_info["module"]
        body = await request.json()
        (top,) = body["filter"]
        hits = [r for r in self.state.records if r["_module"] == module
                and any(_holds(r.get(f), c) for alt in top["$or"] for f, c in alt.items())]
        return json_response({"next_offset": -1, "records": hits})

    async def create_call(self, request: web.Request) -> web.Response:
        body = await request.json()
        missing = [k for k in ("name", "date_start", "duration_hours", "duration_minutes") if k not in body]
        if missing:
            return json_response({"error": "missing_parameter", "error_message": f"{missing[0]} is required"}, 422)
        cid = str(uuid.uuid4())
        stored = {**body, "id": cid, "_module": "Calls"}
        self.state.calls[cid] = stored
        self.state.created.append(stored)
        return json_response(stored)

    async def get_call(self, request: web.Request) -> web.Response:
        call = self.state.calls.get(request.match_info["id"])
        if call is None:
            return json_response({"error": "not_found", "error_message": "Could not find record"}, 404)
        return json_response(call)

    async def put_call(self, request: web.Request) -> web.Response:
        call = self.state.calls[request.match_info["id"]]
        body = await request.json()
        call.update(body)
        self.state.notes.append((call["id"], body.get("description", "")))
        return json_response(call)


def make_app(state: State) -> web.Application:
    return Fake(state).app()
