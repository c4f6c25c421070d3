"""A fake SugarCRM (reference §5.8): OAuth-Token header, global search over digits (switchable to 503
search_unavailable) that returns only indexed fields, the filter API on raw strings, Calls (a client-given id
honoured, as ``ModuleApi::createBean`` does)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, digits, json_response

PHONES = {"Contacts": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Leads": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Accounts": ["phone_office", "phone_alternate"]}
#: what global search returns of a hit: the fields in Sugar's search index (``full_text_search`` in the
#: vardefs). A contact's or lead's ``account_name``/``account_id`` are not indexed (Contacts: relate fields,
#: non-db; Leads: a plain varchar without ``full_text_search``), so they are not in a hit.
INDEXED = {"id", "name", "first_name", "last_name", "assigned_user_id", "date_modified", "_acl", "_module",
           *PHONES["Contacts"], *PHONES["Accounts"]}
ALWAYS = ("id", "date_modified", "_acl", "_module")  # returned whatever ``fields`` says (filter API help)


def _holds(value: Any, cond: Any) -> bool:
    value = value or ""
    if not isinstance(cond, dict):  # {"field": "value"} is $equals
        cond = {"$equals": cond}
    (op, arg), = cond.items()
    return {"$equals": lambda: value == arg, "$not_equals": lambda: value != arg, "$in": lambda: value in arg,
            "$not_in": lambda: value not in arg, "$ends": lambda: value.endswith(arg),
            "$starts": lambda: value.startswith(arg), "$contains": lambda: arg in value}.get(op, lambda: False)()


def matches(record: dict[str, Any], expr: dict[str, Any]) -> bool:
    """One filter expression: ``$or``/``$and`` of expressions, or field conditions (all must hold)."""
    checks = []
    for key, cond in expr.items():
        if key == "$or":
            checks.append(any(matches(record, e) for e in cond))
        elif key == "$and":
            checks.append(all(matches(record, e) for e in cond))
        else:
            checks.append(_holds(record.get(key), cond))
    return all(checks)


@dataclass
class State(FakeState):
    records: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_available: bool = True
    filter_delay: float = 0.0  # seconds before a filter answers (global search is not held up)
    filter_fails: int = 0  # the next filter requests answer 500 fatal_error

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
        hits = [{**{k: v for k, v in r.items() if k in INDEXED}, "_score": 1.0} for r in self.state.records
                if r["_module"] in modules and len(q) >= 3
                and any(q in digits(r.get(f)) for f in PHONES[r["_module"]])]
        return json_response({"next_offset": -1, "total": len(hits), "query_time": 1.2, "records": hits})

    async def filter(self, request: web.Request) -> web.Response:
        await self.slow()
        if self.state.filter_delay:
            await asyncio.sleep(self.state.filter_delay)
        if self.state.filter_fails:
            self.state.filter_fails -= 1
            return json_response({"error": "fatal_error", "error_message": "An unknown error occurred."}, 500)
        module = request.match_info["module"]
        body = await request.json()
        rows = self.state.calls.values() if module == "Calls" else (r for r in self.state.records
                                                                     if r["_module"] == module)
        hits = [r for r in rows if all(matches(r, e) for e in body.get("filter") or [])]
        hits = hits[:int(body.get("max_num", 20))]
        if body.get("fields"):
            wanted = {*ALWAYS, *str(body["fields"]).split(",")}
            hits = [{k: v for k, v in r.items() if k in wanted} for r in hits]
        return json_response({"next_offset": -1, "records": hits})

    async def create_call(self, request: web.Request) -> web.Response:
        body = await request.json()
        missing = [k for k in ("name", "date_start", "duration_hours", "duration_minutes") if k not in body]
        if missing:
            return json_response({"error": "missing_parameter", "error_message": f"{missing[0]} is required"}, 422)
        cid = str(body.get("id") or uuid.uuid4())
        if cid in self.state.calls:  # ModuleApi::createBean: a given id that exists is refused
            return json_response({"error": "invalid_parameter",
                                  "error_message": f"Record already exists: {cid} in module: Calls"}, 422)
        stored = {**body, "id": cid, "_module": "Calls"}
        self.state.calls[cid] = stored
        self.state.created.append(stored)
        return self.created_answer(request, json_response(stored))

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
