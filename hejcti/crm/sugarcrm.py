"""SugarCRM (Sugar 7+ REST v11).

``--crm-instance`` is the site URL. The token goes in ``OAuth-Token``, not ``Authorization``. Lookup: global
search (Elasticsearch strips non-digits, so the national number finds every written form) over Contacts, Leads
and Accounts; when search is unavailable (503 ``search_unavailable``) the filter API of each module with the
written forms (``$in``) and the last eight digits (``$ends``, ``$contains``). Every hit is verified. Global
search returns only the fields in Sugar's search index, and a contact's or lead's ``account_name`` is not one:
one filter request per module for the hits' accounts follows, within the lookup's budget (if it fails, the
hits pop without their company). Deep links ``{site}/#Contacts/{id}``.
Records: a Calls record (status Held or Not Held) with its parent and the contact or lead linked; a note is
appended to the call's description. The record's id is derived from the job's key (``record_uuid``; Sugar keeps
an id the client gives, ``ModuleApi::createBean``), so a retry after a lost answer finds it by that id, and a
create sent twice is refused as "Record already exists" instead of logging the call twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC
from typing import Any

from hejcti import logs, phones
from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAdapter,
    CrmAuthError,
    CrmCredentialsMissingError,
    CrmError,
    CrmPermanentError,
    LoggedRecord,
    Response,
    body_json,
    duration_parts,
    parse_time,
    rank,
)

log = logs.get("hejcti.crm.sugarcrm")

PHONES = {"Contacts": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Leads": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Accounts": ["phone_office", "phone_alternate"]}
KIND = {"Contacts": "contact", "Leads": "lead", "Accounts": "account"}
#: the namespace of the call records' ids (``record_uuid``); never change it: retries of jobs written before
#: would no longer find their records
RECORDS = uuid.UUID("019c85b8-7967-4fee-a57e-b227bdad5319")
#: below this many seconds left of the lookup's budget, the company follow-up is not started
MIN_FOLLOW_UP_S = 0.05


def record_uuid(record: CallRecord) -> str:
    """The id of the call's record in the CRM: the same on every attempt of its job. The direction is part of
    it (``CallRecord.scoped_key``), so the two ends of a call between two sipgate accounts that share one CRM
    get a record each."""
    return str(uuid.uuid5(RECORDS, record.scoped_key("\n")))


class SearchUnavailableError(CrmPermanentError):
    kind = "search_unavailable"


class RecordExistsError(CrmPermanentError):
    """422 invalid_parameter "Record already exists": a create with the id of a record Sugar has."""


class Adapter(CrmAdapter):
    kind = "sugarcrm"

    def auth_headers(self, creds: Credentials | None) -> dict[str, str]:
        if creds is None:
            raise CrmCredentialsMissingError("no CRM credentials from any session", crm=self.kind)
        return {"OAuth-Token": creds.access_token}

    def classify(self, resp: Response) -> CrmError:
        body = body_json(resp)
        label = body.get("error") if isinstance(body, dict) else None
        if resp.status == 401:
            return CrmAuthError(f"sugarcrm token rejected ({label or 'HTTP 401'})", crm=self.kind, status=401)
        if resp.status == 503 and label == "search_unavailable":
            return SearchUnavailableError("sugarcrm search is unavailable", crm=self.kind, status=503)
        message = str(body.get("error_message") or "") if isinstance(body, dict) else ""
        if resp.status == 422 and label == "invalid_parameter" and message.startswith("Record already exists"):
            return RecordExistsError("sugarcrm: the record exists already", crm=self.kind, status=422)
        return super().classify(resp)

    def _contact(self, base: str, module: str, r: dict[str, Any], e164: str) -> Contact | None:
        if module not in KIND or not r.get("id"):
            return None
        match = phones.best_match([r.get(f) for f in PHONES[module]], e164, self.region)
        if match is None:
            return None
        name = r.get("name") or " ".join(x for x in (r.get("first_name"), r.get("last_name")) if x) or r["id"]
        company = r.get("account_name") if module != "Accounts" else r.get("name")
        return Contact(crm=self.kind, kind=KIND[module], id=r["id"], name=name, company=company or None,  # type: ignore[arg-type]
                       url=f"{base}/#{module}/{r['id']}", match=match, owner_id=r.get("assigned_user_id") or None,
                       modified_at=parse_time(r.get("date_modified")),
                       parent_id=r.get("account_id") or None if module == "Contacts" else None)

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        base = self.base_url(creds)
        started = time.monotonic()
        try:
            data = await self.request("GET", f"{base}/rest/v11/globalsearch", creds=creds, params={
                "q": phones.national_significant(e164), "module_list": "Contacts,Leads,Accounts", "max_num": "20"})
            records = [(r.get("_module", ""), r) for r in (data or {}).get("records") or []]
            searched = True
        except SearchUnavailableError:
            answers = await asyncio.gather(*(self._filter(base, m, e164, creds) for m in PHONES))
            records = [(m, r) for m, rs in zip(PHONES, answers, strict=True) for r in rs]
            searched = False  # the filter API returned account_name itself
        found = [c for c in (self._contact(base, m, r, e164) for m, r in records) if c is not None]
        if searched:
            found = await self._companies(base, found, creds, self.budget - (time.monotonic() - started))
        return rank(found, crm_user)

    async def _companies(self, base: str, found: list[Contact], creds: Credentials | None,
                         left: float) -> list[Contact]:
        """The account of each contact and lead hit, which global search does not return (its index has no
        ``account_name`` on Contacts and Leads): one filter request per module by the hits' ids, cut off at
        ``left`` seconds. A module whose request fails or is too late pops without company (a pop without it
        beats none); an expired token is raised as for the search."""
        ids = {m: [c.id for c in found if c.kind == KIND[m]] for m in ("Contacts", "Leads")}
        ids = {m: v for m, v in ids.items() if v}
        if not ids or left < MIN_FOLLOW_UP_S:
            return found

        async def accounts(module: str, wanted: list[str]) -> list[dict]:
            data = await self.request("POST", f"{base}/rest/v11/{module}/filter", creds=creds, budget=left, json={
                "filter": [{"id": {"$in": wanted}}], "fields": "id,account_id,account_name", "max_num": len(wanted)})
            rows = data.get("records") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise CrmPermanentError(f"sugarcrm {module} filter: unexpected answer", crm=self.kind)
            return rows

        try:
            async with asyncio.timeout(left):
                answers = await asyncio.gather(*(accounts(m, v) for m, v in ids.items()), return_exceptions=True)
        except TimeoutError:
            answers = [TimeoutError()] * len(ids)
        if expired := next((a for a in answers if isinstance(a, CrmAuthError)), None):
            raise expired
        for module, answer in zip(ids, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("crm.lookup.company_failed", crm=self.kind, module=module, hits=len(ids[module]),
                            error=type(answer).__name__)
        rows = {r["id"]: r for a in answers if isinstance(a, list) for r in a if isinstance(r, dict) and r.get("id")}
        return [replace(c, company=rows[c.id].get("account_name") or None,
                        parent_id=(rows[c.id].get("account_id") or None) if c.kind == "contact" else c.parent_id)
                if c.id in rows else c for c in found]

    async def _filter(self, base: str, module: str, e164: str, creds: Credentials | None) -> list[dict]:
        # Reference §5.3: the filter API compares raw strings with $equals/$in/$starts/$ends/$contains, no
        # wildcards inside a value. So: the written forms ($in), the last eight digits at the end ($ends) and
        # anywhere in the field ($contains: "+49 30 12345678 (mobil)"). Known limitation: a number whose last
        # eight digits are split by spaces or punctuation ("030 1234 5678") is found only by globalsearch, not
        # by this fallback. Every hit is verified on our side.
        written = list(phones.variants(e164, self.region))
        suffix = phones.national_significant(e164)[-8:]
        conditions = ([{f: {"$in": written}} for f in PHONES[module]]
                      + [{f: {op: suffix}} for op in ("$ends", "$contains") for f in PHONES[module]])
        data = await self.request("POST", f"{base}/rest/v11/{module}/filter", creds=creds, json={
            "filter": [{"$or": conditions}], "max_num": 20, "order_by": "date_modified:DESC",
            "fields": ",".join(["id", "name", "first_name", "last_name", "account_id", "account_name",
                                "assigned_user_id", "date_modified", *PHONES[module]])})
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise CrmPermanentError(f"sugarcrm {module} filter: unexpected answer", crm=self.kind)
        return data["records"]

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds)
        hours, minutes = duration_parts(record.duration_s)
        call: dict[str, Any] = {
            "id": record_uuid(record),
            "name": record.subject(self.region),
            "direction": "Inbound" if record.direction == "in" else "Outbound",
            "status": "Held" if record.answered or record.voicemail else "Not Held",
            "date_start": record.started_at.astimezone(UTC).isoformat(timespec="seconds"),
            "duration_hours": hours,
            "duration_minutes": minutes,
            "description": record.description(self.region),
        }
        c = record.contact
        if c is not None:
            module = {"contact": "Contacts", "lead": "Leads", "account": "Accounts"}[c.kind]
            call["parent_type"], call["parent_id"] = module, c.id
            if c.kind in ("contact", "lead"):
                call[module.lower()] = {"add": [c.id]}
        if record.owner:
            call["assigned_user_id"] = record.owner
        try:
            data = await self.request("POST", f"{base}/rest/v11/Calls", creds=creds, json=call, budget=10)
        except RecordExistsError:
            # an earlier attempt created it and its answer was lost: it gets this attempt's description (the
            # note as the job holds it now), as if this create had been the first
            await self.request("PUT", f"{base}/rest/v11/Calls/{call['id']}", creds=creds, budget=10,
                               json={"description": call["description"]})
            data = {"id": call["id"]}
        if not isinstance(data, dict) or not data.get("id"):
            raise CrmPermanentError("sugarcrm created no call", crm=self.kind)
        return LoggedRecord(record_id=data["id"], url=f"{base}/#Calls/{data['id']}")

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        base = self.base_url(creds)
        rid = record_uuid(record)
        data = await self.request("POST", f"{base}/rest/v11/Calls/filter", creds=creds, budget=10, json={
            "filter": [{"id": {"$equals": rid}}], "fields": "id,description", "max_num": 1})
        rows = data.get("records") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise CrmPermanentError("sugarcrm Calls filter: unexpected answer", crm=self.kind)
        row = next((r for r in rows if isinstance(r, dict) and r.get("id") == rid), None)
        if row is None:
            return None
        return LoggedRecord(record_id=rid, url=f"{base}/#Calls/{rid}", body=row.get("description") or "")

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds)
        current = await self.request("GET", f"{base}/rest/v11/Calls/{record_id}", creds=creds, budget=10,
                                     params={"fields": "description"})
        old = (current or {}).get("description") or ""
        await self.request("PUT", f"{base}/rest/v11/Calls/{record_id}", creds=creds, budget=10,
                           json={"description": f"{old}\n\n{text}" if old else text})

    async def list_users(self, creds: Credentials | None) -> list[dict[str, str | None]]:
        """The CRM's active users (``id``, ``name``, ``email``), for the portal's mapping (CONTRACT §9): one
        filter request on the Users module, at most 500, by name."""
        base = self.base_url(creds)
        data = await self.request("POST", f"{base}/rest/v11/Users/filter", creds=creds, budget=10, json={
            "filter": [{"status": {"$equals": "Active"}}], "max_num": 500, "order_by": "last_name:ASC",
            "fields": "id,full_name,first_name,last_name,user_name,email1,status"})
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise CrmPermanentError("sugarcrm Users filter: unexpected answer", crm=self.kind)
        out: list[dict[str, str | None]] = []
        for r in data["records"]:
            if not isinstance(r, dict) or not r.get("id"):
                continue
            name = r.get("full_name") or " ".join(x for x in (r.get("first_name"), r.get("last_name")) if x)
            out.append({"id": str(r["id"]), "name": str(name or r.get("user_name") or r["id"]),
                        "email": str(r["email1"]) if r.get("email1") else None})
        return out
