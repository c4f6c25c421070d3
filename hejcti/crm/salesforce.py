"""Salesforce (REST API).

``--crm-instance`` is the org's instance URL (``https://acme.my.salesforce.com``); without it the session's
``instance_url`` from its token is used. Lookup: one SOSL search ``FIND {…} IN PHONE FIELDS`` over Contacts,
unconverted Leads and Accounts with the number's digit-only forms (nothing to escape), every hit verified on
its phone fields. Deep links in Lightning form (``https://acme.lightning.force.com/lightning/r/Contact/{id}/view``)
for My Domain orgs, else ``{instance}/{id}``. Records: a Task with ``TaskSubtype: Call``; a note is appended to
the Task's Description. A retry after a lost answer first asks for the Task by its ``CallObject`` (the job's key and
the call's direction, ``CallRecord.external_key``: the two ends of a call between two accounts sharing one org
are a Task each), so the call is not logged twice.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from hejcti import phones
from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAdapter,
    CrmAuthError,
    CrmError,
    CrmPermanentError,
    CrmRateLimitError,
    LoggedRecord,
    Response,
    body_json,
    parse_time,
    rank,
)

VERSION = "v62.0"
FIELDS = {
    "Contact": ["Id", "Name", "Phone", "MobilePhone", "HomePhone", "OtherPhone", "AccountId", "Account.Name",
                "OwnerId", "LastModifiedDate"],
    "Lead": ["Id", "Name", "Company", "Phone", "MobilePhone", "OwnerId", "LastModifiedDate"],
    "Account": ["Id", "Name", "Phone", "OwnerId", "LastModifiedDate"],
}
PHONE_FIELDS = ("Phone", "MobilePhone", "HomePhone", "OtherPhone")
KIND = {"Contact": "contact", "Lead": "lead", "Account": "account"}
#: seconds before the next attempt after REQUEST_LIMIT_EXCEEDED (no Retry-After from Salesforce)
REQUEST_LIMIT_RETRY_AFTER = 300.0


def _error_code(resp: Response) -> str:
    body = body_json(resp)
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode", ""))
    return ""


def _terms(e164: str, region: str) -> list[str]:
    """The digit-only forms to search (nothing to escape in SOSL): the number's variants, plus the digits of
    the ``+49 (0)30 …`` form (country code and trunk prefix) that people write in countries with a trunk 0."""
    terms = [v for v in phones.variants(e164, region) if v.isdigit()]
    nsn = phones.national_significant(e164)
    trunk = [t for t in terms if t.endswith(nsn) and len(t) == len(nsn) + 1 and t.startswith("0")]
    if trunk and nsn != e164.lstrip("+"):
        cc = e164.lstrip("+").removesuffix(nsn)
        terms.append(cc + trunk[0])
    return list(dict.fromkeys(terms))


class Adapter(CrmAdapter):
    kind = "salesforce"
    session_hosts = (".salesforce.com", ".force.com")

    def classify(self, resp: Response) -> CrmError:
        code = _error_code(resp)
        if resp.status == 401:
            # reference §1.2: an expired or invalid session is 401 with body[0].errorCode INVALID_SESSION_ID
            # (also "not valid for use with the REST API": a new token is asked for once, then we give up);
            # any other 401 is not Salesforce's session signature, so a new token would not help
            if code == "INVALID_SESSION_ID":
                return CrmAuthError("salesforce session expired or invalid (INVALID_SESSION_ID)", crm=self.kind,
                                    status=401)
            return CrmPermanentError(f"HTTP 401 from salesforce ({code or 'no INVALID_SESSION_ID'})",
                                     crm=self.kind, status=401)
        if resp.status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            # reference §0.3/§1.6: the org's rolling 24 h limit; it does not recover in seconds, so no quick
            # retries: a lookup fails at once, a call record waits this long before its next attempt
            return CrmRateLimitError("salesforce REQUEST_LIMIT_EXCEEDED", crm=self.kind, status=403,
                                     retry_after=REQUEST_LIMIT_RETRY_AFTER)
        if resp.status >= 400 and code:
            err = super().classify(resp)
            err.args = (f"{err.args[0]} ({code})",)
            return err
        return super().classify(resp)

    def _ui(self, base: str, sobject: str, rid: str) -> str:
        host = urlsplit(base).hostname or ""
        if host.endswith(".my.salesforce.com"):
            org = host.removesuffix(".my.salesforce.com")
            return f"https://{org}.lightning.force.com/lightning/r/{sobject}/{rid}/view"
        return f"{base}/{rid}"

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        base = self.base_url(creds)
        terms = _terms(e164, self.region)
        returning = ", ".join(
            f"{obj}({', '.join(fields)}{' WHERE IsConverted = false' if obj == 'Lead' else ''} LIMIT 20)"
            for obj, fields in FIELDS.items())
        sosl = "FIND {" + " OR ".join(f'"{t}"' for t in terms) + "} IN PHONE FIELDS RETURNING " + returning
        data = await self.request("GET", f"{base}/services/data/{VERSION}/search/", creds=creds, params={"q": sosl})
        records = data.get("searchRecords") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise CrmPermanentError("salesforce search: unexpected answer", crm=self.kind)
        found = []
        for r in records:
            sobject = (r.get("attributes") or {}).get("type")
            if sobject not in KIND or not r.get("Id"):
                continue
            match = phones.best_match([r.get(f) for f in PHONE_FIELDS], e164, self.region)
            if match is None:
                continue
            company = (r.get("Account") or {}).get("Name") if sobject == "Contact" else r.get("Company")
            found.append(Contact(
                crm=self.kind, kind=KIND[sobject], id=r["Id"], name=r.get("Name") or r["Id"],
                company=company or (r.get("Name") if sobject == "Account" else None),
                url=self._ui(base, sobject, r["Id"]), match=match, owner_id=r.get("OwnerId"),
                modified_at=parse_time(r.get("LastModifiedDate")),
                parent_id=r.get("AccountId") if sobject == "Contact" else None))
        return rank(found, crm_user)

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds)
        task: dict[str, Any] = {
            "Subject": record.subject(self.region)[:255],
            "TaskSubtype": "Call",
            "CallType": "Inbound" if record.direction == "in" else "Outbound",
            "CallDurationInSeconds": record.duration_s or 0,
            "CallObject": record.external_key,
            "CallDisposition": record.outcome.capitalize(),
            "Status": "Completed",
            "ActivityDate": record.started_at.astimezone(UTC).date().isoformat(),
            "Description": record.description(self.region),
        }
        c = record.contact
        if c is not None:
            if c.kind in ("contact", "lead"):
                task["WhoId"] = c.id
                if c.kind == "contact" and c.parent_id:
                    task["WhatId"] = c.parent_id  # a lead's task takes no WhatId
            elif c.kind == "account":
                task["WhatId"] = c.id
        if record.owner:
            task["OwnerId"] = record.owner
        data = await self.request("POST", f"{base}/services/data/{VERSION}/sobjects/Task/", creds=creds, json=task,
                                  budget=10)
        if not isinstance(data, dict) or not data.get("id"):
            raise CrmPermanentError("salesforce created no Task", crm=self.kind)
        return LoggedRecord(record_id=data["id"], url=self._ui(base, "Task", data["id"]))

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        # CallObject, the CTI call identifier (reference §1.5), holds the job's key: a filterable Task field
        base = self.base_url(creds)
        key = record.external_key.replace("\\", "\\\\").replace("'", "\\'")  # SOQL string quoting
        soql = f"SELECT Id, Description FROM Task WHERE CallObject = '{key}' ORDER BY CreatedDate LIMIT 1"  # noqa: S608  # SOQL to Salesforce, the key quoted
        data = await self.request("GET", f"{base}/services/data/{VERSION}/query/", creds=creds, params={"q": soql},
                                  budget=10)
        rows = data.get("records") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise CrmPermanentError("salesforce query: unexpected answer", crm=self.kind)
        if not rows or not isinstance(rows[0], dict) or not rows[0].get("Id"):
            return None
        rid = str(rows[0]["Id"])
        return LoggedRecord(record_id=rid, url=self._ui(base, "Task", rid), body=rows[0].get("Description") or "")

    async def list_users(self, creds: Credentials | None) -> list[dict[str, str | None]]:
        """The org's active users (``id``, ``name``, ``email``), for the portal's mapping (CONTRACT §9): the id is
        a record's ``OwnerId``. One SOQL query, at most 2000, by name."""
        base = self.base_url(creds)
        soql = "SELECT Id, Name, Email FROM User WHERE IsActive = true ORDER BY Name LIMIT 2000"
        data = await self.request("GET", f"{base}/services/data/{VERSION}/query/", creds=creds, params={"q": soql},
                                  budget=10)
        rows = data.get("records") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise CrmPermanentError("salesforce users: unexpected answer", crm=self.kind)
        return [{"id": str(r["Id"]), "name": str(r.get("Name") or r.get("Email") or r["Id"]),
                 "email": str(r["Email"]) if r.get("Email") else None}
                for r in rows if isinstance(r, dict) and r.get("Id")]

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds)
        url = f"{base}/services/data/{VERSION}/sobjects/Task/{record_id}"
        current = await self.request("GET", url, creds=creds, params={"fields": "Description"}, budget=10)
        old = (current or {}).get("Description") or ""
        await self.request("PATCH", url, creds=creds, json={"Description": f"{old}\n\n{text}" if old else text},
                           budget=10)
