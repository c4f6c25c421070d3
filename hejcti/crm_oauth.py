"""CRM sign-in for the browser extension (CONTRACT §10): the OAuth2 authorization code flow of Salesforce,
HubSpot, Pipedrive and Zendesk through this server, which holds each CRM's client secret and stores nothing.

- ``GET /crm/oauth/{kind}/start?redirect_uri=https://<id>.chromiumapp.org/…&state=S[&subdomain=acme]`` sends
  the browser to the CRM's authorize page. ``redirect_uri`` is checked as for "Sign in with sipgate"
  (``redirects.check_redirect_uri``: an extension in ``EXTENSION_IDS``). The flow's own ``state`` is signed, not
  stored: an HMAC (a key derived from ``SECRET_KEY``) over the kind, the redirect URI, the extension's ``S``,
  the Zendesk subdomain and the time, valid for 10 minutes; so any process can take the callback.
- ``GET /crm/oauth/{kind}/callback`` exchanges the code (server to server, with the client secret) and hands the
  answer to the extension as ``redirect_uri#access_token=…&refresh_token=…&expires_in=…&instance_url=…&state=S``
  (``instance_url``: Salesforce's, or Pipedrive's ``api_domain``). A refusal goes back as ``#error=…&state=S``.
- ``POST /crm/oauth/{kind}/refresh`` with ``{"refresh_token", "subdomain"?}`` and the user's Hej CTI token
  (``Authorization: Bearer hct_…``; else 401 ``{"error":"unauthorized"}``, so that a leaked CRM refresh token
  alone cannot use this server's client secret) passes the refresh through and
  answers ``{"access_token","refresh_token"?,"expires_in"?,"instance_url"?}``; a refresh token the CRM refuses
  is 400 ``{"error":"invalid_grant"}`` (sign in again), a CRM that fails or does not answer 502.

Tokens and codes pass through memory only: they are neither stored nor logged (events carry the kind and
why, never a token, a code or the state).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from hejcti import logs, tokens
from hejcti.errors import DatabaseUnavailableError, HejctiError
from hejcti.redirects import check_redirect_uri, error_code, plain

log = logs.get("hejcti.crm_oauth")

STATE_TTL_S = 600
TIMEOUT_S = 10.0
_SUBDOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_EXT_STATE = re.compile(r"[A-Za-z0-9._~-]{8,128}")


@dataclass(frozen=True)
class Vendor:
    """How one CRM's OAuth endpoints are called (reference crm-apis.md §1.2, §2.2, §3.2, §4.2)."""

    kind: str
    scope: str | None
    json_body: bool = False  # Zendesk takes JSON at /oauth/tokens; the others a form
    basic_auth: bool = False  # Pipedrive wants the client in an Authorization: Basic header
    subdomain: bool = False  # Zendesk's URLs are the tenant's own


VENDORS = {
    "salesforce": Vendor("salesforce", "api refresh_token"),
    "hubspot": Vendor("hubspot", "oauth crm.objects.contacts.read crm.objects.companies.read "
                                 "crm.objects.contacts.write"),
    "pipedrive": Vendor("pipedrive", None, basic_auth=True),
    "zendesk": Vendor("zendesk", "read write", json_body=True, subdomain=True),
}


class RefusedError(HejctiError):
    """A request this flow cannot take: the HTTP status, and a short reason for the page and the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Client:
    """One CRM's OAuth client as configured: id, secret, and its endpoints (``{subdomain}`` filled in)."""

    vendor: Vendor
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str

    def urls(self, subdomain: str | None) -> tuple[str, str]:
        if not self.vendor.subdomain:
            return self.authorize_url, self.token_url
        if subdomain is None or not _SUBDOMAIN.fullmatch(subdomain):
            raise RefusedError(400, "subdomain must be the Zendesk subdomain (acme for acme.zendesk.com)")
        return self.authorize_url.replace("{subdomain}", subdomain), self.token_url.replace("{subdomain}", subdomain)


def clients(settings: Any) -> dict[str, Client]:
    """The CRMs whose ``<CRM>_CLIENT_ID`` and ``_CLIENT_SECRET`` are set."""
    out = {}
    for kind, vendor in VENDORS.items():
        cid, secret = getattr(settings, f"{kind}_client_id"), getattr(settings, f"{kind}_client_secret")
        if cid and secret is not None:
            out[kind] = Client(vendor, cid, secret.get_secret_value(), getattr(settings, f"{kind}_authorize_url"),
                               getattr(settings, f"{kind}_token_url"))
    return out


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class States:
    """The flow's ``state``: signed, not stored. ``key`` is derived from SECRET_KEY for this use only."""

    def __init__(self, secret: bytes, ttl_s: int = STATE_TTL_S) -> None:
        self._key = hmac.new(secret, b"hejcti crm oauth state", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def sign(self, fields: dict[str, Any], now: float | None = None) -> str:
        body = tokens.b64url(json.dumps({**fields, "t": int(now if now is not None else time.time())},
                               separators=(",", ":")).encode())
        return body + "." + tokens.b64url(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def open(self, state: str, now: float | None = None) -> dict[str, Any]:
        body, _, mac = state.partition(".")
        good = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), good):
                raise RefusedError(400, "bad_state")
            fields = json.loads(_unb64(body))
        except (ValueError, TypeError) as e:
            raise RefusedError(400, "bad_state") from e
        age = (now if now is not None else time.time()) - fields.get("t", 0)
        if not 0 <= age <= self.ttl_s:
            raise RefusedError(400, "expired_state")
        return dict(fields)


def _fragment(redirect_uri: str, fields: dict[str, Any]) -> web.Response:
    values = {k: str(v) for k, v in fields.items() if v is not None and v != ""}
    return web.Response(status=302, headers={"Location": f"{redirect_uri}#{urlencode(values)}",
                                             "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


class CrmOAuth:
    """The three routes. ``http`` and ``store`` are read when a request runs (the app's client session and
    store; the store checks the refresh's Hej CTI token)."""

    def __init__(self, settings: Any, http: Any, store: Any) -> None:
        self.settings = settings
        self._http = http
        self._store = store
        self.clients = clients(settings)
        self._states: States | None = None

    @property
    def states(self) -> States:
        if self._states is None:  # the key is read when first needed, as the portal's session does
            self._states = States(self.settings.resolved_secret_key())
        return self._states

    def register(self, app: web.Application) -> None:
        app.router.add_get("/crm/oauth/{kind}/start", self.start, allow_head=False)
        app.router.add_get("/crm/oauth/{kind}/callback", self.callback, allow_head=False)
        app.router.add_post("/crm/oauth/{kind}/refresh", self.refresh)

    def callback_url(self, kind: str) -> str:
        return f"{self.settings.base_url}/crm/oauth/{kind}/callback"

    def _client(self, request: web.Request) -> Client:
        kind = request.match_info["kind"]
        if kind not in VENDORS:
            raise RefusedError(404, f"no OAuth sign-in for {kind[:40]!r}: one of {', '.join(VENDORS)}")
        client = self.clients.get(kind)
        if client is None:
            raise RefusedError(404, f"sign-in to {kind} is not set up on this server "
                                    f"(HEJCTI_{kind.upper()}_CLIENT_ID/_CLIENT_SECRET are unset)")
        return client

    # -- GET /crm/oauth/{kind}/start -----------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        try:
            client = self._client(request)
            q = request.query
            redirect_uri, ext_state, subdomain = q.get("redirect_uri", ""), q.get("state", ""), q.get("subdomain")
            why = check_redirect_uri(redirect_uri, self.settings.extension_id_set)
            if why is not None:
                raise RefusedError(400, why)
            if not _EXT_STATE.fullmatch(ext_state):
                raise RefusedError(400, "state must be 8 to 128 URL-safe characters")
            authorize, _ = client.urls(subdomain)
        except RefusedError as e:
            log.info("crm_oauth.start.refused", kind=request.match_info["kind"][:40], status=e.status)
            return plain(e.status, e.reason)
        state = self.states.sign({"k": client.vendor.kind, "r": redirect_uri, "s": ext_state, "z": subdomain})
        params = {"response_type": "code", "client_id": client.client_id,
                  "redirect_uri": self.callback_url(client.vendor.kind), "state": state}
        if client.vendor.scope:
            params["scope"] = client.vendor.scope
        log.info("crm_oauth.started", kind=client.vendor.kind)
        return web.Response(status=302, headers={"Location": f"{authorize}?{urlencode(params)}",
                                                 "Cache-Control": "no-store"})

    # -- GET /crm/oauth/{kind}/callback --------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"][:40]
        try:
            client = self._client(request)
            fields = self.states.open(request.query.get("state", ""))
            if fields.get("k") != kind or check_redirect_uri(fields.get("r", ""),
                                                             self.settings.extension_id_set) is not None:
                raise RefusedError(400, "bad_state")
        except RefusedError as e:
            log.info("crm_oauth.callback.refused", kind=kind, reason=e.reason[:40], status=e.status)
            return plain(e.status, "This sign-in is not valid any more. Please start it again from the extension.")
        back = {"state": fields["s"]}
        if "error" in request.query:  # the user said no, or the CRM refused to ask
            error = error_code(request.query["error"]) or "refused"
            log.info("crm_oauth.callback.refused", kind=kind, reason=error)
            return _fragment(fields["r"], {"error": error, **back})
        code = request.query.get("code", "")
        if not code:
            log.info("crm_oauth.callback.refused", kind=kind, reason="no_code")
            return _fragment(fields["r"], {"error": "no_code", **back})
        try:
            answer = await self._token(client, fields.get("z"), {
                "grant_type": "authorization_code", "code": code, "redirect_uri": self.callback_url(kind)})
        except RefusedError as e:
            log.info("crm_oauth.callback.refused", kind=kind, reason=e.reason, status=e.status)
            return _fragment(fields["r"], {"error": e.reason, **back})
        log.info("crm_oauth.signed_in", kind=kind)
        return _fragment(fields["r"], {**answer, **back})

    # -- POST /crm/oauth/{kind}/refresh --------------------------------------------------------------------

    async def refresh(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"][:40]
        try:
            client = self._client(request)
            await self._user(request)
            body = await _body(request)
            refresh_token = body.get("refresh_token")
            if not isinstance(refresh_token, str) or not 0 < len(refresh_token) <= 8192:
                raise RefusedError(400, "refresh_token is required")
            subdomain = body.get("subdomain")
            answer = await self._token(client, subdomain if isinstance(subdomain, str) else None,
                                       {"grant_type": "refresh_token", "refresh_token": refresh_token})
        except RefusedError as e:
            log.info("crm_oauth.refresh.refused", kind=kind, reason=e.reason[:60], status=e.status)
            headers = {"Cache-Control": "no-store"}
            if e.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="hejcti"'
            return web.json_response({"error": e.reason}, status=e.status, headers=headers)
        log.info("crm_oauth.refreshed", kind=kind)
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    async def _user(self, request: web.Request) -> None:
        """The request's ``Authorization: Bearer`` is a user's Hej CTI token (its hash in users.token_hash,
        compared in constant time); else RefusedError 401."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not 0 < len(token) <= 512:
            raise RefusedError(401, "unauthorized")
        try:
            row = await tokens.user_for_token(self._store(), token)
        except DatabaseUnavailableError as e:
            raise RefusedError(503, "unavailable") from e
        if row is None:
            raise RefusedError(401, "unauthorized")

    # -- the token endpoint ----------------------------------------------------------------------------------

    async def _token(self, client: Client, subdomain: str | None, grant: dict[str, str]) -> dict[str, Any]:
        """One request to the CRM's token endpoint; the fields the extension keeps, or RefusedError: 400
        ``invalid_grant`` (the CRM refused the code or refresh token), 502 ``crm_unavailable``."""
        _, url = client.urls(subdomain)
        fields = dict(grant)
        headers = {"Accept": "application/json"}
        if client.vendor.basic_auth:
            pair = f"{client.client_id}:{client.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            fields.update(client_id=client.client_id, client_secret=client.client_secret)
        if client.vendor.json_body and client.vendor.scope:
            fields["scope"] = client.vendor.scope
        kwargs: dict[str, Any] = {"json": fields} if client.vendor.json_body else {"data": fields}
        try:
            async with self._http().post(url, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S), headers=headers,
                                         allow_redirects=False, **kwargs) as r:  # a 3xx: crm_unavailable
                status = r.status
                try:
                    answer = await r.json(content_type=None)
                except ValueError:
                    answer = None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RefusedError(502, "crm_unavailable") from e
        if status in (400, 401, 403):
            raise RefusedError(400, "invalid_grant")
        if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise RefusedError(502, "crm_unavailable")
        out = {"access_token": answer["access_token"], "token_type": answer.get("token_type")}
        for key in ("refresh_token", "expires_in"):
            if isinstance(answer.get(key), str | int) and not isinstance(answer.get(key), bool):
                out[key] = answer[key]
        instance = answer.get("instance_url") or answer.get("api_domain")
        if isinstance(instance, str) and instance.startswith(("https://", "http://")):
            out["instance_url"] = instance
        return {k: v for k, v in out.items() if v is not None}


async def _body(request: web.Request) -> dict[str, Any]:
    """The refresh request's fields, JSON or a form."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError as e:
            raise RefusedError(400, "the body is not JSON") from e
        if not isinstance(data, dict):
            raise RefusedError(400, "the body must be a JSON object")
        return data
    return dict(await request.post())
