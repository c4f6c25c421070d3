"""Sign in with sipgate (CONTRACT §8): OAuth2 authorization code with PKCE (S256) and a single-use ``state``
bound to the browser.

``GET /auth/sipgate?for=portal|extension[&redirect_uri=…]`` keeps the started flow in PostgreSQL (table
``signin_states``: several processes serve one installation without sticky sessions), sets a random value in
an HttpOnly cookie whose hash the flow keeps, and sends the browser to sipgate. ``GET /auth/sipgate/callback``
takes the flow (once), checks the cookie, exchanges the code on the server (client secret and PKCE verifier),
and asks sipgate who signed in: the account is ``masterSipId``, the user ``sub``.

- ``portal``: sipgate admins only. The account is made on its first admin's sign-in (no CRM yet), its stored
  credential becomes this admin's OAuth tokens (encrypted; refreshed as sipgate rotates them), and the browser
  gets the portal's session cookie (websession.py).
- ``extension``: any user of a connected account. The user is added if missing and issued a new token, handed
  to the extension as ``redirect_uri#token=…``; ``redirect_uri`` is checked when the flow starts. The user's
  own sipgate tokens are dropped, unless they are an admin whose tokens the account's credential already is,
  or an admin of an account whose credential sipgate rejected (their sign-in connects it again).

Every refusal is a portal page (German or English, with the language switch and a link back to the portal) with
its status, and one dotted log event without tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hejcti import logs
from hejcti.admin import Admin
from hejcti.errors import BadRequestError, DatabaseUnavailableError, HejctiError
from hejcti.portal.common import refusal_page
from hejcti.redirects import check_redirect_uri, error_code, plain
from hejcti.sipgate import (
    Credential,
    SipgateAuthError,
    SipgateClient,
    SipgateError,
    SipgateRefusedError,
    UserInfo,
)
from hejcti.sipgate_live import SipgateAccounts
from hejcti.store import Store
from hejcti.tokens import b64url
from hejcti.websession import PAGE_HEADERS, WebSessions

log = logs.get("hejcti.signin")

CALLBACK_PATH = "/auth/sipgate/callback"
BROWSER_COOKIE = "hejcti_signin"
STATE_TTL_S = 600
SCOPES = ("users:read devices:read numbers:read settings:sipgateio:read settings:sipgateio:write "
          "sessions:calls:write rtcm:read rtcm:write")
PURPOSES = ("portal", "extension")
_BROWSER = re.compile(r"[A-Za-z0-9_-]{43}")

#: the refusal pages' texts are the portal's catalogs' ``signin_refused.<key>`` (hejcti/portal/messages)


class SignInRefusedError(HejctiError):
    """A sign-in that ends in a page: ``key`` of its text, the HTTP status, and why (for the log)."""

    def __init__(self, key: str, status: int, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.key, self.status, self.reason, self.fields = key, status, reason, fields


def _sha(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def challenge(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)) without padding."""
    return b64url(hashlib.sha256(verifier.encode()).digest())


class SignIn:
    """The two routes. ``store`` and ``sipgate`` are read when a request runs (they exist once the app runs)."""

    def __init__(self, settings: Any, store: Callable[[], Store], sipgate: Callable[[], SipgateAccounts],
                 sessions: WebSessions) -> None:
        self.settings = settings
        self._store = store
        self._sipgate = sipgate
        self.sessions = sessions

    @property
    def callback_url(self) -> str:
        return self.settings.base_url + CALLBACK_PATH

    # -- GET /auth/sipgate ---------------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        oauth = self._sipgate().oauth_client()
        if oauth is None:
            return plain(404, "Sign in with sipgate is not set up on this server "
                               "(HEJCTI_SIPGATE_CLIENT_ID and HEJCTI_SIPGATE_CLIENT_SECRET are not both set)")
        purpose = request.query.get("for", "")
        if purpose not in PURPOSES:
            return plain(400, "for= must be portal or extension")
        uris = request.query.getall("redirect_uri", [])
        redirect_uri = uris[0] if uris else None
        if len(uris) > 1:
            return plain(400, "redirect_uri given more than once")
        if purpose == "extension":
            why = ("redirect_uri is required for for=extension" if redirect_uri is None
                   else check_redirect_uri(redirect_uri, self.settings.extension_id_set))
            if why is not None:
                log.info("signin.refused", purpose=purpose, reason="redirect_uri")
                return plain(400, why)
        elif redirect_uri is not None:
            return plain(400, "redirect_uri is only for for=extension")
        browser = request.cookies.get(BROWSER_COOKIE, "")
        if not _BROWSER.fullmatch(browser):
            browser = secrets.token_urlsafe(32)  # kept when valid: two sign-ins in one browser both work
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        store = self._store()
        try:
            await store.execute("signin_states_purge", STATE_TTL_S)
            await store.execute("signin_state_insert", _sha(state), _sha(browser), verifier, purpose, redirect_uri)
        except DatabaseUnavailableError:
            return plain(503, "the database is not available; try again in a moment")
        target = oauth.authorize_url(redirect_uri=self.callback_url, state=state, code_challenge=challenge(verifier),
                                     scope=SCOPES)
        response = web.Response(status=302, headers={"Location": target, **PAGE_HEADERS})
        response.set_cookie(BROWSER_COOKIE, browser, max_age=STATE_TTL_S, path="/auth/sipgate", httponly=True,
                            samesite="Lax", secure=self.sessions.secure)
        log.info("signin.started", purpose=purpose)
        return response

    # -- GET /auth/sipgate/callback ------------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        try:
            return await self._callback(request)
        except SignInRefusedError as e:
            log.info("signin.refused", reason=e.reason, status=e.status, **e.fields)
            return await refusal_page(request, e.key, e.status)

    async def _callback(self, request: web.Request) -> web.Response:
        query = request.query
        state = query.get("state", "")
        try:
            taken = await self._store().fetchrow("signin_state_take", _sha(state), STATE_TTL_S) if state else None
        except DatabaseUnavailableError as e:
            raise SignInRefusedError("unavailable", 503, "database") from e
        purpose = taken["purpose"] if taken is not None else None
        if "error" in query:  # sipgate's: access_denied when the user said no
            error = error_code(query["error"])
            if error == "access_denied":
                raise SignInRefusedError("declined", 403, "declined", purpose=purpose)
            raise SignInRefusedError("sipgate_error", 502, "sipgate_error", error=error, purpose=purpose)
        code = query.get("code", "")
        if not code or not state:
            raise SignInRefusedError("incomplete", 400, "incomplete")
        if taken is None or not taken["fresh"]:
            raise SignInRefusedError("expired", 400, "unknown_state" if taken is None else "expired_state")
        browser = request.cookies.get(BROWSER_COOKIE, "")
        if not browser or not hmac.compare_digest(_sha(browser), bytes(taken["browser_hash"])):
            raise SignInRefusedError("other_browser", 400, "browser_mismatch" if browser else "no_cookie",
                                     purpose=purpose)
        try:
            credential, client, info = await self._exchange(code, taken["verifier"])
            if purpose == "portal":
                return await self._portal(request, credential, client, info)
            return await self._extension(credential, client, info, taken["redirect_uri"])
        except DatabaseUnavailableError as e:
            raise SignInRefusedError("unavailable", 503, "database", purpose=purpose) from e
        except SipgateAuthError as e:
            raise SignInRefusedError("code_refused", 400, "code_refused", purpose=purpose) from e
        except SipgateRefusedError as e:
            raise SignInRefusedError("sipgate_error", 502, "sipgate_refused", status_sipgate=e.status,
                                     purpose=purpose) from e
        except SipgateError as e:
            raise SignInRefusedError("unreachable", 502, "sipgate_unavailable", purpose=purpose) from e
        except BadRequestError as e:
            raise SignInRefusedError("sipgate_error", 502, "unusable", error=str(e), purpose=purpose) from e

    async def _exchange(self, code: str, verifier: str) -> tuple[Credential, SipgateClient, UserInfo]:
        """The code for tokens (server to server, with the client secret and the PKCE verifier), and whom
        they are of."""
        sg = self._sipgate()
        oauth = sg.oauth_client()
        if oauth is None:
            raise SignInRefusedError("sipgate_error", 502, "not_configured")
        tokens = await oauth.exchange(sg.http, code=code, redirect_uri=self.callback_url, code_verifier=verifier)
        credential = Credential.oauth(tokens)
        client = sg.new_client(credential)
        info = await client.userinfo()
        if not info.master_sip_id or not info.sub:
            raise SignInRefusedError("sipgate_error", 502, "userinfo_incomplete")
        return dataclasses.replace(credential, owner=info.sub), client, info

    async def _admin(self) -> Admin:
        return Admin(self._store(), self.settings, self._sipgate())

    async def _portal(self, request: web.Request, credential: Credential, client: SipgateClient,
                      info: UserInfo) -> web.Response:
        if not await is_admin(client, info.sub):
            raise SignInRefusedError("not_admin", 403, "not_admin", purpose="portal", user=info.sub)
        admin = await self._admin()
        account_id, made = await admin.account_for_sipgate(str(info.master_sip_id))
        await self._sipgate().store_credential(account_id, info, credential)
        response = web.Response(status=302, headers={"Location": "/portal", **PAGE_HEADERS})
        await self.sessions.start(request, response, account_id=account_id, sipgate_user=info.sub, admin=True)
        log.info("signin.portal", account=account_id, user=info.sub, account_made=made)
        return response

    async def _extension(self, credential: Credential, client: SipgateClient, info: UserInfo,
                         redirect_uri: str | None) -> web.Response:
        if not redirect_uri or check_redirect_uri(redirect_uri, self.settings.extension_id_set) is not None:
            # checked at the start; EXTENSION_IDS may have changed since
            raise SignInRefusedError("expired", 400, "redirect_uri", purpose="extension")
        row = await self._store().fetchrow("account_by_sipgate_connected", info.master_sip_id)
        if row is None or not row["connected"]:
            raise SignInRefusedError("not_connected", 403, "not_connected", purpose="extension",
                                     sipgate_account=info.master_sip_id)
        account_id = row["id"]
        admin = await self._admin()
        issued = await admin.sign_in_user(account_id, info.sub)
        await self._renew_own_credential(account_id, credential, client, info)
        log.info("signin.extension", account=account_id, user=info.sub, user_id=issued["user_id"],
                 user_added=issued["added"])
        return web.Response(status=302, headers={"Location": f"{redirect_uri}#token={issued['token']}",
                                                 **PAGE_HEADERS})

    async def _renew_own_credential(self, account_id: str, credential: Credential, client: SipgateClient,
                                    info: UserInfo) -> None:
        """The account's credential is this admin's tokens already: keep the fresh ones. sipgate rejected the
        stored credential: an admin's fresh tokens reconnect the account. Anyone else's sipgate tokens are
        dropped here (never stored); a user of a rejected account is signed in all the same (their pops need
        no sipgate), and their sipgate actions say that an admin must sign in again."""
        sg = self._sipgate()
        try:
            current: Credential | None = await sg.credential(account_id)
        except SipgateAuthError:  # sipgate rejected it (sipgate_rejected_at)
            current = None
        except SipgateError:
            return
        own = current is not None and current.kind == "oauth" and current.owner == info.sub
        if (current is None or own) and await is_admin(client, info.sub):
            await sg.store_credential(account_id, info, credential)
            if current is None:
                log.info("signin.reconnected", account=account_id, user=info.sub)


async def is_admin(client: SipgateClient, user_id: str) -> bool:
    """Whether sipgate says ``user_id`` is an admin (``/users/{id}``'s ``admin``); a user sipgate does not show
    (403, 404) is not."""
    try:
        return (await client.user(user_id)).admin
    except SipgateRefusedError:
        return False


def setup(app: web.Application, signin: SignIn) -> None:
    # no HEAD: a link checker's HEAD would start a sign-in, or spend the state of one under way
    app.router.add_get("/auth/sipgate", signin.start, allow_head=False)
    app.router.add_get(CALLBACK_PATH, signin.callback, allow_head=False)
