"""Pipedrive (API v2 search, v1 call logs).

Lookup: ``GET /api/v2/persons/search`` with ``fields=phone``, first for the E.164 digits, then for the national
significant number, stopping at the first verified hit (Pipedrive's phone matching is undocumented and partial);
when no person verifies, ``GET /api/v2/organizations/search`` with ``fields=custom_fields`` the same way
(organizations have no standard phone field). Deep links: ``https://{company_domain}.pipedrive.com/person/{id}``
(``/organization/{id}``), the domain from the API host or ``GET /api/v1/users/me``. Records: ``POST /api/v1/callLogs`` (telephony call log, owner ``user_id``). A call log
cannot be edited, so a note becomes a Pipedrive note on the same person and organization. A call log has no
field for the job's key: a retry after a lost answer first looks through the user's call logs
(``GET /api/v1/callLogs``) for one with the same owner, person, organization, numbers, outcome, duration and
the same start and end time, so the call is not logged twice.
"""

from __future__ import annotations

import html
import re
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
    parse_time,
    rank,
)

API = "https://api.pipedrive.com"
OUTCOME = {"answered": "connected", "missed": "no_answer", "voicemail": "left_voicemail"}
#: call logs per page of GET /api/v1/callLogs ("The upper limit is 50")
LOG_PAGE = 50
#: how far a found log's start and end may be from what this job sends: a retry sends the same times, to the
#: second, so only a rounding is allowed for. Not a minute: a caller who rings again half a minute after a
#: missed call makes a second missed call with the same owner, person, numbers and duration, and it must not
#: be taken for the first one's log (and so never written).
SAME_TIME_S = 1
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # call log times, UTC


def _envelope(data: Any, what: str) -> Any:
    if not isinstance(data, dict) or data.get("success") is False or "data" not in data:
        raise CrmPermanentError(f"pipedrive {what}: unexpected answer", crm="pipedrive")
    return data["data"]


def _digits(value: Any) -> str:
    """The ASCII digits of a number or duration (``phones.digits``); the value itself when it has none."""
    return phones.digits(str(value or "")) or str(value or "")


def _same_call(log: dict[str, Any], sent: dict[str, Any]) -> float | None:
    """How many seconds apart ``log`` starts from the call log ``sent`` describes, when it is that call's log:
    the same owner, person, organization, numbers, outcome and duration, start and end within SAME_TIME_S.
    None when it is not."""
    for k in ("user_id", "person_id", "org_id"):
        if k in sent and str(log.get(k) or "") != str(sent[k]):
            return None
        if k not in sent and k != "user_id" and log.get(k):
            return None
    if _digits(log.get("from_phone_number")) != _digits(sent["from_phone_number"]) or \
            _digits(log.get("to_phone_number")) != _digits(sent["to_phone_number"]):
        return None
    if log.get("outcome") != sent["outcome"] or _digits(log.get("duration") or "0") != _digits(sent["duration"]):
        return None
    gaps = []
    for k in ("start_time", "end_time"):
        # call log times are YYYY-MM-DD HH:MM:SS in UTC (an ISO form with an offset is taken as it says)
        theirs, ours = parse_time(log.get(k), naive=UTC), parse_time(sent[k], naive=UTC)
        if theirs is None or ours is None or abs((theirs - ours).total_seconds()) > SAME_TIME_S:
            return None
        gaps.append(abs((theirs - ours).total_seconds()))
    return gaps[0]


def _text(note: Any) -> str:
    """A call log's HTML note as the text it was made from (``log_call`` writes ``<p>…<br>…</p>``)."""
    text = re.sub(r"<br\s*/?>|</p>\s*<p[^>]*>", "\n", str(note or ""), flags=re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


class Adapter(CrmAdapter):
    kind = "pipedrive"
    session_hosts = (".pipedrive.com",)
    #: pages of the user's call logs read at most when looking for an earlier write (LOG_PAGE each)
    max_log_pages: int = 10

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

    def _call_log(self, record: CallRecord) -> dict[str, Any]:
        """The body of ``POST /api/v1/callLogs`` for ``record``."""
        ours, theirs = record.own_number, record.number
        start = record.started_at.astimezone(UTC)
        end = record.ended_at.astimezone(UTC)
        body: dict[str, Any] = {
            "subject": record.subject(self.region),
            "outcome": OUTCOME[record.outcome],
            "from_phone_number": (theirs if record.direction == "in" else ours) or "anonymous",
            "to_phone_number": (ours if record.direction == "in" else theirs) or "anonymous",
            "start_time": start.strftime(TIME_FORMAT),
            "end_time": end.strftime(TIME_FORMAT),
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
        return body

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds, API)
        body = self._call_log(record)
        data = _envelope(await self.request("POST", f"{base}/api/v1/callLogs", creds=creds, json=body, budget=10),
                         "callLogs")
        if not isinstance(data, dict) or not data.get("id"):
            raise CrmPermanentError("pipedrive created no call log", crm=self.kind)
        domain = await self._company_domain(base, creds)
        url = self._url(domain, "person", body["person_id"]) if "person_id" in body else None
        return LoggedRecord(record_id=str(data["id"]), url=url)

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        # No call log field takes the job's key (AddCallLogRequest in pipedrive/client-nodejs), and the list has
        # no filters: GET /api/v1/callLogs pages through the call logs of the token's user, 50 at a time, in an
        # undocumented order. The log this job wrote is the one with what log_call sends for it (owner, person,
        # organization, numbers, outcome, duration, start and end to the second, SAME_TIME_S); at most
        # max_log_pages pages are read. Not found where the user's list does not hold it (a log written for
        # another user than the token's, or beyond those pages): the job then writes the call again.
        base = self.base_url(creds, API)
        sent = self._call_log(record)
        start = 0
        for _ in range(self.max_log_pages):
            answer = await self.request("GET", f"{base}/api/v1/callLogs", creds=creds, budget=10,
                                        params={"start": str(start), "limit": str(LOG_PAGE)})
            logs = _envelope(answer, "callLogs") or []
            if not isinstance(logs, list):
                raise CrmPermanentError("pipedrive callLogs: unexpected answer", crm=self.kind)
            near = [(gap, log) for log in logs if isinstance(log, dict) and log.get("id")
                    and (gap := _same_call(log, sent)) is not None]
            if near:
                log = min(near, key=lambda pair: pair[0])[1]
                domain = await self._company_domain(base, creds)
                url = self._url(domain, "person", sent["person_id"]) if "person_id" in sent else None
                return LoggedRecord(record_id=str(log["id"]), url=url, body=_text(log.get("note")))
            pagination = (answer.get("additional_data") or {}).get("pagination") or {}
            if not logs or not pagination.get("more_items_in_collection"):
                return None
            after = pagination.get("next_start")
            start = after if isinstance(after, int) and after > start else start + len(logs)
        return None

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

    async def list_users(self, creds: Credentials | None) -> list[dict[str, str | None]]:
        """The company's active users (``id``, ``name``, ``email``), for the portal's mapping (CONTRACT §9): the
        id is a call log's ``user_id``. One ``GET /api/v1/users`` (v1 answers them all at once)."""
        base = self.base_url(creds, API)
        data = _envelope(await self.request("GET", f"{base}/api/v1/users", creds=creds, budget=10), "users")
        if not isinstance(data, list):
            raise CrmPermanentError("pipedrive users: unexpected answer", crm=self.kind)
        return [{"id": str(u["id"]), "name": str(u.get("name") or u.get("email") or u["id"]),
                 "email": str(u["email"]) if u.get("email") else None}
                for u in data if isinstance(u, dict) and u.get("id") and u.get("active_flag", True)]
