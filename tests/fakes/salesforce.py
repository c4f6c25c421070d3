"""A fake Salesforce org (reference §1.8): SOSL phone search, Tasks, the 401 array and REQUEST_LIMIT_EXCEEDED."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeCrm, FakeState, digits, json_response

_ids = (f"00TDn00000AbC{i:05d}" for i in itertools.count(1))
PHONES = ("Phone", "MobilePhone", "HomePhone", "OtherPhone")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "crm" / "salesforce"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class State(FakeState):
    records: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a looser search, as a CRM's may be: a record is also returned when its phone shares the last seven
    #: digits with a term (look-alikes the adapter must drop when it verifies the hits)
    loose: bool = False
    returned: list[str] = field(default_factory=list)  # ids of every record a search answered with
    drop_create_answers: int = 0  # the next creates store the Task, then drop the connection unanswered
    #: the org's users, as a SOQL query of User answers them (``add_user``), inactive ones included
    users: list[dict[str, Any]] = field(default_factory=list)

    def add_user(self, uid: str, name: str, email: str, active: bool = True) -> None:
        self.users.append({"attributes": {"type": "User", "url": f"/services/data/v62.0/sobjects/User/{uid}"},
                           "Id": uid, "Name": name, "Email": email, "IsActive": active})

    def add_contact(self, cid: str, first: str, last: str, phone: str, owner: str | None = None,
                    company_id: str | None = None, company: str | None = None, sobject: str = "Contact",
                    modified: str = "2025-10-30T16:41:12.000+0000") -> None:
        rec = {"attributes": {"type": sobject, "url": f"/services/data/v62.0/sobjects/{sobject}/{cid}"}, "Id": cid,
               "Name": f"{first} {last}".strip(), "Phone": phone, "OwnerId": owner, "LastModifiedDate": modified}
        if sobject == "Contact":
            rec.update(FirstName=first, LastName=last, MobilePhone=None, HomePhone=None, OtherPhone=None,
                       AccountId=company_id, Account={"Name": company} if company else None)
        elif sobject == "Lead":
            rec.update(Company=company, MobilePhone=None, IsConverted=False)
        self.records.append(rec)


class Fake(FakeCrm):
    state: State

    def expired(self) -> web.Response:
        return json_response(fixture("token_expired.json"), 401)

    def rate_limited(self, retry_after: float | None) -> web.Response:
        # Salesforce answers the org's API limit with 403 and no Retry-After (reference §1.6)
        return json_response(fixture("rate_limited.json"), 403)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await super().middleware(request, handler)
        response.headers["Sforce-Limit-Info"] = "api-usage=18/5000"
        return response

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/services/data/{v}/search/", self.search)
        app.router.add_get("/services/data/{v}/query/", self.query)
        app.router.add_post("/services/data/{v}/sobjects/Task/", self.create_task)
        app.router.add_get("/services/data/{v}/sobjects/Task/{id}", self.get_task)
        app.router.add_patch("/services/data/{v}/sobjects/Task/{id}", self.patch_task)

    async def search(self, request: web.Request) -> web.Response:
        await self.slow()
        sosl = request.query.get("q", "")
        m = re.match(r"FIND \{(.*)\} IN PHONE FIELDS RETURNING (.*)$", sosl, re.S)
        if not m:
            return json_response([{"message": "bad SOSL", "errorCode": "INVALID_SEARCH"}], 400)
        terms = set(re.findall(r'"([^"]*)"', m.group(1)))
        returning = m.group(2)
        out = []
        for r in self.state.records:
            sobject = r["attributes"]["type"]
            if f"{sobject}(" not in returning or (sobject == "Lead" and r.get("IsConverted")):
                continue
            stored = [r.get(f) for f in PHONES if r.get(f)]
            hit = any(digits(v) in terms or v in terms for v in stored)
            if not hit and self.state.loose:
                hit = any(digits(v)[-7:] == digits(t)[-7:] for v in stored for t in terms if len(digits(t)) >= 7)
            if hit:
                self.state.returned.append(r["Id"])
                fields = re.search(rf"{sobject}\(([^)]*)\)", returning).group(1).split(" WHERE")[0]
                names = [f.strip() for f in fields.split(" LIMIT")[0].split(",")]
                row = {"attributes": r["attributes"]}
                for n in names:
                    key = n.split(".")[0]
                    row[key] = r.get(key)
                out.append(row)
        return json_response({"searchRecords": out})

    async def query(self, request: web.Request) -> web.Response:
        """SOQL, as far as the adapter asks it: the Tasks with a given CallObject, oldest first; the active users."""
        soql = request.query.get("q", "")
        if soql == "SELECT Id, Name, Email FROM User WHERE IsActive = true ORDER BY Name LIMIT 2000":
            rows = sorted(({k: u[k] for k in ("attributes", "Id", "Name", "Email")}
                           for u in self.state.users if u["IsActive"]), key=lambda u: u["Name"])
            return json_response({"totalSize": len(rows), "done": True, "records": rows})
        m = re.fullmatch(r"SELECT Id, Description FROM Task WHERE CallObject = '((?:[^'\\]|\\.)*)'"
                         r" ORDER BY CreatedDate LIMIT 1", soql)
        if not m:
            return json_response([{"message": f"unexpected SOQL: {soql}", "errorCode": "MALFORMED_QUERY"}], 400)
        key = re.sub(r"\\(.)", r"\1", m.group(1))
        rows = [{"attributes": {"type": "Task", "url": f"/services/data/v62.0/sobjects/Task/{tid}"}, "Id": tid,
                 "Description": t.get("Description")}
                for tid, t in self.state.tasks.items() if t.get("CallObject") == key][:1]
        return json_response({"totalSize": len(rows), "done": True, "records": rows})

    async def create_task(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("CallType") not in ("Inbound", "Outbound", "Internal"):
            return json_response([{"message": "bad picklist", "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                   "fields": ["CallType"]}], 400)
        tid = next(_ids)
        self.state.tasks[tid] = body
        self.state.created.append({"id": tid, **body})
        if self.state.drop_create_answers:
            self.state.drop_create_answers -= 1
            assert request.transport is not None
            request.transport.close()  # stored, and the answer never arrives
        return json_response({"id": tid, "success": True, "errors": []}, 201)

    async def get_task(self, request: web.Request) -> web.Response:
        task = self.state.tasks.get(request.match_info["id"])
        if task is None:
            return json_response([{"message": "not found", "errorCode": "NOT_FOUND"}], 404)
        return json_response({"attributes": {"type": "Task"}, "Id": request.match_info["id"],
                              "Description": task.get("Description")})

    async def patch_task(self, request: web.Request) -> web.Response:
        tid = request.match_info["id"]
        body = await request.json()
        self.state.tasks[tid].update(body)
        self.state.notes.append((tid, body.get("Description", "")))
        return web.Response(status=204)


def make_app(state: State) -> web.Application:
    return Fake(state).app()
