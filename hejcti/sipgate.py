"""sipgate's REST API v2 (reference sipgate.md §5): a client on the process's one aiohttp session.

Auth: a personal access token (HTTP Basic, token id + token) or an OAuth access token (Bearer), behind one
``Credential``. A 401 with an OAuth credential refreshes the access token once through the ``refresh``
callback (see ``oauth_refresher``: sipgate rotates refresh tokens, the new one is handed on to be stored),
then ``SipgateAuthError`` (and ``on_rejected``). A refresh that cannot be tried here
(``SipgateNotConfiguredError``) is not sipgate rejecting the credential: ``on_rejected`` is not called.
429 (``Retry-After`` honoured) is retried on every request: sipgate refused it before acting. 5xx and
timeouts are retried on reads only: a click-to-call that timed out may have rung.

Results are the pydantic models of sipgate_shapes.py; list items that do not parse are skipped. sipgate
Neo answers the phoneline endpoints (numbers, devices) with 403: that reads as "none". Nothing here runs on
the webhook path, and nothing of it is stored but the (encrypted) credential.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from hejcti import logs
from hejcti.crm.base import retry_after_seconds
from hejcti.errors import HejctiError
from hejcti.sipgate_shapes import Device, Number, Shape, User, UserInfo, WebhookSettings

log = logs.get("hejcti.sipgate")

# ---------------------------------------------------------------------------------------- errors


class SipgateError(HejctiError):
    """Anything that went wrong talking to sipgate. ``code`` is the CONTRACT §5.1 error code."""

    code = "sipgate_unavailable"

    def reply(self) -> dict[str, Any]:
        """The body of the WebSocket ``error`` message (CONTRACT §5.1)."""
        return {"type": "error", "code": self.code}


class SipgateNotConnectedError(SipgateError):
    """The account has no sipgate credential (or it was rejected): an admin must connect sipgate again."""

    code = "sipgate_not_connected"


class SipgateAuthError(SipgateNotConnectedError):
    """sipgate rejected the credential (401, and a refresh did not help): the account shows as disconnected."""


class SipgateNotConfiguredError(SipgateNotConnectedError):
    """This process cannot use the account's credential (an OAuth one, and no OAuth client is set up here to
    refresh it). Not sipgate's verdict: the account stays connected for the processes that can."""


class SipgateRefusedError(SipgateError):
    """sipgate answered with a 4xx of its own: bad number, missing scope, call not found, no funds…"""

    code = "sipgate_refused"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"sipgate refused ({status}): {message}")
        self.status = status
        self.message = message

    def reply(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "status": self.status, "message": self.message}


class SipgateUnavailableError(SipgateError):
    """sipgate did not answer in time, could not be reached, answered 5xx, or kept rate-limiting."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied  # False: sipgate provably did not act (429, nothing sent)


# ---------------------------------------------------------------------------------------- credential


@dataclass(frozen=True)
class Credential:
    """A personal access token (``token_id`` + ``token``) or OAuth tokens. Never logged (repr hides it)."""

    token_id: str | None = None
    token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # epoch seconds of the access token's end
    owner: str | None = None  # the sipgate user (``sub``) whose OAuth tokens these are

    @classmethod
    def pat(cls, token_id: str, token: str) -> Credential:
        return cls(token_id=token_id, token=token)

    @classmethod
    def oauth(cls, tokens: dict[str, Any], owner: str | None = None) -> Credential:
        """From the token endpoint's answer (``access_token``, ``refresh_token``, ``expires_in``)."""
        return cls(access_token=tokens["access_token"], refresh_token=tokens.get("refresh_token"),
                   expires_at=time.time() + float(tokens.get("expires_in") or 300), owner=owner)

    @property
    def kind(self) -> str:
        return "pat" if self.token_id else "oauth"

    def authorization(self) -> str:
        if self.token_id:
            import base64

            return "Basic " + base64.b64encode(f"{self.token_id}:{self.token}".encode()).decode()
        return f"Bearer {self.access_token}"

    def expired(self, margin: float = 30.0) -> bool:
        return self.kind == "oauth" and (not self.access_token or
                                         (self.expires_at is not None and time.time() + margin >= self.expires_at))

    def rotated(self, tokens: dict[str, Any]) -> Credential:
        """This credential after a refresh: the new access token, and the new refresh token (sipgate rotates
        them; the old one is void)."""
        return replace(self, access_token=tokens["access_token"],
                       refresh_token=tokens.get("refresh_token") or self.refresh_token,
                       expires_at=time.time() + float(tokens.get("expires_in") or 300))

    def dumps(self) -> bytes:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}).encode()

    @classmethod
    def loads(cls, data: bytes) -> Credential:
        raw = json.loads(data)
        return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__})


Refresh = Callable[[Credential], Awaitable[Credential]]


@dataclass(frozen=True)
class OAuthClient:
    """The OAuth client registered with sipgate (``SIPGATE_CLIENT_ID``/``_SECRET``, ``SIPGATE_LOGIN_URL``)."""

    login_url: str
    client_id: str
    client_secret: str = field(repr=False)

    async def token(self, http: aiohttp.ClientSession, timeout: float = 5.0, **form: str) -> dict[str, Any]:
        """``POST {login_url}/token``: an ``authorization_code`` or ``refresh_token`` grant. A refused grant
        (400/401: the refresh token is spent or revoked) is ``SipgateAuthError``."""
        data = {"client_id": self.client_id, "client_secret": self.client_secret, **form}
        try:
            async with http.post(f"{self.login_url.rstrip('/')}/token", data=data,
                                 timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                text = await r.text(errors="replace")
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as e:
            raise SipgateUnavailableError(f"sipgate's login did not answer: {type(e).__name__}") from e
        if status in (400, 401):
            log.info("sipgate.token.refused", status=status, grant=form.get("grant_type"))
            raise SipgateAuthError("sipgate refused the sign-in token; an admin must sign in again")
        if status != 200:
            raise SipgateUnavailableError(f"sipgate's login answered {status}", status=status)
        try:
            tokens = json.loads(text)
            tokens["access_token"]  # noqa: B018 - must be there
        except (ValueError, KeyError, TypeError) as e:
            raise SipgateUnavailableError("sipgate's login answered without an access token") from e
        return tokens

    def authorize_url(self, *, redirect_uri: str, state: str, code_challenge: str, scope: str) -> str:
        """Where a browser signs in (authorization code with PKCE S256)."""
        from urllib.parse import urlencode

        return f"{self.login_url.rstrip('/')}/auth?" + urlencode({
            "client_id": self.client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": scope,
            "state": state, "code_challenge": code_challenge, "code_challenge_method": "S256"})

    async def exchange(self, http: aiohttp.ClientSession, *, code: str, redirect_uri: str,
                       code_verifier: str) -> dict[str, Any]:
        """The authorization code for tokens (server-side; a refused code is ``SipgateAuthError``)."""
        return await self.token(http, grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                                code_verifier=code_verifier)

    async def refresh(self, http: aiohttp.ClientSession, credential: Credential) -> Credential:
        if not credential.refresh_token:
            raise SipgateAuthError("no refresh token; an admin must sign in again")
        tokens = await self.token(http, grant_type="refresh_token", refresh_token=credential.refresh_token)
        return credential.rotated(tokens)


def oauth_refresher(http: aiohttp.ClientSession, client: OAuthClient,
                    on_rotated: Callable[[Credential], Awaitable[None]]) -> Refresh:
    """A ``refresh`` callback: the refresh grant, then ``on_rotated(new)`` (which must store it: the old
    refresh token no longer works), then the new credential."""

    async def refresh(old: Credential) -> Credential:
        new = await client.refresh(http, old)
        await on_rotated(new)
        log.info("sipgate.token.refreshed")
        return new

    return refresh


S = TypeVar("S", bound=Shape)


def _items(shape: type[S], data: Any, path: str) -> list[S]:
    out = []
    items = data.get("items") if isinstance(data, dict) else data
    for item in items if isinstance(items, list) else []:
        try:
            out.append(shape.model_validate(item))
        except ValidationError:
            log.info("sipgate.item.skipped", path=path, shape=shape.__name__)
    return out


def _one(shape: type[S], data: Any, path: str) -> S:
    try:
        return shape.model_validate(data)
    except ValidationError as e:
        raise SipgateUnavailableError(f"sipgate answered {path} in a shape not understood") from e


# ---------------------------------------------------------------------------------------- client


@dataclass
class _Answer:
    status: int
    headers: Any
    text: str


class SipgateClient:
    """One account's view of sipgate's API. Cheap to make: it holds no connection of its own."""

    max_attempts = 3

    def __init__(self, http: aiohttp.ClientSession, credential: Credential, *,
                 base_url: str = "https://api.sipgate.com/v2", timeout: float = 5.0, max_wait: float = 10.0,
                 refresh: Refresh | None = None, on_rejected: Callable[[], Awaitable[None]] | None = None,
                 account: str | None = None) -> None:
        self.http = http
        self.credential = credential
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_wait = max_wait  # the longest a request waits between attempts (Retry-After above it: fail)
        self._refresh = refresh
        self._on_rejected = on_rejected
        self.account = account

    # -- who, users, devices, numbers -----------------------------------------------------------

    async def userinfo(self) -> UserInfo:
        return _one(UserInfo, await self.request("GET", "/authorization/userinfo"), "userinfo")

    async def users(self) -> list[User]:
        return _items(User, await self.request("GET", "/users"), "users")

    async def user(self, user_id: str) -> User:
        return _one(User, await self.request("GET", f"/users/{_seg(user_id)}"), "user")

    async def devices(self, user_id: str) -> list[Device]:
        return _items(Device, await self.request("GET", f"/{_seg(user_id)}/devices", none_on_403=True), "devices")

    async def user_numbers(self, user_id: str) -> list[Number]:
        return _items(Number, await self.request("GET", f"/{_seg(user_id)}/numbers", none_on_403=True), "numbers")

    async def numbers(self) -> list[Number]:
        return _items(Number, await self.request("GET", "/numbers", none_on_403=True), "numbers")

    # -- webhook settings -------------------------------------------------------------------------

    async def webhook_settings(self) -> WebhookSettings:
        return _one(WebhookSettings, await self.request("GET", "/settings/sipgateio"), "settings")

    async def configure_webhooks(self, url: str) -> tuple[WebhookSettings, WebhookSettings]:
        """Point the incoming and outgoing URL at ``url``, keeping every other setting as it is."""
        before = await self.webhook_settings()
        after = WebhookSettings.model_validate({**before.raw(), "incomingUrl": url, "outgoingUrl": url})
        await self.request("PUT", "/settings/sipgateio", json=after.raw())
        return before, after

    # -- calls --------------------------------------------------------------------------------------

    async def dial(self, caller: str, callee: str, *, device_id: str | None = None,
                   caller_id: str | None = None) -> str:
        """Click-to-call: ``caller``'s device rings first, then ``callee``. The session id is the callId."""
        body: dict[str, Any] = {"caller": caller, "callee": callee}
        if device_id:
            body["deviceId"] = device_id
        if caller_id:
            body["callerId"] = caller_id
        data = await self.request("POST", "/sessions/calls", json=body)
        session = data.get("sessionId") if isinstance(data, dict) else None
        if not session:
            raise SipgateUnavailableError("sipgate placed the call without a session id")
        return str(session)

    async def transfer(self, call_id: str, number: str, *, attended: bool = False,
                       caller_id: str | None = None) -> None:
        """Transfer an established call (sipgate's ``GET /calls`` omits ringing ones; a ringing call answers
        404 here)."""
        body: dict[str, Any] = {"attended": attended, "phoneNumber": number}
        if caller_id:
            body["callerId"] = caller_id
        await self.request("POST", f"/calls/{_seg(call_id)}/transfer", json=body)

    async def hangup(self, call_id: str) -> None:
        await self.request("DELETE", f"/calls/{_seg(call_id)}")

    # -- the one request path -----------------------------------------------------------------------

    async def request(self, method: str, path: str, *, json: Any = None, none_on_403: bool = False) -> Any:
        """One API call: auth (refreshed once on 401), retries, errors mapped. Returns decoded JSON or None."""
        read = method == "GET"

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, SipgateUnavailableError) and (read or not exc.maybe_applied)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            delay = hinted if hinted is not None else min(2.0, 0.2 * 2 ** (state.attempt_number - 1))
            if delay > self.max_wait:
                raise exc  # type: ignore[misc]  # longer than we may wait: fail with the real error
            return delay + random.uniform(0, 0.05)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info("sipgate.retry", path=path, attempt=state.attempt_number, status=getattr(exc, "status", None),
                     wait_s=round(state.upcoming_sleep, 2), account=self.account)

        async for attempt in AsyncRetrying(retry=retry_if_exception(retryable), before_sleep=before_sleep,
                                           stop=stop_after_attempt(self.max_attempts), wait=wait, reraise=True):
            with attempt:
                return await self._authorized(method, path, json, none_on_403)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _authorized(self, method: str, path: str, body: Any, none_on_403: bool) -> Any:
        refreshed = False
        if self.credential.expired() and self._refresh is not None:
            await self._renew()
            refreshed = True
        answer = await self._send(method, path, body)
        if answer.status == 401 and self.credential.kind == "oauth" and not refreshed and self._refresh:
            await self._renew()
            answer = await self._send(method, path, body)
        if answer.status == 401:
            log.info("sipgate.auth.rejected", account=self.account, kind=self.credential.kind, path=path)
            if self._on_rejected is not None:
                await self._on_rejected()
            raise SipgateAuthError("sipgate rejected the account's credential; an admin must connect sipgate again")
        if answer.status == 403 and none_on_403:
            log.info("sipgate.forbidden_as_none", account=self.account, path=path)
            return None
        if answer.status == 429:
            raise SipgateUnavailableError("sipgate is rate-limiting", status=429, maybe_applied=False,
                                          retry_after=retry_after_seconds(answer.headers))
        if answer.status >= 500:
            log.info("sipgate.request.failed", account=self.account, path=path, status=answer.status)
            raise SipgateUnavailableError(f"sipgate answered {answer.status}", status=answer.status)
        if answer.status >= 400:
            log.info("sipgate.request.refused", account=self.account, path=path, status=answer.status)
            raise SipgateRefusedError(answer.status, _message(answer.text) or f"HTTP {answer.status}")
        if not answer.text.strip():
            return None
        try:
            return json.loads(answer.text)
        except ValueError as e:
            raise SipgateUnavailableError(f"sipgate answered {path} with malformed JSON") from e

    async def _renew(self) -> None:
        assert self._refresh is not None
        try:
            self.credential = await self._refresh(self.credential)
        except SipgateAuthError:
            if self._on_rejected is not None:
                await self._on_rejected()
            raise

    async def _send(self, method: str, path: str, body: Any) -> _Answer:
        headers = {"Authorization": self.credential.authorization(), "Accept": "application/json"}
        try:
            async with self.http.request(method, self.base_url + path, json=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                return _Answer(r.status, r.headers, await r.text(errors="replace"))
        except aiohttp.ConnectionTimeoutError as e:  # a TimeoutError too, but nothing was sent
            raise SipgateUnavailableError(f"cannot connect to sipgate in {self.timeout:g} s",
                                          maybe_applied=False) from e
        except TimeoutError as e:
            log.info("sipgate.request.timeout", account=self.account, path=path, timeout_s=self.timeout)
            raise SipgateUnavailableError(f"sipgate did not answer in {self.timeout:g} s") from e
        except aiohttp.ClientConnectorError as e:
            raise SipgateUnavailableError(f"cannot reach sipgate: {type(e).__name__}", maybe_applied=False) from e
        except aiohttp.ClientError as e:
            raise SipgateUnavailableError(f"lost sipgate's answer: {type(e).__name__}") from e


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _message(text: str) -> str:
    """A one-line reason from an error body (sipgate's are unstructured: text, or JSON of several shapes)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            data = errors[0]
        for key in ("message", "detail", "title", "error_description", "error"):
            if isinstance(data.get(key), str) and data[key].strip():
                return " ".join(data[key].split())[:200]
    if text.lstrip().startswith("<"):
        return ""
    return " ".join(text.split())[:200]
