"""Pipedrive (API v2 search, v1 call logs).

Lookup: ``GET /api/v2/persons/search`` with ``fields=phone``, first for the E.164 digits, then for the national
significant number, stopping at the first verified hit (Pipedrive's phone matching is undocumented and partial);
when no person verifies, ``GET /api/v2/organizations/search`` with ``fields=custom_fields`` the same way
(organizations have no standard phone field). Deep links: ``https://{company_domain}.pipedrive.com/person/{id}``
(``/organization/{id}``), the domain from the API host or ``GET /api/v1/users/me``. Records: ``POST /api/v1/callLogs`` (telephony call log, owner ``user_id``). A call log
cannot be edited, so a note becomes a Pipedrive note on the same person and organization.
"""

from __future__ import annotations

import html
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from hejcti import phones
from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAdapter,
    CrmError,
    CrmPermanentError,
    LoggedRecord,
    rank,
)

API = "https://api.pipedrive.com"
OUTCOME = {"answered": "connected", "missed": "no_answer", "voicemail": "left_voicemail"}


def _envelope(data: Any, what: str) -> Any:
    if not isinstance(data, dict) or data.get("success") is False or "data" not in data:
        raise CrmPermanentError(f"pipedrive {what}: unexpected answer", crm="pipedrive")
    return data["data"]


class Adapter(CrmAdapter):
    kind = "pipedrive"
    session_hosts = (".pipedrive.com",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._domain: str | None = None

    async def _company_domain(self, base: str, creds: Credentials | None) -> str | None:
        if self._domain:
            return self._domain
        host = urlsplit(base).hostname or ""
        if host.endswith(".pipedrive.com") and host not in ("api.pipedrive.com", "oauth.pipedrive.com"):
            self._domain = host.removesuffix(".pipedrive.com")
            return self._domain
        try:
            me = _envelope(await self.request("GET", f"{base}/api/v1/users/me", creds=creds), "users/me")
        except CrmError:
            return None
        self._domain = (me or {}).get("company_domain") or None
        return self._domain

    def _url(self, domain: str | None, kind: str, rid: Any) -> str | None:
        return f"https://{domain}.pipedrive.com/{kind}/{rid}" if domain else None

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        base = self.base_url(creds, API)
        # reference §3.3: the E.164 digits first, then the national significant number, one after the other
        # (search is rate-limited to 10 requests per 2 s), stopping at the first term that gives a verified
        # hit; every hit is verified here, since Pipedrive matches partially. A failed search raises: it is
        # never taken for "not found".
        terms = list(dict.fromkeys([e164.lstrip("+"), phones.national_significant(e164)]))
        domain: str | None = None
        found: dict[str, Contact] = {}
        for i, term in enumerate(terms):
            items = await self._search(base, "persons", {"term": term, "fields": "phone"}, creds)
            if i == 0:
                domain = await self._company_domain(base, creds)
            for item in items:
                c = self._person(item, e164, domain)
                if c is not None:
                    found.setdefault(c.id, c)
            if found:
                return rank(list(found.values()), crm_user)
        # no person: organizations, which keep phones only in custom fields (reference §3.3)
        for term in terms:
            items = await self._search(base, "organizations", {"term": term, "fields": "custom_fields"}, creds)
            for item in items:
                c = self._organization(item, e164, domain)
                if c is not None:
                    found.setdefault(c.id, c)
            if found:
                break
        return rank(list(found.values()), crm_user)

    async def _search(self, base: str, what: str, params: dict[str, str], creds: Credentials | None) -> list[dict]:
        answer = await self.request("GET", f"{base}/api/v2/{what}/search", creds=creds,
                                    params={**params, "exact_match": "false", "limit": "20"})
        data = _envelope(answer, f"{what}/search") or {}
        if not isinstance(data, dict) or not isinstance(data.get("items") or [], list):
            raise CrmPermanentError(f"pipedrive {what}/search: unexpected answer", crm=self.kind)
        return [entry.get("item") or {} for entry in data.get("items") or [] if isinstance(entry, dict)]

    @staticmethod
    def _owner(item: dict[str, Any]) -> str | None:
        owner = (item.get("owner") or {}).get("id")
        return str(owner) if owner is not None else None

    def _person(self, item: dict[str, Any], e164: str, domain: str | None) -> Contact | None:
        match = phones.best_match([p for p in item.get("phones") or [] if isinstance(p, str)], e164, self.region)
        if match is None or item.get("id") is None:
            return None
        org = item.get("organization") or {}
        pid = str(item["id"])
        return Contact(crm=self.kind, kind="person", id=pid, name=item.get("name") or pid,
                       company=org.get("name") or None, url=self._url(domain, "person", pid), match=match,
                       owner_id=self._owner(item), parent_id=str(org["id"]) if org.get("id") else None)

    def _organization(self, item: dict[str, Any], e164: str, domain: str | None) -> Contact | None:
        stored = [v for v in item.get("custom_fields") or [] if isinstance(v, str)]
        match = phones.best_match(stored, e164, self.region)
        if match is None or item.get("id") is None:
            return None
        oid = str(item["id"])
        return Contact(crm=self.kind, kind="organization", id=oid, name=item.get("name") or oid,
                       company=item.get("name") or None, url=self._url(domain, "organization", oid), match=match,
                       owner_id=self._owner(item))

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds, API)
        ours, theirs = record.own_number, record.number
        start = record.started_at.astimezone(UTC)
        end = record.ended_at.astimezone(UTC)
        body: dict[str, Any] = {
            "subject": record.subject(self.region),
            "outcome": OUTCOME[record.outcome],
            "from_phone_number": (theirs if record.direction == "in" else ours) or "anonymous",
            "to_phone_number": (ours if record.direction == "in" else theirs) or "anonymous",
            "start_time": start.strftime("%Y-%m-%d %H:%M:%S"),
            "end_time": end.strftime("%Y-%m-%d %H:%M:%S"),
            "duration": str(record.duration_s or 0),
            "note": "<p>" + html.escape(record.description(self.region)).replace("\n", "<br>") + "</p>",
        }
        if record.owner and record.owner.isdigit():
            body["user_id"] = int(record.owner)
        contact = record.contact
        if contact is not None:
            if contact.kind == "person":
                body["person_id"] = int(contact.id) if contact.id.isdigit() else contact.id
                if contact.parent_id:
                    body["org_id"] = int(contact.parent_id) if contact.parent_id.isdigit() else contact.parent_id
            elif contact.kind == "organization":
                body["org_id"] = int(contact.id) if contact.id.isdigit() else contact.id
        data = _envelope(await self.request("POST", f"{base}/api/v1/callLogs", creds=creds, json=body, budget=10),
                         "callLogs")
        if not isinstance(data, dict) or not data.get("id"):
            raise CrmPermanentError("pipedrive created no call log", crm=self.kind)
        domain = await self._company_domain(base, creds)
        url = self._url(domain, "person", body["person_id"]) if "person_id" in body else None
        return LoggedRecord(record_id=str(data["id"]), url=url)

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds, API)
        log = _envelope(await self.request("GET", f"{base}/api/v1/callLogs/{record_id}", creds=creds, budget=10),
                        "callLogs")
        target = {k: log[k] for k in ("person_id", "org_id", "deal_id", "lead_id") if (log or {}).get(k)}
        if not target:
            raise CrmPermanentError("pipedrive call log has no person, organization or deal for a note",
                                    crm=self.kind)
        content = f"<p>Note on the call of {html.escape(str(log.get('start_time', '')))} UTC:</p><p>" + \
            html.escape(text).replace("\n", "<br>") + "</p>"
        await self.request("POST", f"{base}/api/v1/notes", creds=creds, budget=10, json={"content": content, **target})
