"""A fake CRM OAuth server: the authorize page (which approves at once, as for a user who allowed the app
before) and the token endpoint, in the shapes of Salesforce, HubSpot, Pipedrive and Zendesk (reference
crm-apis.md §0.2 and each vendor's §x.2). Access tokens it issues go into ``valid`` (give it a fake CRM's
``state.tokens`` so that CRM accepts them); ``expire_all()`` voids them, as a CRM does when their time is up.

Paths: ``/oauth/authorize`` and ``/oauth/token``, also under a Zendesk subdomain (``/{sub}/oauth/...``).
Client authentication as each vendor wants it: Pipedrive in an ``Authorization: Basic`` header, Zendesk in a
JSON body, the others in the form."""

from __future__ import annotations

import base64
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.base import json_response

CLIENT_ID, CLIENT_SECRET = "hejcti-test-client", "s3cret-of-the-oauth-client"
_n = itertools.count(1)


@dataclass
class OAuthState:
    valid: set[str] = field(default_factory=set)  # access tokens the CRM accepts (shared with a fake CRM)
    expires_in: int | None = 1800  # None: no expires_in in the answer (Salesforce)
    instance_url: str | None = None  # Salesforce's instance_url / Pipedrive's api_domain, when set
    rotate: bool = True  # a refresh returns a new refresh token (Zendesk, Pipedrive, Sugar); False: none
    codes: dict[str, str] = field(default_factory=dict)  # code → redirect_uri it was issued for
    refresh_tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # every code, access and refresh token ever issued
    authorized: list[dict[str, str]] = field(default_factory=list)  # the authorize requests' query
    token_requests: list[dict[str, Any]] = field(default_factory=list)  # grant_type, how the client came

    def expire_all(self) -> None:
        self.valid.difference_update([t for t in self.issued if t.startswith("acc-")])

    def _new(self, prefix: str) -> str:
        value = f"{prefix}-{next(_n)}-{secrets.token_urlsafe(12)}"
        self.issued.append(value)
        return value


class FakeOAuth:
    def __init__(self, state: OAuthState | None = None) -> None:
        self.state = state or OAuthState()

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", "/{sub}"):
            app.router.add_get(prefix + "/oauth/authorize", self.authorize)
            app.router.add_post(prefix + "/oauth/token", self.token)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.state.authorized.append(q)
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.Response(status=400, text="unknown client")
        code = self.state._new("code")
        self.state.codes[code] = q["redirect_uri"]
        return web.Response(status=302, headers={
            "Location": q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})})

    async def token(self, request: web.Request) -> web.Response:
        s = self.state
        body: dict[str, Any] = (await request.json() if request.content_type == "application/json"
                                else dict(await request.post()))
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            how = "basic"
        else:
            cid, secret = body.get("client_id"), body.get("client_secret")
            how = "json" if request.content_type == "application/json" else "form"
        s.token_requests.append({"grant_type": body.get("grant_type"), "client": how,
                                 "sub": request.match_info.get("sub")})
        if (cid, secret) != (CLIENT_ID, CLIENT_SECRET):
            return json_response({"error": "invalid_client"}, 401)
        grant = body.get("grant_type")
        if grant == "authorization_code":
            if s.codes.pop(body.get("code", ""), None) != body.get("redirect_uri"):
                return json_response({"error": "invalid_grant", "error_description": "bad code"}, 400)
            refresh = s._new("ref")
        elif grant == "refresh_token":
            old = body.get("refresh_token", "")
            if old not in s.refresh_tokens:
                return json_response({"error": "invalid_grant", "error_description": "refresh token is invalid, "
                                      "expired or revoked", "status": "BAD_REFRESH_TOKEN"}, 400)
            refresh = s._new("ref") if s.rotate else None
            if s.rotate:
                s.refresh_tokens.discard(old)
        else:
            return json_response({"error": "unsupported_grant_type"}, 400)
        access = s._new("acc")
        s.valid.add(access)
        answer: dict[str, Any] = {"access_token": access, "token_type": "bearer"}
        if refresh is not None:
            s.refresh_tokens.add(refresh)
            answer["refresh_token"] = refresh
        if s.expires_in is not None:
            answer["expires_in"] = s.expires_in
        if s.instance_url:
            answer["instance_url"] = answer["api_domain"] = s.instance_url
        return json_response(answer)


def password_grant(app: web.Application, tokens: set[str], path: str, *, user: str = "rep",
                   password: str = "pw", json_body: bool = True) -> list[str]:
    """Give a fake CRM's app (SugarCRM ``/rest/v11/oauth2/token``, SuiteCRM ``/Api/access_token``) the password
    and refresh grants of its instance; issued access tokens go into ``tokens``. Returns the grant types asked
    for, in order. Added as the outermost middleware, ahead of the fake's own token check."""
    grants: list[str] = []
    refresh_tokens: set[str] = set()

    @web.middleware
    async def token_endpoint(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "POST" or request.path != path:
            return await handler(request)
        body = await request.json() if json_body else dict(await request.post())
        grants.append(str(body.get("grant_type")))
        if body.get("grant_type") == "password" and (body.get("username"), body.get("password")) == (user, password):
            pass
        elif body.get("grant_type") == "refresh_token" and body.get("refresh_token") in refresh_tokens:
            refresh_tokens.discard(body["refresh_token"])
        else:
            return json_response({"error": "invalid_grant", "error_description": "The user credentials were incorrect.",
                                  "error_message": "Invalid credentials"}, 400)
        access, refresh = f"acc-{next(_n)}-{secrets.token_urlsafe(8)}", f"ref-{next(_n)}-{secrets.token_urlsafe(8)}"
        tokens.add(access)
        refresh_tokens.add(refresh)
        return json_response({"access_token": access, "expires_in": 3600, "token_type": "bearer",
                              "refresh_token": refresh})

    app.middlewares.insert(0, token_endpoint)
    return grants
