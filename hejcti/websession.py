"""The browser's side of the server (CONTRACT §9): the portal's session cookie, the page language, and plain
pages in German and English (the portal's templates render them).

The session is an aiohttp-session ``EncryptedCookieStorage`` (Fernet: AES-CBC with HMAC) under a key derived
from SECRET_KEY with HKDF and an info string of its own, so it is never the key that seals stored sipgate
credentials (crypto.py). The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Secure`` under an https PUBLIC_URL,
and ends 8 hours after the sign-in however often it is saved again. It holds ids, the admin flag and the CSRF
token of the portal's forms: never a sipgate, CRM or user token.

The storage is used without aiohttp-session's middleware, so no request but the portal's pays for it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hejcti.config import Settings

COOKIE = "hejcti_portal"
MAX_AGE_S = 8 * 3600
_INFO = b"hejcti portal session v1"
LANGUAGES = ("en", "de")
#: on every page this module renders: nothing loads from anywhere, nothing frames it, nothing leaks the URL
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'",
                "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def session_key(secret_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key)


@dataclass(frozen=True)
class WebSession:
    account_id: str
    sipgate_user: str | None
    admin: bool
    csrf: str
    signed_in_at: float

    def csrf_ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.csrf.encode(), str(value).encode())


class WebSessions:
    """Start, read and end the portal session of a request. Built once per app; the storage is made at first
    use, when PUBLIC_URL (which decides ``Secure``) is final."""

    def __init__(self, settings: Settings, max_age_s: int = MAX_AGE_S) -> None:
        self.settings = settings
        self.max_age_s = max_age_s
        self._storage: EncryptedCookieStorage | None = None

    @property
    def secure(self) -> bool:
        return self.settings.base_url.startswith("https://")

    def storage(self) -> EncryptedCookieStorage:
        if self._storage is None:
            self._storage = EncryptedCookieStorage(session_key(self.settings.resolved_secret_key()),
                                                   cookie_name=COOKIE, max_age=self.max_age_s, path="/",
                                                   secure=self.secure, httponly=True, samesite="Lax")
        return self._storage

    async def start(self, request: web.Request, response: web.StreamResponse, *, account_id: str,
                    sipgate_user: str | None, admin: bool) -> WebSession:
        """A new session (never the old one's CSRF token) on ``response``."""
        session = Session(None, data=None, new=True, max_age=self.max_age_s)
        ws = WebSession(account_id=account_id, sipgate_user=sipgate_user, admin=admin,
                        csrf=secrets.token_urlsafe(32), signed_in_at=time.time())
        session.update({"account_id": ws.account_id, "sipgate_user": ws.sipgate_user, "admin": ws.admin,
                        "csrf": ws.csrf, "signed_in_at": ws.signed_in_at})
        await self.storage().save_session(request, response, session)
        return ws

    async def load(self, request: web.Request) -> WebSession | None:
        """The request's session; None without one, or when it does not decrypt or is over 8 hours old."""
        if COOKIE not in request.cookies:
            return None
        return self.read(await self.storage().load_session(request))

    def read(self, session: Session) -> WebSession | None:
        """The signed-in session held in an already loaded cookie session; None for an empty, foreign or
        expired one."""
        try:
            ws = WebSession(account_id=str(session["account_id"]), sipgate_user=session.get("sipgate_user"),
                            admin=bool(session.get("admin")), csrf=str(session["csrf"]),
                            signed_in_at=float(session["signed_in_at"]))
        except (KeyError, TypeError, ValueError):
            return None
        if time.time() - ws.signed_in_at > self.max_age_s:
            return None
        return ws

    async def end(self, request: web.Request, response: web.StreamResponse) -> None:
        await self.storage().save_session(request, response, Session(None, data=None, new=True, max_age=0))


def language(request: web.Request) -> str:
    """``de`` or ``en``, whichever ``Accept-Language`` prefers (``en`` when it names neither)."""
    best, best_q = "en", 0.0
    for part in request.headers.get("Accept-Language", "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip().replace(" ", "")
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower()[:2]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best

