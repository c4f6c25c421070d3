"""A simulated sipgate for ``hejcti demo --keep``: just enough of sipgate's REST API (``/v2``: userinfo, users,
their devices and numbers, the webhook settings) and of its OAuth login (an authorize page that says it is
simulated, a token endpoint) for a newcomer to sign in to the portal and click through it without a sipgate
account. Two made-up users, Ada (an admin) and Grace. In memory, on 127.0.0.1, for the demo only: it checks
the tokens it issued and nothing else."""

from __future__ import annotations

import html
import secrets
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

LOGIN = "/login/auth/realms/demo/protocol/openid-connect"
API = "/v2"
CLIENT_ID, CLIENT_SECRET = "hejcti-demo", "simulated"
PAT_ID, PAT = "token-DEMO", secrets.token_urlsafe(16)
MASTER_SIP_ID = "7000001"
USERS = [
    {"id": "w0", "firstname": "Ada", "lastname": "Lovelace", "email": "ada@example.com", "defaultDevice": "e0",
     "directDialIds": ["10"], "admin": True},
    {"id": "w1", "firstname": "Grace", "lastname": "Hopper", "email": "grace@example.com", "defaultDevice": "e1",
     "directDialIds": ["11"], "admin": False},
]


class SimulatedSipgate:
    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}  # access or refresh token → user
        self.codes: dict[str, tuple[str, str]] = {}  # code → (user, redirect_uri)
        self.settings: dict[str, Any] = {"incomingUrl": None, "outgoingUrl": None, "log": False, "whitelist": []}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(LOGIN + "/auth", self.authorize)
        app.router.add_post(LOGIN + "/auth", self.approve)
        app.router.add_post(LOGIN + "/token", self.token)
        app.router.add_get(API + "/authorization/userinfo", self.api(self.userinfo))
        app.router.add_get(API + "/users", self.api(lambda _r, _u: {"items": USERS}))
        app.router.add_get(API + "/users/{uid}", self.api(self.user))
        app.router.add_get(API + "/numbers", self.api(lambda _r, _u: {"items": []}))
        app.router.add_get(API + "/settings/sipgateio", self.api(lambda _r, _u: self.settings))
        app.router.add_put(API + "/settings/sipgateio", self.put_settings)
        app.router.add_get(API + "/{uid}/devices", self.api(self.devices))
        app.router.add_get(API + "/{uid}/numbers", self.api(lambda _r, _u: {"items": []}))
        return app

    def who(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self.tokens.get(header[7:])
        import base64

        try:
            token_id, _, token = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return None
        return "w0" if (token_id, token) == (PAT_ID, PAT) else None

    def api(self, answer: Any) -> Any:
        async def view(request: web.Request) -> web.Response:
            user = self.who(request)
            if user is None:
                return web.json_response({"message": "Unauthorized"}, status=401)
            return web.json_response(answer(request, user))

        return view

    @staticmethod
    def userinfo(_request: web.Request, user: str) -> dict[str, Any]:
        return {"sub": user, "domain": "sipgate.de", "masterSipId": MASTER_SIP_ID, "locale": "de_DE"}

    @staticmethod
    def user(request: web.Request, _user: str) -> dict[str, Any]:
        found = next((u for u in USERS if u["id"] == request.match_info["uid"]), None)
        if found is None:
            raise web.HTTPNotFound()
        return found

    @staticmethod
    def devices(request: web.Request, _user: str) -> dict[str, Any]:
        uid = request.match_info["uid"]
        return {"items": [{"id": "e" + uid[1:], "alias": "VoIP (simulated)", "type": "REGISTER", "online": True}]}

    async def put_settings(self, request: web.Request) -> web.Response:
        if self.who(request) is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        body = await request.json()
        if isinstance(body, dict):
            self.settings = body
        return web.Response(status=204)

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in q.items() if k in ("redirect_uri", "state"))
        options = "".join(f'<option value="{u["id"]}">{u["firstname"]} {u["lastname"]}'
                          f'{" (admin)" if u["admin"] else ""}</option>' for u in USERS)
        page = ('<!doctype html><html lang="en"><meta charset="utf-8"><title>Simulated sipgate</title>'
                '<h1>Simulated sipgate (hejcti demo)</h1><p>This is not sipgate: the demo simulates its sign-in. '
                'Only an admin may use the portal.</p>'
                f'<form method="post">{hidden}<label for="user">Sign in as</label> '
                f'<select id="user" name="user">{options}</select> <button type="submit">Sign in</button></form>')
        return web.Response(text=page, content_type="text/html")

    async def approve(self, request: web.Request) -> web.Response:
        form = await request.post()
        code = secrets.token_urlsafe(16)
        self.codes[code] = (str(form.get("user") or "w0"), str(form.get("redirect_uri") or ""))
        target = f"{form.get('redirect_uri')}?{urlencode({'code': code, 'state': str(form.get('state') or '')})}"
        raise web.HTTPFound(target)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "unauthorized_client"}, status=401)
        if form.get("grant_type") == "authorization_code":
            user, redirect = self.codes.pop(str(form.get("code")), ("", ""))
            if not user or redirect != form.get("redirect_uri"):
                return web.json_response({"error": "invalid_grant"}, status=400)
        else:
            user = self.tokens.pop(str(form.get("refresh_token")), "")
            if not user:
                return web.json_response({"error": "invalid_grant"}, status=400)
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.tokens[access] = self.tokens[refresh] = user
        return web.json_response({"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                                  "token_type": "bearer"})
