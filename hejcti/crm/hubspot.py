"""HubSpot (CRM v3 objects API).

Lookup: one ``POST /crm/v3/objects/contacts/search`` whose OR'ed filter groups cover ``phone`` and
``mobilephone`` as stored (``IN`` the number's written forms) and HubSpot's digit-only calculated properties
(``EQ`` the national significant number); companies are searched the same way only when no contact matched
(the search API allows about five requests a second). Every hit is verified against the caller.
Deep links need the portal id and UI domain: ``GET /account-info/v3/details``, once per adapter.
Call records: a ``calls`` object associated with the contact (194) and its company (182), carrying the job's
key and the call's direction in ``hs_call_external_id`` (``CallRecord.external_key``); a retry after a lost
answer first searches the calls for that key, so the call is not logged twice.
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
    CrmError,
    CrmPermanentError,
    CrmRateLimitError,
    LoggedRecord,
    Response,
    body_json,
    parse_time,
    rank,
    retry_after_seconds,
)

API = "https://api.hubapi.com"
# reference §2.3: "email" too, for the name of a contact without first and last name
CONTACT_PROPS = ["firstname", "lastname", "email", "phone", "mobilephone", "company", "hubspot_owner_id",
                 "associatedcompanyid", "lastmodifieddate"]
#: reference §2.2: the 401 categories that mean "this access token is expired or invalid"
AUTH_CATEGORIES = frozenset({"EXPIRED_AUTHENTICATION", "INVALID_AUTHENTICATION"})
COMPANY_PROPS = ["name", "phone", "hubspot_owner_id", "hs_lastmodifieddate"]
DISPOSITION = {"answered": "f240bbac-87c9-4f6e-bf70-924b57d47db7", "missed": "73a0d17f-1163-4015-bdd5-ec830791da20",
               "voicemail": "b2cf5968-551e-4856-9783-52b3da59a7d0"}
CALL_TO_CONTACT, CALL_TO_COMPANY = 194, 182
#: where a call object keeps the job's key: a default calls property, the calling app's id for the call
#: (HubSpot's recordings and transcriptions guide names the call by it)
EXTERNAL_ID = "hs_call_external_id"


class Adapter(CrmAdapter):
    kind = "hubspot"
    session_hosts = ("api.hubapi.com", "api.hubspot.com")
    #: seconds before a search for an earlier write that found nothing is asked once more: HubSpot's search
    #: is an index that shows a new record only after a few seconds (reference §2.3)
    index_lag_s: float = 3.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._portal: tuple[str, str] | None = None  # (portal id, UI domain)
        self._portal_lock = asyncio.Lock()

    def classify(self, resp: Response) -> CrmError:
        body = body_json(resp)
        if resp.status == 429:
            hinted = retry_after_seconds(resp.headers)
            policy = body.get("policyName", "") if isinstance(body, dict) else ""
            # HubSpot sends no Retry-After; its own SDK waits 10 s for the ten-secondly window, 1 s otherwise
            wait = hinted if hinted is not None else (10.0 if "TEN_SECONDLY" in policy else 1.0)
            return CrmRateLimitError(f"hubspot rate limit ({policy or 'unknown policy'})", crm=self.kind,
                                     status=429, retry_after=wait)
        if resp.status == 401:
            category = body.get("category", "") if isinstance(body, dict) else ""
            if category in AUTH_CATEGORIES:
                return CrmAuthError(f"hubspot token rejected ({category})", crm=self.kind, status=401)
            # a 401 without HubSpot's token categories (another category, an edge's HTML page): not the expiry
            # signature of §2.2, so a new token is not what would fix it; logged once, not retried
            return CrmPermanentError(f"HTTP 401 from hubspot ({category or 'no token category'})", crm=self.kind,
                                     status=401)
        if resp.status == 403 and isinstance(body, dict) and body.get("category") == "MISSING_SCOPES":
            return CrmPermanentError("hubspot token lacks a scope (MISSING_SCOPES)", crm=self.kind, status=403)
        return super().classify(resp)

    # -- lookup -------------------------------------------------------------------------------------

    def _filters(self, e164: str, fields: list[str], calculated: list[str]) -> list[dict[str, Any]]:
        written = list(phones.variants(e164, self.region))[:10]
        nsn = phones.national_significant(e164)
        groups = [{"filters": [{"propertyName": f, "operator": "IN", "values": written}]} for f in fields]
        groups += [{"filters": [{"propertyName": f, "operator": "EQ", "value": nsn}]} for f in calculated]
        return groups

    async def _search(self, base: str, obj: str, body: dict[str, Any], creds: Credentials | None,
                      budget: float | None = None) -> list[dict]:
        data = await self.request("POST", f"{base}/crm/v3/objects/{obj}/search", creds=creds, json=body,
                                  budget=budget)
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise CrmPermanentError(f"hubspot {obj} search: unexpected answer", crm=self.kind)
        return data["results"]

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        base = self.base_url(creds, API)
        body = {"filterGroups": self._filters(e164, ["phone", "mobilephone"],
                                              ["hs_searchable_calculated_phone_number",
                                               "hs_searchable_calculated_mobile_number"]),
                "properties": CONTACT_PROPS, "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
                "limit": 20}
        results, portal = await asyncio.gather(self._search(base, "contacts", body, creds),
                                               self._portal_info(base, creds))
        found = [c for c in (self._contact(r, e164, portal) for r in results) if c is not None]
        if not found:
            body = {"filterGroups": self._filters(e164, ["phone"], ["hs_searchable_calculated_phone_number"]),
                    "properties": COMPANY_PROPS, "limit": 20}
            found = [c for c in (self._company(r, e164, portal)
                                 for r in await self._search(base, "companies", body, creds)) if c is not None]
        return rank(found, crm_user)

    def _contact(self, r: dict[str, Any], e164: str, portal: tuple[str, str] | None) -> Contact | None:
        p = r.get("properties") or {}
        match = phones.best_match([p.get("phone"), p.get("mobilephone")], e164, self.region)
        if match is None or not r.get("id"):
            return None
        name = " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x) or p.get("email") or str(r["id"])
        return Contact(crm=self.kind, kind="contact", id=str(r["id"]), name=name, company=p.get("company") or None,
                       url=self._url(portal, "0-1", r["id"]), match=match, owner_id=p.get("hubspot_owner_id") or None,
                       modified_at=parse_time(p.get("lastmodifieddate") or r.get("updatedAt")),
                       parent_id=p.get("associatedcompanyid") or None)

    def _company(self, r: dict[str, Any], e164: str, portal: tuple[str, str] | None) -> Contact | None:
        p = r.get("properties") or {}
        match = phones.best_match([p.get("phone")], e164, self.region)
        if match is None or not r.get("id"):
            return None
        return Contact(crm=self.kind, kind="account", id=str(r["id"]), name=p.get("name") or str(r["id"]),
                       company=p.get("name") or None, url=self._url(portal, "0-2", r["id"]), match=match,
                       owner_id=p.get("hubspot_owner_id") or None,
                       modified_at=parse_time(p.get("hs_lastmodifieddate") or r.get("updatedAt")))

    @staticmethod
    def _url(portal: tuple[str, str] | None, object_type: str, record_id: Any) -> str | None:
        if portal is None:
            return None
        return f"https://{portal[1]}/contacts/{portal[0]}/record/{object_type}/{record_id}"

    async def _portal_info(self, base: str, creds: Credentials | None) -> tuple[str, str] | None:
        """Portal id and UI domain for deep links; a failure here costs the links, never the lookup."""
        if self._portal is not None:
            return self._portal
        async with self._portal_lock:
            if self._portal is None:
                try:
                    d = await self.request("GET", f"{base}/account-info/v3/details", creds=creds)
                except CrmAuthError:
                    raise
                except CrmError:
                    return None
                if isinstance(d, dict) and d.get("portalId"):
                    self._portal = (str(d["portalId"]), str(d.get("uiDomain") or "app.hubspot.com"))
        return self._portal

    # -- call records ---------------------------------------------------------------------------------

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        base = self.base_url(creds, API)
        ours, theirs = record.own_number, record.number
        props: dict[str, Any] = {
            "hs_timestamp": record.started_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "hs_call_title": record.subject(self.region),
            "hs_call_body": record.description(self.region),
            "hs_call_direction": "INBOUND" if record.direction == "in" else "OUTBOUND",
            "hs_call_duration": str((record.duration_s or 0) * 1000),
            "hs_call_from_number": (theirs if record.direction == "in" else ours) or "",
            "hs_call_to_number": (ours if record.direction == "in" else theirs) or "",
            "hs_call_status": "COMPLETED" if record.answered or record.voicemail else "NO_ANSWER",
            "hs_call_disposition": DISPOSITION[record.outcome],
            EXTERNAL_ID: record.external_key,
        }
        if record.owner:
            props["hubspot_owner_id"] = record.owner
        associations = []
        if record.contact is not None:
            if record.contact.kind == "contact":
                associations.append(_assoc(record.contact.id, CALL_TO_CONTACT))
                if record.contact.parent_id:
                    associations.append(_assoc(record.contact.parent_id, CALL_TO_COMPANY))
            else:
                associations.append(_assoc(record.contact.id, CALL_TO_COMPANY))
        # the portal id for the deep link is fetched (and cached) before the create: an expired token fails
        # here, while nothing has been written yet
        portal = await self._portal_info(base, creds)
        created = await self.request("POST", f"{base}/crm/v3/objects/calls", creds=creds, budget=10,
                                     json={"properties": props, "associations": associations})
        if not isinstance(created, dict) or not created.get("id"):
            raise CrmPermanentError("hubspot created no call object", crm=self.kind)
        if portal is None:
            try:
                portal = await self._portal_info(base, creds)
            except CrmError:  # the call exists: a missing deep link must never make the job create it again
                portal = None
        return LoggedRecord(record_id=str(created["id"]), url=self._url(portal, "0-48", created["id"]))

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        # hs_call_external_id is a documented calls property (the recordings guide); that the search filters on
        # it with EQ like on any other property is inferred (public integrations look calls up by it this way)
        # and the answer is checked here all the same. HubSpot's search is an index a few seconds behind its
        # writes: a call created shortly before the search may be missing from it, so a miss is asked once more
        # after index_lag_s. A retry comes at least a few seconds after the lost answer (the job's backoff),
        # so the create is then most likely indexed; one created within seconds of the second search can
        # still be missed, and is then written a second time (logged as call.record.written).
        base = self.base_url(creds, API)
        key = record.external_key
        body = {"filterGroups": [{"filters": [{"propertyName": EXTERNAL_ID, "operator": "EQ", "value": key}]}],
                "properties": [EXTERNAL_ID, "hs_call_body"],
                "sorts": [{"propertyName": "hs_createdate", "direction": "ASCENDING"}], "limit": 10}
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(self.index_lag_s)
            results = await self._search(base, "calls", body, creds, budget=10)
            found = next((r for r in results if isinstance(r, dict) and r.get("id")
                          and (r.get("properties") or {}).get(EXTERNAL_ID) == key), None)
            if found is not None:
                break
        else:
            return None
        try:
            portal = await self._portal_info(base, creds)
        except CrmError:  # the call exists: a missing deep link must never make the job create it again
            portal = None
        rid = str(found["id"])
        return LoggedRecord(record_id=rid, url=self._url(portal, "0-48", rid),
                            body=(found.get("properties") or {}).get("hs_call_body") or "")

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        base = self.base_url(creds, API)
        current = await self.request("GET", f"{base}/crm/v3/objects/calls/{record_id}", creds=creds, budget=10,
                                     params={"properties": "hs_call_body"})
        body = ((current or {}).get("properties") or {}).get("hs_call_body") or ""
        await self.request("PATCH", f"{base}/crm/v3/objects/calls/{record_id}", creds=creds, budget=10,
                           json={"properties": {"hs_call_body": f"{body}\n\n{text}" if body else text}})

    async def list_users(self, creds: Credentials | None) -> list[dict[str, str | None]]:
        """The account's owners (``id``, ``name``, ``email``), for the portal's mapping (CONTRACT §9): the owner id
        is what records carry as ``hubspot_owner_id``. ``GET /crm/v3/owners`` (active ones), 500 a page, at
        most four pages."""
        base = self.base_url(creds, API)
        out: list[dict[str, str | None]] = []
        params: dict[str, str] = {"limit": "500", "archived": "false"}
        for _ in range(4):
            data = await self.request("GET", f"{base}/crm/v3/owners", creds=creds, budget=10, params=params)
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise CrmPermanentError("hubspot owners: unexpected answer", crm=self.kind)
            for o in data["results"]:
                if not isinstance(o, dict) or not o.get("id"):
                    continue
                name = " ".join(str(x) for x in (o.get("firstName"), o.get("lastName")) if x)
                out.append({"id": str(o["id"]), "name": name or str(o.get("email") or o["id"]),
                            "email": str(o["email"]) if o.get("email") else None})
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
            params = {**params, "after": str(after)}
        return out


def _assoc(record_id: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": str(record_id)}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                      "associationTypeId": type_id}]}
