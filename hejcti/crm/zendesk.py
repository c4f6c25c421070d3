"""Zendesk Support.

``--crm-instance`` is the subdomain (``acme``), the host (``acme.zendesk.com``) or a URL; all of them give
``https://acme.zendesk.com``. Lookup: the search recipe of Zendesk's Talk Partner guide,
``type:user phone:*<national number>``; the leading wildcard makes the match independent of how the number was
written. Every hit is verified; as the wildcard also finds a different valid number that merely ends in the
caller's national number (``+43 15791234567`` for ``+49 157 91234567``), such a hit is dropped (reference §0.1:
digit suffixes count only when the stored number does not parse). Users are end users and agents (kind
``user``) and belong to no one (no owner). Their organization gives the company: one
``organizations/show_many.json`` for the hits' organization ids (no sideload of organizations on the search
endpoint was found documented), best effort: when it fails the contacts go out without company. Records: a ticket with a private comment (option C of the reference: it needs
no Talk Partner Edition or Marketplace app), requested by the caller, assigned to the mapped agent, tagged
``cti_call``; a note is another private comment on that ticket. A user whose number is their organization's
shared one (``shared_phone_number``) ranks after people reached on a number of their own.

Written once: the create carries the idempotency key ``hejcti-<call key>-<direction>``
(``CallRecord.external_key``; ticketing API, "Idempotency": the same key and body within two hours get the
first answer again, no second ticket) and the same string as the ticket's ``external_id``. The direction makes the two ends of one call (two
accounts sharing this Zendesk, one inbound, one outbound, the same sipgate xcid) a ticket each. A retry sends exactly the first body (the job keeps the note to its first head);
the same key with another body is Zendesk's 400 ``IdempotentRequestError``, read as "created already": the
ticket is found by its ``external_id`` (``GET /api/v2/tickets.json?external_id=``, "List Tickets"), as
``find_logged`` finds it before any retry of the job.
"""

from __future__ import annotations

from dataclasses import replace
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
    CrmRateLimitError,
    CrmTransientError,
    LoggedRecord,
    Response,
    body_json,
    parse_time,
    rank,
    retry_after_seconds,
)


class Adapter(CrmAdapter):
    kind = "zendesk"
    session_hosts = (".zendesk.com",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.instance:
            self.instance = instance_url(self.instance)

    def classify(self, resp: Response) -> CrmError:
        if resp.status == 429:  # usually text/plain: "Number of allowed API requests per minute exceeded"
            return CrmRateLimitError("zendesk rate limit", crm=self.kind, status=429,
                                     retry_after=retry_after_seconds(resp.headers, rate_limited=True))
        body = body_json(resp)
        error = body.get("error") if isinstance(body, dict) else None
        if resp.status == 401:
            return CrmAuthError(f"zendesk token rejected ({error or 'HTTP 401'})", crm=self.kind, status=401)
        if resp.status == 400 and error == IDEMPOTENT_REQUEST_ERROR:
            return KeyUsedError("zendesk: idempotency key used with another body", crm=self.kind, status=400)
        return super().classify(resp)

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        base = self.base_url(creds)
        nsn = phones.national_significant(e164)
        data = await self.request("GET", f"{base}/api/v2/search.json", creds=creds,
                                  params={"query": f"type:user phone:*{nsn}"})
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise CrmPermanentError("zendesk search: unexpected answer", crm=self.kind)
        found: list[Contact] = []
        for u in data["results"]:
            if u.get("result_type", "user") != "user" or u.get("id") is None:
                continue
            match = phones.best_match([u.get("phone")], e164, self.region)
            if match is None:
                continue
            found.append(Contact(
                crm=self.kind, kind="user", id=str(u["id"]), name=u.get("name") or str(u["id"]), company=None,
                url=f"{base}/agent/users/{u['id']}", match=match,
                owner_id=None,  # a Zendesk user record has no owner (agents own tickets, not users)
                modified_at=parse_time(u.get("updated_at")),
                parent_id=str(u["organization_id"]) if u.get("organization_id") else None,
                shared_phone=u.get("shared_phone_number") is True))
        names = await self._organizations(base, {c.parent_id for c in found if c.parent_id}, creds)
        found = [replace(c, company=names.get(c.parent_id or "")) for c in found]
        return rank(found, crm_user)

    async def _organizations(self, base: str, ids: set[str], creds: Credentials | None) -> dict[str, str]:
        """Organization id → name, in one request; {} when there are none or Zendesk does not answer."""
        if not ids:
            return {}
        try:
            data = await self.request("GET", f"{base}/api/v2/organizations/show_many.json", creds=creds,
                                      params={"ids": ",".join(sorted(ids, key=lambda i: (len(i), i))[:100])})
        except CrmAuthError:
            raise
        except CrmError:
            return {}  # the pop without company beats no pop
        orgs = data.get("organizations") if isinstance(data, dict) else None
        return {str(o["id"]): o["name"] for o in orgs or [] if isinstance(o, dict) and o.get("id") and o.get("name")}

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds)
        started = record.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [replace(record, note=None).description(self.region), "",
                 f"Caller: {phones.display(record.number, self.region) or 'anonymous'}",
                 f"Line: {phones.display(record.own_number, self.region) or '–'}", f"Started: {started}"]
        if record.note:  # last, so that a ticket found again shows by its end how much of the note it holds
            lines += ["", record.note]
        key = record.external_key
        ticket: dict[str, Any] = {
            "subject": record.subject(self.region),
            "comment": {"body": "\n".join(lines), "public": False},
            "tags": ["cti_call", f"cti_{record.outcome}"],
            "external_id": key,
        }
        if record.contact is not None and record.contact.kind == "user":
            ticket["requester_id"] = _int(record.contact.id)
        if record.owner:
            ticket["assignee_id"] = _int(record.owner)
        # Zendesk keeps the answer to a keyed create and returns it for a repeat of the same body, so this
        # create, unlike the other CRMs', may be sent again after a lost answer
        try:
            data = await self.request("POST", f"{base}/api/v2/tickets.json", creds=creds, budget=10,
                                      idempotent=True, headers={"Idempotency-Key": key}, json={"ticket": ticket})
        except KeyUsedError:
            # the key made a ticket from another body (an attempt before the note grew, or before this
            # version): that ticket is the record, found by its external_id
            found = await self.find_logged(record, creds)
            if found is None:
                raise CrmTransientError("zendesk: the ticket of this idempotency key is not listed yet",
                                        crm=self.kind, status=400) from None
            return found
        tid = ((data or {}).get("ticket") or {}).get("id") if isinstance(data, dict) else None
        if tid is None:
            raise CrmPermanentError("zendesk created no ticket", crm=self.kind)
        return LoggedRecord(record_id=str(tid), url=f"{base}/agent/tickets/{tid}")

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        """The ticket an earlier attempt created, by the ``external_id`` every create sets ("List Tickets" by
        external id reads the tickets themselves, not the search index, which lags by minutes); its
        ``description`` (the first comment) is the body."""
        base = self.base_url(creds)
        key = record.external_key
        data = await self.request("GET", f"{base}/api/v2/tickets.json", creds=creds, budget=10,
                                  params={"external_id": key})
        tickets = data.get("tickets") if isinstance(data, dict) else None
        if not isinstance(tickets, list):
            raise CrmPermanentError("zendesk tickets by external_id: unexpected answer", crm=self.kind)
        # checked again: a list that ignored the filter would otherwise offer someone else's ticket
        ours = [t for t in tickets if isinstance(t, dict) and str(t.get("id") or "").isdigit()
                and str(t.get("external_id") or "").lower() == key.lower()]
        if not ours:
            return None
        first = min(ours, key=lambda t: int(t["id"]))  # the oldest, should an older version have made two
        return LoggedRecord(record_id=str(first["id"]), url=f"{base}/agent/tickets/{first['id']}",
                            body=first.get("description") or "")

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds)
        await self.request("PUT", f"{base}/api/v2/tickets/{record_id}.json", creds=creds, budget=10,
                           json={"ticket": {"comment": {"body": text, "public": False}}})

    async def list_users(self, creds: Credentials | None) -> list[dict[str, str | None]]:
        """The account's active agents and admins (``id``, ``name``, ``email``), for the portal's mapping
        (CONTRACT §9): ``GET /api/v2/users.json?role[]=agent&role[]=admin`` with cursor pages of 100, at most
        five."""
        base = self.base_url(creds)
        params: list[tuple[str, str]] = [("role[]", "agent"), ("role[]", "admin"), ("page[size]", "100")]
        out: list[dict[str, str | None]] = []
        for _ in range(5):
            data = await self.request("GET", f"{base}/api/v2/users.json", creds=creds, budget=10, params=params)
            if not isinstance(data, dict) or not isinstance(data.get("users"), list):
                raise CrmPermanentError("zendesk users: unexpected answer", crm=self.kind)
            out += [{"id": str(u["id"]), "name": str(u.get("name") or u.get("email") or u["id"]),
                     "email": str(u["email"]) if u.get("email") else None}
                    for u in data["users"] if isinstance(u, dict) and u.get("id") and u.get("active", True)]
            meta = data.get("meta") or {}
            if not meta.get("has_more") or not meta.get("after_cursor"):
                break
            params = [*params[:3], ("page[after]", str(meta["after_cursor"]))]
        return out


#: Zendesk's answer (400) to a known idempotency key sent with a different body within two hours
IDEMPOTENT_REQUEST_ERROR = "IdempotentRequestError"


class KeyUsedError(CrmPermanentError):
    """400 ``IdempotentRequestError``: the key has made a ticket already, from another body."""


def _int(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def instance_url(value: str) -> str:
    """``acme``, ``acme.zendesk.com`` or a URL (kept as given, without a trailing slash) → the base URL."""
    value = value.strip().rstrip("/")
    if "://" in value:
        return value
    if "." in value:
        return f"https://{value}"
    return f"https://{value}.zendesk.com"

