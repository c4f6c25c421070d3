"""A fake sipgate, shaped from reference/sipgate.md §5: the REST API under ``/v2`` (Basic auth with a personal
access token, Bearer with an OAuth access token), the OAuth side under ``/auth/realms/third-party/...`` (an
authorize page with a button, PKCE S256, a token endpoint whose refresh tokens rotate, ``expires_in: 300``),
and, like the real one, the pushes of a click-to-call (``newCall``/``answer``/``hangup``, form-encoded as
sipgate sends them) to the incoming and outgoing URL set through ``PUT /settings/sipgateio``; the follow-ups
go only to the ``onAnswer``/``onHangup`` URLs the ``newCall`` answer named.

Knobs: ``fail_next(n, status, retry_after=)`` (429, 500, 401, 403… before anything else), ``fail_at(method,
path, status, n=)`` (one endpoint only), ``neo`` (403 on the phoneline endpoints), ``delay`` (seconds before an
API answer), ``add_users(n)``, a device's ``online``; ``manual`` pacing holds every push until the test calls
``release()``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from tests.fakes.base import Running, json_response

LOGIN_PREFIX = "/auth/realms/third-party/protocol/openid-connect"
API_PREFIX = "/v2"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8", "User-Agent": "sipgate.io"}
PAT_ID, PAT = "token-FQ1V12", "e68ead46-a7db-46cd-8a1a-44aed1e4e372"
_ids = itertools.count(1)
USER = web.RequestKey("user", str)  # the sipgate user a request is authenticated as


def _user(uid: str, first: str, last: str, email: str, device: str, ext: str, admin: bool) -> dict[str, Any]:
    return {"id": uid, "firstname": first, "lastname": last, "email": email, "defaultDevice": device,
            "busyOnBusy": False, "addressId": "13", "directDialIds": [ext], "timezone": "Europe/Berlin",
            "admin": admin}


def _device(did: str, alias: str, kind: str, online: bool) -> dict[str, Any]:
    return {"id": did, "alias": alias, "type": kind, "online": online, "dnd": False,
            "activePhonelines": [{"id": "p" + did[1:], "alias": alias}], "activeGroups": []}


def _number(nid: str, number: str, endpoint: str, uid: str) -> dict[str, Any]:
    """A number routed to ``uid``'s phoneline ``endpoint`` (its ``endpointUrl`` names the user, as sipgate's do)."""
    return {"id": nid, "number": number, "localized": "0" + number[2:], "type": "LANDLINE",
            "endpointId": endpoint, "endpointAlias": "Leitung",
            "endpointUrl": f"https://api.sipgate.com/v2/{uid}/phonelines/{endpoint}"}


@dataclass
class Leg:
    call_id: str
    direction: str
    user: str | None
    number_from: str
    number_to: str
    xcid: str
    orig_call_id: str
    on_answer: str | None = None
    on_hangup: str | None = None
    answered: bool = False
    ended: bool = False


@dataclass
class SipgateState:
    master_sip_id: str = "1234567"
    pats: dict[str, str] = field(default_factory=lambda: {PAT_ID: PAT})
    pat_owner: str = "w0"
    users: list[dict[str, Any]] = field(default_factory=lambda: [
        _user("w0", "Ada", "Lovelace", "ada.lovelace@example.org", "e0", "10", True),
        _user("w1", "Grace", "Hopper", "grace.hopper@example.org", "e1", "11", False),
        _user("w2", "Jürgen", "Müller", "juergen.mueller@example.org", "e2", "12", False),
    ])
    devices: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {
        "w0": [_device("e0", "VoIP-Telefon von Ada", "REGISTER", True)],
        "w1": [_device("e1", "VoIP-Telefon von Grace", "REGISTER", True),
               _device("y1", "Handy von Grace", "MOBILE", False)],
        "w2": [_device("e2", "VoIP-Telefon von Jürgen", "REGISTER", True)],
    })
    numbers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {
        "w0": [_number("n0", "4921155500100", "p0", "w0")],
        "w1": [_number("n1", "4921155500101", "p1", "w1")],
        "w2": [_number("n2", "4921155500102", "p2", "w2")],
    })
    settings: dict[str, Any] = field(default_factory=lambda: {
        "incomingUrl": "https://old.example.org/in", "outgoingUrl": "https://old.example.org/out", "log": True,
        "whitelist": ["p0", "g1"]})
    # OAuth
    client_id: str = "hejcti-test-client"
    client_secret: str = "hejcti-test-secret"
    sign_in_as: str = "w0"  # whom the authorize page's button signs in (a form field can name another)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token → (user, expires)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token → user; void once used
    expires_in: int = 300
    # knobs
    neo: bool = False
    delay: float = 0.0
    manual: bool = False  # pushes wait for release()
    interval: float = 0.0  # seconds between pushes when not manual
    requests: list[tuple[str, str]] = field(default_factory=list)
    _fail: list[tuple[int, float | None]] = field(default_factory=list)
    _fail_at: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # "POST /v2/…" → (status, message)
    # calls
    sessions: dict[str, list[Leg]] = field(default_factory=dict)  # sessionId → its legs
    placed: list[dict[str, Any]] = field(default_factory=list)  # bodies of POST /sessions/calls
    transfers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    hangups: list[str] = field(default_factory=list)
    pushed: list[tuple[str, str, int]] = field(default_factory=list)  # (event, callId, status) posted

    def fail_next(self, n: int = 1, status: int = 500, retry_after: float | None = None) -> None:
        self._fail += [(status, retry_after)] * n

    def fail_at(self, method: str, path: str, status: int, message: str = "Forbidden", n: int = 1) -> None:
        """The next ``n`` requests of this method and API path (``/sessions/calls``) fail with this status and
        ``{"message": message}``; other requests are answered as usual."""
        self._fail_at.setdefault(f"{method} {API_PREFIX}{path}", []).extend([(status, message)] * n)

    def add_users(self, n: int) -> None:
        """``n`` more users (w3, w4, …), each with a device and a number of their own."""
        for i in range(len(self.users), len(self.users) + n):
            uid = f"w{i}"
            self.users.append(_user(uid, "User", f"Number{i}", f"user{i}@example.org", f"e{i}", str(10 + i), False))
            self.devices[uid] = [_device(f"e{i}", f"Telefon {i}", "REGISTER", True)]
            self.numbers[uid] = [_number(f"n{i}", f"49211555{i:05d}", f"p{i}", uid)]

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == API_PREFIX + path)

    def set_online(self, device_id: str, online: bool) -> None:
        for devices in self.devices.values():
            for d in devices:
                if d["id"] == device_id:
                    d["online"] = online

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def issue(self, user: str) -> dict[str, Any]:
        access, refresh = "at-" + secrets.token_urlsafe(16), "rt-" + secrets.token_urlsafe(16)
        self.access_tokens[access] = (user, time.time() + self.expires_in)
        self.refresh_tokens[refresh] = user
        return {"access_token": access, "expires_in": self.expires_in, "refresh_expires_in": 2592000,
                "refresh_token": refresh, "token_type": "bearer", "id_token": "e30.e30.sig", "not-before-policy": 0,
                "session_state": secrets.token_hex(8), "scope": "openid users:read devices:read numbers:read"}

    def user_of_number(self, value: str) -> str | None:
        digits = re.sub(r"\D", "", value)
        for uid, numbers in self.numbers.items():
            if any(n["number"] == digits for n in numbers):
                return uid
        for u in self.users:
            if digits and digits in u.get("directDialIds", []):
                return u["id"]
        return None

    def number_of(self, user: str) -> str:
        numbers = self.numbers.get(user) or []
        return numbers[0]["number"] if numbers else "anonymous"


class FakeSipgate:
    def __init__(self, state: SipgateState | None = None) -> None:
        self.state = state or SipgateState()
        self.base = ""
        self._gate = asyncio.Semaphore(0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    @property
    def api_url(self) -> str:
        return self.base + API_PREFIX

    @property
    def login_url(self) -> str:
        return self.base + LOGIN_PREFIX

    def release(self, n: int = 1) -> None:
        """Let the next ``n`` pushes go (``manual`` pacing)."""
        for _ in range(n):
            self._gate.release()

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait until every push placed so far has gone out."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the server ---------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        api = API_PREFIX
        app.router.add_get(api + "/authorization/userinfo", self.userinfo)
        app.router.add_get(api + "/users", self.list_users)
        app.router.add_get(api + "/users/{uid}", self.get_user)
        app.router.add_get(api + "/numbers", self.all_numbers)
        app.router.add_get(api + "/settings/sipgateio", self.get_settings)
        app.router.add_put(api + "/settings/sipgateio", self.put_settings)
        app.router.add_post(api + "/sessions/calls", self.new_call)
        app.router.add_post(api + "/calls/{cid}/transfer", self.transfer)
        app.router.add_delete(api + "/calls/{cid}", self.hangup)
        app.router.add_get(api + "/{uid}/devices", self.user_devices)
        app.router.add_get(api + "/{uid}/numbers", self.user_numbers)
        app.router.add_get(LOGIN_PREFIX + "/auth", self.authorize)
        app.router.add_post(LOGIN_PREFIX + "/auth", self.approve)
        app.router.add_post(LOGIN_PREFIX + "/token", self.token)
        return app

    @contextlib.asynccontextmanager
    async def running(self):  # type: ignore[no-untyped-def]
        async with Running(self.app()) as base, aiohttp.ClientSession() as http:
            self.base, self._http = base, http
            try:
                yield self
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        s = self.state
        s.requests.append((request.method, request.path))
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        if s._fail_at.get(f"{request.method} {request.path}"):
            status, message = s._fail_at[f"{request.method} {request.path}"].pop(0)
            return json_response({"message": message}, status)
        if s._fail:
            status, retry_after = s._fail.pop(0)
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
            text = "<html>upstream error</html>" if status >= 500 else '{"message":"Forbidden"}'
            return web.Response(status=status, text=text, headers=headers,
                                content_type="text/html" if status >= 500 else "application/json")
        if s.delay:
            await asyncio.sleep(s.delay)
        user = self.authenticated(request)
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        request[USER] = user
        return await handler(request)

    def authenticated(self, request: web.Request) -> str | None:
        s, header = self.state, request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                token_id, _, token = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None
            return s.pat_owner if s.pats.get(token_id) == token and token else None
        if header.startswith("Bearer "):
            user, until = s.access_tokens.get(header[7:], (None, 0.0))
            return user if until > time.time() else None
        return None

    # -- REST ---------------------------------------------------------------------------------------

    async def userinfo(self, request: web.Request) -> web.Response:
        return json_response({"sub": request[USER], "domain": "sipgate.de", "masterSipId": self.state.master_sip_id,
                              "locale": "de_DE"})

    async def list_users(self, request: web.Request) -> web.Response:
        return json_response({"items": self.state.users})

    async def get_user(self, request: web.Request) -> web.Response:
        for u in self.state.users:
            if u["id"] == request.match_info["uid"]:
                return json_response(u)
        return json_response({"message": "User not found"}, 404)

    def _phoneline(self, items: list[dict[str, Any]]) -> web.Response:
        if self.state.neo:
            return json_response({"message": "Forbidden"}, 403)
        return json_response({"items": items})

    async def user_devices(self, request: web.Request) -> web.Response:
        return self._phoneline(self.state.devices.get(request.match_info["uid"], []))

    async def user_numbers(self, request: web.Request) -> web.Response:
        return self._phoneline(self.state.numbers.get(request.match_info["uid"], []))

    async def all_numbers(self, request: web.Request) -> web.Response:
        return self._phoneline([n for ns in self.state.numbers.values() for n in ns])

    async def get_settings(self, request: web.Request) -> web.Response:
        return json_response(self.state.settings)

    async def put_settings(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("incomingUrl") or not body.get("outgoingUrl"):
            return json_response({"message": "incomingUrl and outgoingUrl are required"}, 400)
        self.state.settings = body
        return web.Response(status=204)

    async def new_call(self, request: web.Request) -> web.Response:
        s, body = self.state, await request.json()
        caller, callee = str(body.get("caller") or ""), str(body.get("callee") or "")
        if not caller or not callee:
            return json_response({"message": "caller and callee are required"}, 400)
        owner = next((uid for uid, ds in s.devices.items() if any(d["id"] == caller for d in ds)), None)
        if owner is None:
            return json_response({"message": "User is not allowed to initiate call with given parameters"}, 403)
        s.placed.append(body)
        online = any(d["id"] == caller and d["online"] for d in s.devices[owner])
        session = "54566B150B0C0D3A5D" + secrets.token_hex(29).upper()
        xcid = secrets.token_hex(8)
        target = s.user_of_number(callee)
        to = s.number_of(target) if target else re.sub(r"\D", "", callee)
        legs = [Leg(session, "out", owner, s.number_of(owner), to, xcid, session)]
        if target is not None:
            leg_id = f"{session[:-4]}{next(_ids):04X}"
            legs.append(Leg(leg_id, "in", target, s.number_of(owner), to, xcid, leg_id))
        s.sessions[session] = legs
        if online:  # like the real one: 200 all the same, but an offline device never rings
            self._spawn(self._play(legs))
        return json_response({"sessionId": session})

    def _legs(self, call_id: str) -> list[Leg]:
        return [leg for legs in self.state.sessions.values() for leg in legs if leg.call_id == call_id]

    async def transfer(self, request: web.Request) -> web.Response:
        legs = [leg for leg in self._legs(request.match_info["cid"]) if leg.answered and not leg.ended]
        if not legs:
            return json_response({"message": "Call not found"}, 404)
        body = await request.json()
        self.state.transfers.append((request.match_info["cid"], body))
        leg = legs[0]
        steps: list[tuple[str, Leg]] = [("hangup", leg)]
        target = self.state.user_of_number(str(body.get("phoneNumber") or ""))
        if target is not None:
            new = Leg(f"{leg.call_id[:-4]}{next(_ids):04X}", "in", target, leg.number_from,
                      self.state.number_of(target), leg.xcid, leg.call_id)
            self.state.sessions[new.call_id] = [new]
            steps += [("newCall", new), ("answer", new), ("hangup", new)]
        leg.ended = True  # no further pushes of the old leg but its hangup
        self._spawn(self._run(steps, force=True))
        return web.Response(status=204)

    async def hangup(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        legs = [leg for leg in self._legs(cid) if not leg.ended]
        if not legs:
            return json_response({"message": "Call not found"}, 404)
        self.state.hangups.append(cid)
        session = next((ls for ls in self.state.sessions.values() if legs[0] in ls), legs)
        for leg in session:
            leg.ended = True
        self._spawn(self._run([("hangup", leg) for leg in session], force=True))
        return web.Response(status=204)

    # -- pushes ---------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _play(self, legs: list[Leg]) -> None:
        await self._run([("newCall", leg) for leg in legs] + [("answer", leg) for leg in legs]
                        + [("hangup", leg) for leg in legs])

    async def _run(self, steps: list[tuple[str, Leg]], force: bool = False) -> None:
        for event, leg in steps:
            if self.state.manual:
                await self._gate.acquire()
            elif self.state.interval:
                await asyncio.sleep(self.state.interval)
            if leg.ended and not force:
                if self.state.manual:
                    self._gate.release()  # this push is not sent: the next one may take its turn
                continue  # hung up or transferred meanwhile: its pushes went out with that
            await self._push(event, leg)

    async def _push(self, event: str, leg: Leg) -> None:
        fields: list[tuple[str, str]] = [("event", event), ("callId", leg.call_id)]
        common = [("from", leg.number_from), ("to", leg.number_to), ("direction", leg.direction)]
        if event == "newCall":
            url = self.state.settings.get("incomingUrl" if leg.direction == "in" else "outgoingUrl")
            users = [leg.user] if leg.user else []
            names = [self._name(u) for u in users]
            fields = [("event", event), *common, ("callId", leg.call_id), ("origCallId", leg.orig_call_id),
                      *[("user[]", n) for n in names], *[("userId[]", u) for u in users],
                      *[("fullUserId[]", self.state.master_sip_id + u) for u in users], ("xcid", leg.xcid)]
        elif event == "answer":
            url, leg.answered = leg.on_answer, True
            who = [("user", self._name(leg.user)), ("userId", leg.user),
                   ("fullUserId", self.state.master_sip_id + leg.user)] if leg.direction == "in" and leg.user else []
            fields += [*who, *common, ("answeringNumber", leg.number_to), ("origCallId", leg.orig_call_id),
                       ("xcid", leg.xcid)]
        else:
            url, leg.ended = leg.on_hangup, True
            fields += [("cause", "normalClearing" if leg.answered else "cancel"), *common,
                       ("origCallId", leg.orig_call_id), ("xcid", leg.xcid)]
        if not url or self._http is None:
            return  # not subscribed (no onAnswer/onHangup in the newCall answer), as with the real one
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            self.state.pushed.append((event, leg.call_id, -1))  # a test never posts beyond this machine
            return
        try:
            async with self._http.post(url, data=urlencode(fields).encode(), headers=FORM) as r:
                text = await r.text()
                self.state.pushed.append((event, leg.call_id, r.status))
        except aiohttp.ClientError:
            self.state.pushed.append((event, leg.call_id, 0))
            return
        if event == "newCall":
            leg.on_answer = _attribute(text, "onAnswer")
            leg.on_hangup = _attribute(text, "onHangup")

    def _name(self, uid: str | None) -> str:
        u = next((u for u in self.state.users if u["id"] == uid), None)
        return f"{u['firstname']} {u['lastname']}" if u else ""

    # -- OAuth ------------------------------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        q, s = request.query, self.state
        if q.get("client_id") != s.client_id or q.get("response_type") != "code" or not q.get("redirect_uri"):
            return web.Response(status=400, text="Invalid parameter: client_id, response_type or redirect_uri")
        if q.get("code_challenge") and q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="Invalid parameter: code_challenge_method")
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in q.items())
        page = (f'<!doctype html><title>sipgate login</title><form method="post">{hidden}'
                f'<input name="user" value="{html.escape(s.sign_in_as)}">'
                f'<button type="submit" id="kc-login">Anmelden</button></form>')
        return web.Response(text=page, content_type="text/html")

    async def approve(self, request: web.Request) -> web.Response:
        form = await request.post()
        code = secrets.token_urlsafe(16)
        self.state.codes[code] = {"user": str(form.get("user") or self.state.sign_in_as),
                                  "redirect_uri": str(form["redirect_uri"]),
                                  "challenge": str(form.get("code_challenge") or ""),
                                  "client_id": str(form["client_id"])}
        sep = "&" if "?" in str(form["redirect_uri"]) else "?"
        target = f"{form['redirect_uri']}{sep}{urlencode({'code': code, 'state': str(form.get('state') or '')})}"
        raise web.HTTPFound(target)

    async def token(self, request: web.Request) -> web.Response:
        s, form = self.state, await request.post()
        if form.get("client_id") != s.client_id or form.get("client_secret") != s.client_secret:
            return json_response({"error": "unauthorized_client", "error_description": "Invalid client secret"}, 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            issued = s.codes.pop(str(form.get("code")), None)  # single use
            if issued is None or issued["redirect_uri"] != form.get("redirect_uri"):
                return json_response({"error": "invalid_grant", "error_description": "Code not valid"}, 400)
            if issued["challenge"]:
                verifier = str(form.get("code_verifier") or "").encode()
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if digest != issued["challenge"]:
                    return json_response({"error": "invalid_grant", "error_description": "PKCE verification failed"},
                                         400)
            return json_response(s.issue(issued["user"]))
        if grant == "refresh_token":
            user = s.refresh_tokens.pop(str(form.get("refresh_token")), None)  # rotation: void once used
            if user is None:
                return json_response({"error": "invalid_grant", "error_description": "Token is not active"}, 400)
            return json_response(s.issue(user))
        return json_response({"error": "unsupported_grant_type"}, 400)


def _attribute(xml: str, name: str) -> str | None:
    found = re.search(rf'{name}="([^"]*)"', xml)
    return html.unescape(found.group(1)) if found else None
