"""The interface every CRM adapter implements, and what they share: errors, retries, verification, ranking.

An adapter is built once per account and process (``build_adapter``) with the account's CRM instance and
region and the process's shared ``aiohttp.ClientSession``. It never stores credentials: each call gets the
``Credentials`` of the extension session that provided them (CONTRACT §5).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from hejcti import phones
from hejcti.errors import HejctiError

Kind = Literal["contact", "lead", "account", "person", "organization", "user"]
PERSON_KINDS = frozenset({"contact", "lead", "person", "user"})


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Credentials:
    """An access token from an extension session. Held in memory only; ``repr`` never shows it."""

    access_token: str = field(repr=False)
    instance_url: str | None = None


@dataclass(frozen=True)
class Contact:
    """One verified CRM record for a caller. ``public()`` is what the extension sees (CONTRACT §5)."""

    crm: str
    kind: Kind
    id: str
    name: str
    company: str | None = None
    url: str | None = None
    match: phones.Match = "exact"
    owner_id: str | None = None
    modified_at: datetime | None = None
    # what call records need to link the record to its company (Salesforce WhatId, Pipedrive org_id, …)
    parent_id: str | None = None
    #: the matched number is one the person shares with their organization (a switchboard), not their own
    #: line (Zendesk's ``shared_phone_number``): it ranks with companies, after people reached directly
    shared_phone: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "company": self.company,
            "url": self.url,
        }


@dataclass(frozen=True)
class CallRecord:
    """What the CRM gets after a call (one per call: legs sharing an ``xcid`` are one record)."""

    key: str  # idempotency key: xcid, else the first leg's callId
    call_id: str
    direction: Literal["in", "out"]
    number: str | None  # the other party, E.164, None when anonymous
    own_number: str | None  # our side, E.164
    answered: bool
    voicemail: bool
    cause: str
    started_at: datetime
    ended_at: datetime
    duration_s: int | None
    contact: Contact | None  # best match, if any
    owner: str | None  # the mapped CRM user id of the answering (or rung) sipgate user
    sipgate_user: str | None
    note: str | None = None

    def scoped_key(self, sep: str = "-") -> str:
        """The call's key for this end of it: ``key`` and ``direction``. Two Hej CTI accounts sharing one CRM
        both see a call between them under the same sipgate xcid, one inbound, one outbound: each end's record
        is its own, and a search for one never finds the other's."""
        return f"{self.key}{sep}{self.direction}"

    @property
    def external_key(self) -> str:
        """The key every CRM write carries where the CRM has a field for it (Salesforce ``CallObject``, HubSpot
        ``hs_call_external_id``, Zendesk ``external_id`` and ``Idempotency-Key``; Sugar/Suite derive their
        record id from ``scoped_key``): ``hejcti-<key>-<direction>``, prefixed so that ids other apps write
        never look like ours, at most 255 characters (the direction is never cut off)."""
        return f"hejcti-{self.key[:240]}-{self.direction}"

    @property
    def outcome(self) -> str:
        if self.voicemail:
            return "voicemail"
        return "answered" if self.answered else "missed"

    def subject(self, region: str) -> str:
        who = phones.display(self.number, region) or "anonymous caller"
        if self.direction == "in":
            return f"{'Inbound' if self.answered else 'Missed'} call from {who}"
        return f"Outbound call to {who}"

    def description(self, region: str) -> str:
        lines = [f"{self.outcome.capitalize()} call via sipgate ({self.cause})."]
        if self.duration_s is not None:
            lines.append(f"Talk time: {self.duration_s} s.")
        if self.note:
            lines.append("")
            lines.append(self.note)
        return "\n".join(lines)


@dataclass(frozen=True)
class LoggedRecord:
    record_id: str
    url: str | None = None
    #: the record's description as the CRM holds it, where ``find_logged`` read it back
    body: str | None = None


# ------------------------------------------------------------------------------------------- errors


class CrmError(HejctiError):
    """A CRM call failed. ``kind`` labels the metric ``hejcti_crm_errors_total{crm,kind}``."""

    kind: ClassVar[str] = "error"

    def __init__(self, message: str, *, crm: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.crm = crm
        self.status = status


class CrmCredentialsMissingError(CrmError):
    """No session of a user the call rings for has sent ``crm.credentials``."""

    kind = "missing_credentials"


class CrmAuthError(CrmError):
    """The access token is expired or invalid (401 in the CRM's own shape): ask the session for a new one."""

    kind = "auth"


class CrmTransientError(CrmError):
    """Worth retrying: timeouts, connection errors, 429 (with ``retry_after`` when the CRM says), 5xx.

    ``maybe_applied`` tells whether the CRM may have acted on the request all the same (a read timeout, a
    connection dropped after sending, a 500): a create is not repeated then. False when the request provably
    did not reach the CRM or was refused before acting (connection refused, connect timeout, 429, 503 with
    ``Retry-After``)."""

    kind = "transient"

    def __init__(self, message: str, *, crm: str = "", status: int | None = None,
                 retry_after: float | None = None, maybe_applied: bool = True) -> None:
        super().__init__(message, crm=crm, status=status)
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class CrmRateLimitError(CrmTransientError):
    """A rate limit: the CRM refused the request before acting on it."""

    kind = "rate_limit"

    def __init__(self, message: str, *, crm: str = "", status: int | None = None,
                 retry_after: float | None = None, maybe_applied: bool = False) -> None:
        super().__init__(message, crm=crm, status=status, retry_after=retry_after, maybe_applied=maybe_applied)


class CrmTimeoutError(CrmTransientError):
    kind = "timeout"


class CrmPermanentError(CrmError):
    """Not worth retrying: 400, 403 (other than a rate limit), 404, malformed JSON, a shape we do not know."""

    kind = "permanent"


# ---------------------------------------------------------------------------------------- ranking


def rank(contacts: list[Contact], crm_user: str | None = None) -> list[Contact]:
    """Best first: exact before suffix, person (on a number of their own) before company or a person on a
    shared number, the mapped CRM user's own records, newest."""

    def key(c: Contact) -> tuple[int, int, int, float]:
        return (
            0 if c.match == "exact" else 1,
            0 if c.kind in PERSON_KINDS and not c.shared_phone else 1,
            0 if crm_user and c.owner_id == crm_user else 1,
            -(c.modified_at.timestamp() if c.modified_at else 0.0),
        )

    unique: dict[tuple[str, str], Contact] = {}
    for c in contacts:
        unique.setdefault((c.kind, c.id), c)
    return sorted(unique.values(), key=key)


def duration_parts(seconds: int | None) -> tuple[int, int]:
    """Talk time as (hours, minutes) for the Calls fields: whole minutes first (started minutes count, so a
    10 s call is 1 min), then split, so minutes stay 0–59 (3590 s → 1 h 0 min, not 0 h 60 min)."""
    total = -(-(seconds or 0) // 60)
    return total // 60, total % 60


def parse_time(value: Any, naive: tzinfo | None = None) -> datetime | None:
    """ISO 8601 as the CRMs send it (``Z``, ``+0000``, ``.000+0000``, epoch milliseconds). A time without an
    offset is in ``naive`` (default: this machine's local time)."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value).astimezone()
    text = str(value).strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":" and text[-4:].isdigit():
        text = text[:-2] + ":" + text[-2:]
    if " " in text and "T" not in text:
        text = text.replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo:
        return parsed
    return parsed.replace(tzinfo=naive) if naive is not None else parsed.astimezone()


#: rate-limit window headers: when the current window ends, sent on every answer by Zendesk and Pipedrive
RATE_LIMIT_RESET = ("X-RateLimit-Reset", "ratelimit-reset")


def retry_after_seconds(headers: Any, *, rate_limited: bool = False) -> float | None:
    """How long the CRM asks us to wait: ``Retry-After`` in seconds (or an HTTP date); on a rate limit (a 429,
    ``rate_limited``) also the window's ``X-RateLimit-Reset`` / ``ratelimit-reset`` seconds. Else None.

    The window headers come with every answer (``ratelimit-reset: 20`` on a 200 or a 500 alike): they say when
    the quota refills, not that this request should wait, so they count only when the quota is what refused."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    for name in RATE_LIMIT_RESET if rate_limited else ():
        if value is None:
            value = headers.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds > 1e9:  # an epoch timestamp (some send the reset as a time, not a duration)
            seconds -= time.time()
        return max(0.0, seconds)
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------- adapter


@dataclass
class Response:
    status: int
    headers: Any
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class CrmAdapter:
    """Base of all adapters. Subclasses set ``kind`` and implement ``lookup``, ``log_call``, ``append_note``;
    they override ``classify`` where their CRM signals expiry or rate limits in its own shape."""

    kind: ClassVar[str] = ""
    needs_credentials: ClassVar[bool] = True
    #: how long one HTTP attempt may take; retries stop once ``budget`` seconds have passed
    request_timeout: float = 10.0
    max_attempts: int = 4

    def __init__(self, *, instance: str | None, region: str, http: aiohttp.ClientSession | None,
                 budget: float = 1.5) -> None:
        self.instance = (instance or "").rstrip("/") or None
        self.region = region
        self.http = http
        self.budget = budget

    # -- the interface --------------------------------------------------------------------------

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        """Every record whose phone verifies against ``e164``, ranked best first (``rank``)."""
        raise NotImplementedError

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        """Create the call record in the CRM and return its id and deep link."""
        raise NotImplementedError

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        """Append ``text`` to the description/body of an existing call record."""
        raise NotImplementedError

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        """The call record an earlier attempt of this job wrote although its answer never came back (a
        timeout, a dropped connection, a crash before the job was marked done), found by ``record.key``, with
        its description in ``body``. None when there is none, and where the CRM offers no field to find it
        by: there a retry after a lost answer can write the record a second time."""
        return None

    async def close(self) -> None:
        """Release what the adapter holds (files, caches). The HTTP session belongs to the app."""

    # -- shared helpers for subclasses ------------------------------------------------------------

    #: host suffixes a session's ``instance_url`` may name (the CRM's own cloud); empty: only --crm-instance
    session_hosts: ClassVar[tuple[str, ...]] = ()

    def base_url(self, creds: Credentials | None, default: str | None = None) -> str:
        """The API base: the account's ``--crm-instance`` if set (an admin's choice wins over what a session
        says), else the session's ``instance_url`` if it is an https URL on the CRM's own domains (so a session
        cannot point the server at another host), else the default."""
        if self.instance:
            return self.instance.rstrip("/")
        if creds is not None and creds.instance_url:
            parts = urlsplit(creds.instance_url)
            host = (parts.hostname or "").lower()
            allowed = any(host.endswith(h) if h.startswith(".") else host == h for h in self.session_hosts)
            if parts.scheme == "https" and allowed:
                return f"https://{parts.netloc}{parts.path}".rstrip("/")
            raise CrmPermanentError(f"instance_url of {self.kind} must be https on its own domains; set "
                                    "--crm-instance for anything else", crm=self.kind)
        if not default:
            raise CrmPermanentError("no CRM instance URL configured (--crm-instance)", crm=self.kind)
        return default

    def auth_headers(self, creds: Credentials | None) -> dict[str, str]:
        if creds is None:
            raise CrmCredentialsMissingError("no CRM credentials from any session", crm=self.kind)
        return {"Authorization": f"Bearer {creds.access_token}"}

    def classify(self, resp: Response) -> CrmError:
        """Map a non-2xx answer to an error. Override for CRM-specific shapes (call super() for the rest)."""
        status = resp.status
        if status == 401:
            return CrmAuthError(f"HTTP 401 from {self.kind}", crm=self.kind, status=status)
        if status == 429:
            return CrmRateLimitError(f"HTTP 429 from {self.kind}", crm=self.kind, status=status,
                                     retry_after=retry_after_seconds(resp.headers, rate_limited=True))
        if status >= 500:
            return CrmTransientError(f"HTTP {status} from {self.kind}", crm=self.kind, status=status,
                                     retry_after=retry_after_seconds(resp.headers))
        return CrmPermanentError(f"HTTP {status} from {self.kind}", crm=self.kind, status=status)

    async def request(self, method: str, url: str, *, creds: Credentials | None, budget: float | None = None,
                      headers: dict[str, str] | None = None, idempotent: bool | None = None, **kwargs: Any) -> Any:
        """One CRM call with retries on transient errors (tenacity), honouring ``Retry-After`` while it
        fits in ``budget`` seconds. Returns the decoded JSON (None for an empty body). Raises ``CrmError``.

        ``idempotent`` (default: every method but POST, and a POST to a ``…/search`` or ``…/filter`` query
        endpoint) decides what is retried: an idempotent request on any transient error, anything else (a
        create) only when the error shows the CRM did not act on it (``maybe_applied`` false), so that a
        create whose answer was lost is not sent twice."""
        all_headers = {"Accept": "application/json", **self.auth_headers(creds), **(headers or {})}
        budget = self.budget if budget is None else budget
        started = time.monotonic()
        if idempotent is None:
            idempotent = is_idempotent(method, url)

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, CrmTransientError) and (idempotent or not exc.maybe_applied)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            delay = hinted if hinted is not None else min(2.0, 0.1 * 2 ** (state.attempt_number - 1))
            delay += random.uniform(0, 0.05)
            if time.monotonic() - started + delay > budget:
                raise exc  # type: ignore[misc]  # no room left: fail now with the real error
            return delay

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait,
            reraise=True,
        ):
            with attempt:
                return await self._once(method, url, all_headers, kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]) -> Any:
        if self.http is None:
            raise CrmPermanentError("adapter has no HTTP session", crm=self.kind)
        try:
            async with self.http.request(  # never a redirect: it could point at any host, internal ones too
                method, url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                allow_redirects=False, **kwargs
            ) as r:
                resp = Response(r.status, r.headers, await r.text(errors="replace"))
        except aiohttp.ConnectionTimeoutError as e:  # before TimeoutError: it is one, but nothing was sent
            raise CrmTimeoutError(f"cannot connect to {self.kind} in {self.request_timeout:g} s", crm=self.kind,
                                  maybe_applied=False) from e
        except TimeoutError as e:
            raise CrmTimeoutError(f"{self.kind} did not answer in {self.request_timeout:g} s", crm=self.kind) from e
        except aiohttp.ClientConnectorError as e:  # refused, unreachable, DNS, TLS handshake: nothing was sent
            raise CrmTransientError(f"cannot reach {self.kind}: {type(e).__name__}", crm=self.kind,
                                    maybe_applied=False) from e
        except aiohttp.ClientError as e:  # dropped after sending, reset, broken payload: it may have acted
            raise CrmTransientError(f"cannot reach {self.kind}: {type(e).__name__}", crm=self.kind) from e
        if 300 <= resp.status < 400:
            raise CrmPermanentError(f"the CRM answered with a redirect (HTTP {resp.status} from {self.kind}), which "
                                    "is never followed: set the instance to the URL it redirects to",
                                    crm=self.kind, status=resp.status)
        if not 200 <= resp.status < 300:
            err = self.classify(resp)
            if isinstance(err, CrmTransientError) and not isinstance(err, CrmRateLimitError):
                # a 503 with Retry-After is the CRM refusing before acting; any other 5xx may have acted
                err.maybe_applied = not (resp.status == 503 and resp.headers is not None
                                         and resp.headers.get("Retry-After") is not None)
            raise err
        try:
            return resp.json()
        except ValueError as e:
            raise CrmPermanentError(f"malformed JSON from {self.kind}", crm=self.kind, status=resp.status) from e


#: POST endpoints that only read (HubSpot's ``/search``, SugarCRM's ``/filter``): safe to repeat
_READ_ONLY_POST_SUFFIXES = ("/search", "/filter")


def is_idempotent(method: str, url: str) -> bool:
    """May this request be sent again after an ambiguous failure? Every method but POST; a POST only to a
    query endpoint."""
    if method.upper() != "POST":
        return True
    return urlsplit(url).path.rstrip("/").endswith(_READ_ONLY_POST_SUFFIXES)


def body_json(resp: Response) -> Any:
    """The error body as JSON, or None when it is not JSON (HTML error pages, plain-text 429s)."""
    try:
        return resp.json()
    except ValueError:
        return None

