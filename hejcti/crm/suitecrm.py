"""SuiteCRM (V8 JSON:API, SuiteCRM 7.10+ and 8.x; the legacy v4_1 REST is not supported).

``--crm-instance`` is the site URL; the API is ``{site}/Api/V8`` (SuiteCRM 8 maps it there too). Lookup: per
module (Contacts, Leads, Accounts) one request, the phone fields OR'ed with ``like %1%2%3%4%5%6%7%8`` (the
last eight digits with ``%`` between them: V8 allows one value per field and operator, and compares raw strings,
so this finds ``030 1234 5678`` too), every hit verified. Deep links in
SuiteCRM 7 form (``index.php?module=Contacts&action=DetailView&record=…``, which SuiteCRM 8 also serves).
Records: a Calls record (status Held or Not Held) with its parent; a note is appended to its description.
The record's id is derived from the job's key as for SugarCRM (``record_uuid``; V8 keeps an id the client gives,
``ModuleService::createRecord``), so a retry after a lost answer finds it by ``filter[id][eq]``, and a create
sent twice is refused ("Bean Calls with id … is already exist") instead of logging the call twice.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from typing import Any

from hejcti import phones
from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAdapter,
    CrmAuthError,
    CrmError,
    CrmPermanentError,
    LoggedRecord,
    Response,
    body_json,
    duration_parts,
    parse_time,
    rank,
)
from hejcti.crm.sugarcrm import record_uuid  # SuiteCRM is SugarCRM CE's fork: the same ids

PHONES = {"Contacts": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Leads": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Accounts": ["phone_office", "phone_alternate"]}
OTHER = {"Contacts": ["first_name", "last_name", "account_id", "account_name", "assigned_user_id", "date_modified"],
         "Leads": ["first_name", "last_name", "account_name", "assigned_user_id", "date_modified"],
         "Accounts": ["name", "assigned_user_id", "date_modified"]}
KIND = {"Contacts": "contact", "Leads": "lead", "Accounts": "account"}
JSONAPI = {"Content-Type": "application/vnd.api+json", "Accept": "application/vnd.api+json"}


class RecordExistsError(CrmPermanentError):
    """400 "Bean Calls with id … is already exist": a create with the id of a record SuiteCRM has."""


class Adapter(CrmAdapter):
    kind = "suitecrm"

    def classify(self, resp: Response) -> CrmError:
        if resp.status == 401:
            body = body_json(resp)
            error = body.get("error") if isinstance(body, dict) else None
            return CrmAuthError(f"suitecrm token rejected ({error or 'HTTP 401'})", crm=self.kind, status=401)
        if resp.status == 400:
            body = body_json(resp)
            detail = ((body or {}).get("errors") or {}).get("detail") if isinstance(body, dict) else None
            if isinstance(detail, str) and detail.startswith("Bean ") and detail.endswith(" is already exist"):
                return RecordExistsError("suitecrm: the record exists already", crm=self.kind, status=400)
            return CrmPermanentError(f"suitecrm refused the request: {str(detail or 'HTTP 400')[:120]}",
                                     crm=self.kind, status=400)
        return super().classify(resp)

    def _url(self, base: str, module: str, rid: str) -> str:
        return f"{base}/index.php?module={module}&action=DetailView&record={rid}"

    async def _module(self, base: str, module: str, e164: str, creds: Credentials | None) -> list[dict]:
        # like with % between the last eight digits (reference §6.3: one value per field and operator, you
        # supply the wildcards yourself; §7.6: raw strings), so "030 1234 5678" and "+49 (30) 123 456 78" match
        # too. It also matches numbers that merely contain these digits in order: every hit is verified below.
        pattern = "%" + "%".join(phones.national_significant(e164)[-8:])
        params = {"filter[operator]": "or", f"fields[{module}]": ",".join(PHONES[module] + OTHER[module]),
                  "page[size]": "20", "page[number]": "1"}
        for f in PHONES[module]:
            params[f"filter[{f}][like]"] = pattern
        data = await self.request("GET", f"{base}/Api/V8/module/{module}", creds=creds, params=params,
                                  headers={"Accept": JSONAPI["Accept"]})
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise CrmPermanentError(f"suitecrm {module}: unexpected answer", crm=self.kind)
        return data["data"]

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        base = self.base_url(creds)
        answers = await asyncio.gather(*(self._module(base, m, e164, creds) for m in PHONES))
        found = []
        for module, rows in zip(PHONES, answers, strict=True):
            for row in rows:
                a = row.get("attributes") or {}
                match = phones.best_match([a.get(f) for f in PHONES[module]], e164, self.region)
                if match is None or not row.get("id"):
                    continue
                name = a.get("name") or " ".join(x for x in (a.get("first_name"), a.get("last_name")) if x) or row["id"]
                found.append(Contact(
                    crm=self.kind, kind=KIND[module], id=row["id"], name=name,  # type: ignore[arg-type]
                    company=(a.get("account_name") if module != "Accounts" else a.get("name")) or None,
                    url=self._url(base, module, row["id"]), match=match, owner_id=a.get("assigned_user_id") or None,
                    modified_at=parse_time(a.get("date_modified")),
                    parent_id=a.get("account_id") or None if module == "Contacts" else None))
        return rank(found, crm_user)

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds)
        hours, minutes = duration_parts(record.duration_s)
        attributes: dict[str, Any] = {
            "name": record.subject(self.region),
            "direction": "Inbound" if record.direction == "in" else "Outbound",
            "status": "Held" if record.answered or record.voicemail else "Not Held",
            "date_start": record.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "duration_hours": hours,
            "duration_minutes": minutes,
            "description": record.description(self.region),
        }
        c = record.contact
        if c is not None:
            attributes["parent_type"] = {"contact": "Contacts", "lead": "Leads", "account": "Accounts"}[c.kind]
            attributes["parent_id"] = c.id
        if record.owner:
            attributes["assigned_user_id"] = record.owner
        given = record_uuid(record)
        try:
            data = await self.request("POST", f"{base}/Api/V8/module", creds=creds, budget=10, headers=JSONAPI,
                                      data=json.dumps({"data": {"type": "Calls", "id": given,
                                                                "attributes": attributes}}))
        except RecordExistsError:
            # an earlier attempt created it and its answer was lost: it gets this attempt's description (the
            # note as the job holds it now), as if this create had been the first
            await self._describe(base, given, attributes["description"], creds)
            data = {"data": {"id": given}}
        rid = ((data or {}).get("data") or {}).get("id") if isinstance(data, dict) else None
        if not rid:
            raise CrmPermanentError("suitecrm created no call", crm=self.kind)
        return LoggedRecord(record_id=rid, url=self._url(base, "Calls", rid))

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        # no filter[operator]: the default AND keeps the "deleted = 0" every V8 listing adds
        base = self.base_url(creds)
        rid = record_uuid(record)
        data = await self.request("GET", f"{base}/Api/V8/module/Calls", creds=creds, budget=10,
                                  params={"filter[id][eq]": rid, "fields[Calls]": "description"},
                                  headers={"Accept": JSONAPI["Accept"]})
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise CrmPermanentError("suitecrm Calls: unexpected answer", crm=self.kind)
        row = next((r for r in rows if isinstance(r, dict) and r.get("id") == rid), None)
        if row is None:
            return None
        return LoggedRecord(record_id=rid, url=self._url(base, "Calls", rid),
                            body=(row.get("attributes") or {}).get("description") or "")

    async def _describe(self, base: str, rid: str, description: str, creds: Credentials | None) -> None:
        await self.request("PATCH", f"{base}/Api/V8/module", creds=creds, budget=10, headers=JSONAPI,
                           data=json.dumps({"data": {"type": "Calls", "id": rid,
                                                     "attributes": {"description": description}}}))

    async def list_users(self, creds: Credentials | None) -> list[dict[str, str | None]]:
        """The site's active users (``id``, ``name``, ``email``), for the portal's mapping (CONTRACT §9): the id is
        a record's ``assigned_user_id``. ``GET /Api/V8/module/Users`` filtered on ``status``, pages of 100, at
        most five."""
        base = self.base_url(creds)
        out: list[dict[str, str | None]] = []
        for number in range(1, 6):
            data = await self.request("GET", f"{base}/Api/V8/module/Users", creds=creds, budget=10,
                                      headers={"Accept": JSONAPI["Accept"]}, params={
                                          "fields[Users]": "user_name,first_name,last_name,full_name,email1,status",
                                          "filter[status][eq]": "Active", "page[size]": "100",
                                          "page[number]": str(number)})
            if not isinstance(data, dict) or not isinstance(data.get("data"), list):
                raise CrmPermanentError("suitecrm Users: unexpected answer", crm=self.kind)
            for r in data["data"]:
                a = r.get("attributes") if isinstance(r, dict) and r.get("id") else None
                if not isinstance(a, dict):
                    continue
                name = a.get("full_name") or " ".join(x for x in (a.get("first_name"), a.get("last_name")) if x)
                out.append({"id": str(r["id"]), "name": str(name or a.get("user_name") or r["id"]),
                            "email": str(a["email1"]) if a.get("email1") else None})
            pages = (data.get("meta") or {}).get("total-pages")
            if not isinstance(pages, int) or number >= pages:
                break
        return out

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds)
        current = await self.request("GET", f"{base}/Api/V8/module/Calls/{record_id}", creds=creds, budget=10,
                                     params={"fields[Calls]": "description"}, headers={"Accept": JSONAPI["Accept"]})
        old = (((current or {}).get("data") or {}).get("attributes") or {}).get("description") or ""
        await self._describe(base, record_id, f"{old}\n\n{text}" if old else text, creds)
