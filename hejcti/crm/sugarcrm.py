"""SugarCRM (Sugar 7+ REST v11).

``--crm-instance`` is the site URL. The token goes in ``OAuth-Token``, not ``Authorization``. Lookup: global
search (Elasticsearch strips non-digits, so the national number finds every written form) over Contacts, Leads
and Accounts; when search is unavailable (503 ``search_unavailable``) the filter API of each module with the
written forms (``$in``) and the last eight digits (``$ends``, ``$contains``). Every hit is verified. Deep links
``{site}/#Contacts/{id}``.
Records: a Calls record (status Held or Not Held) with its parent and the contact or lead linked; a note is
appended to the call's description.
"""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from hejcti import phones
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

PHONES = {"Contacts": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Leads": ["phone_work", "phone_mobile", "phone_home", "phone_other"],
          "Accounts": ["phone_office", "phone_alternate"]}
KIND = {"Contacts": "contact", "Leads": "lead", "Accounts": "account"}


class SearchUnavailableError(CrmPermanentError):
    kind = "search_unavailable"


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
        try:
            data = await self.request("GET", f"{base}/rest/v11/globalsearch", creds=creds, params={
                "q": phones.national_significant(e164), "module_list": "Contacts,Leads,Accounts", "max_num": "20"})
            records = [(r.get("_module", ""), r) for r in (data or {}).get("records") or []]
        except SearchUnavailableError:
            answers = await asyncio.gather(*(self._filter(base, m, e164, creds) for m in PHONES))
            records = [(m, r) for m, rs in zip(PHONES, answers, strict=True) for r in rs]
        found = [c for c in (self._contact(base, m, r, e164) for m, r in records) if c is not None]
        return rank(found, crm_user)

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
        data = await self.request("POST", f"{base}/rest/v11/Calls", creds=creds, json=call, budget=10)
        if not isinstance(data, dict) or not data.get("id"):
            raise CrmPermanentError("sugarcrm created no call", crm=self.kind)
        return LoggedRecord(record_id=data["id"], url=f"{base}/#Calls/{data['id']}")

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds)
        current = await self.request("GET", f"{base}/rest/v11/Calls/{record_id}", creds=creds, budget=10,
                                     params={"fields": "description"})
        old = (current or {}).get("description") or ""
        await self.request("PUT", f"{base}/rest/v11/Calls/{record_id}", creds=creds, budget=10,
                           json={"description": f"{old}\n\n{text}" if old else text})
