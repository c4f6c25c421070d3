"""A fake SuiteCRM V8 (reference §6.9): JSON:API module listing with filter[operator] and eq/like on raw
strings (Calls too), Calls created with 201 (a client-given id honoured, as ``ModuleService::createRecord``
does), 401 access_denied, errors as an object."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, json_response

OBJECT = {"Contacts": "Contact", "Leads": "Lead", "Accounts": "Account", "Calls": "Call", "Users": "User"}
PHONES = {"Contacts": "phone_work", "Leads": "phone_work", "Accounts": "phone_office"}


def _like(value: str, pattern: str) -> bool:
    rx = "^" + ".*".join(re.escape(p) for p in pattern.split("%")) + "$"
    return re.match(rx, value or "", re.S) is not None


@dataclass
class State(FakeState):
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"Contacts": [], "Leads": [],
                                                                              "Accounts": []})
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the site's users, as ``GET /Api/V8/module/Users`` lists them (``add_user``), inactive ones included
    users: list[dict[str, Any]] = field(default_factory=list)

    def add_user(self, uid: str, first: str, last: str, email: str, status: str = "Active") -> None:
        self.users.append({"id": uid, "attributes": {
            "user_name": first.lower(), "first_name": first, "last_name": last, "full_name": f"{first} {last}",
            "email1": email, "status": status, "is_admin": "0", "date_modified": "2025-10-30 16:41:12"}})

    def add_contact(self, cid: str, first: str, last: str, phone: str, owner: str | None = None,
                    company_id: str | None = None, company: str | None = None, module: str = "Contacts",
                    **_: Any) -> None:
        self.records[module].append({"id": cid, "attributes": {
            "first_name": first, "last_name": last, PHONES[module]: phone, "account_id": company_id,
            "account_name": company, "assigned_user_id": owner, "date_modified": "2025-10-30 16:41:12"}})


def error(status: int, detail: str) -> web.Response:
    return json_response({"errors": {"status": status, "title": None, "detail": detail}}, status)


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return json_response({"error": "access_denied", "error_description": "The resource owner or authorization "
                              "server denied the request.", "hint": "Access token could not be verified",
                              "message": "The resource owner or authorization server denied the request."}, 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:  # self-hosted: a busy web server
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return web.Response(status=503, text="<html>Service Unavailable</html>", content_type="text/html",
                            headers=headers)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/Api/V8/module/{module}", self.listing)
        app.router.add_get("/Api/V8/module/Calls/{id}", self.get_call)
        app.router.add_post("/Api/V8/module", self.create)
        app.router.add_patch("/Api/V8/module", self.patch)

    async def listing(self, request: web.Request) -> web.Response:
        await self.slow()
        module = request.match_info["module"]
        if module not in self.state.records and module not in ("Calls", "Users"):
            return error(400, f"Module {module} does not exist")
        conds = [(m.group(1), m.group(2), v) for k, v in request.query.items()
                 if (m := re.match(r"filter\[(\w+)\]\[(eq|like)\]$", k))]
        any_of = request.query.get("filter[operator]", "and") == "or"
        rows = []
        stored = (self.state.calls.values() if module == "Calls" else self.state.users if module == "Users"
                  else self.state.records[module])
        for r in stored:
            values = {**r["attributes"], "id": r["id"]}
            tests = [(values.get(f) or "") == v if op == "eq" else _like(values.get(f) or "", v)
                     for f, op, v in conds]
            if (any(tests) if any_of else all(tests)):
                rows.append({"type": OBJECT[module], "id": r["id"], "attributes": r["attributes"],
                             "relationships": {}})
        if not rows:
            return json_response({"meta": {"message": "Request was successful, but there is no result"}, "data": []})
        return json_response({"meta": {"total-pages": 1, "records-on-this-page": len(rows)}, "data": rows,
                              "links": {"first": None, "prev": None, "next": None, "last": None}})

    async def create(self, request: web.Request) -> web.Response:
        data = json.loads(await request.text()).get("data") or {}
        if data.get("type") != "Calls" or not (data.get("attributes") or {}).get("name"):
            return error(400, "Bad request")
        cid = str(data.get("id") or uuid.uuid4())
        try:
            uuid.UUID(cid)  # CreateModuleDataParams: a given id must be a UUID
        except ValueError:
            return error(400, f'The option "id" with value "{cid}" is invalid.')
        if cid in self.state.calls:
            return error(400, f"Bean Calls with id {cid} is already exist")
        stored = {"type": "Call", "id": cid, "attributes": data["attributes"]}
        self.state.calls[cid] = stored
        self.state.created.append({"id": cid, **data["attributes"]})
        return self.created_answer(request, json_response({"data": stored}, 201))

    async def get_call(self, request: web.Request) -> web.Response:
        call = self.state.calls.get(request.match_info["id"])
        if call is None:
            return error(400, f"Calls module with id {request.match_info['id']} is not found")
        return json_response({"data": call})

    async def patch(self, request: web.Request) -> web.Response:
        data = json.loads(await request.text())["data"]
        call = self.state.calls[data["id"]]
        call["attributes"].update(data["attributes"])
        self.state.notes.append((data["id"], data["attributes"].get("description", "")))
        return json_response({"data": call})


def make_app(state: State) -> web.Application:
    return Fake(state).app()
