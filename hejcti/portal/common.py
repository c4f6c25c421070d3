"""What every portal page shares: the request's session and language, the message catalogs, rendering, CSRF,
and the headers and error pages every portal response gets (``guard``, around each portal handler: a middleware
of the portal's sub-application would make aiohttp run middleware machinery for every request of the whole app).

The session is the sign-in's encrypted cookie (websession.py). The portal keeps three more things in it: the
chosen language, the CSRF token of a browser not signed in yet (its sign-in form is a POST too), and a CRM
access token the admin gave for this browser session. Nothing of it is stored on the server.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import Session
from multidict import MultiDictProxy

from hejcti import logs
from hejcti.admin import Admin
from hejcti.errors import BadRequestError, DatabaseUnavailableError, NotFoundError
from hejcti.websession import LANGUAGES, WebSession, WebSessions, language

log = logs.get("hejcti.portal")

HERE = Path(__file__).parent
PREFIX = "/portal"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
}
CRM_TOKEN_MAX = 2000  # a cookie holds about 4 KB, and the session's other fields and the encryption need room


@cache
def catalogs() -> dict[str, dict[str, str]]:
    return {lang: json.loads((HERE / "messages" / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}


def translate(lang: str, key: str, **values: Any) -> str:
    """The catalog's text of ``key`` (the key itself when missing: a test looks for keys on every page)."""
    text = catalogs()[lang].get(key, key)
    return text.format(**values) if values else text


@dataclass
class Deps:
    """What the pages reach in the main application (read when a request runs: they exist once it started)."""

    settings: Any
    sessions: WebSessions
    store: Callable[[], Any]
    sipgate: Callable[[], Any]
    http: Callable[[], Any]
    presence: Callable[[], Any]

    def admin(self) -> Admin:
        return Admin(self.store(), self.settings, sipgate=self.sipgate())


DEPS = web.AppKey("portal_deps", Deps)


@dataclass
class Ctx:
    """One request's portal state: its cookie session, the signed-in admin (or None) and the language."""

    request: web.Request
    deps: Deps
    raw: Session
    signed: WebSession | None
    lang: str

    @property
    def account_id(self) -> str:
        assert self.signed is not None
        return self.signed.account_id

    def t(self, key: str, **values: Any) -> str:
        return translate(self.lang, key, **values)

    @property
    def csrf(self) -> str:
        return str(self.raw.get("csrf") or "")

    async def save(self, response: web.StreamResponse) -> None:
        await self.deps.sessions.storage().save_session(self.request, response, self.raw)


async def context(request: web.Request) -> Ctx:
    deps = request.config_dict[DEPS]
    storage = deps.sessions.storage()
    raw = await storage.load_session(request)  # decrypted once: the signed-in part is read from the same session
    signed = deps.sessions.read(raw)
    chosen = raw.get("lang")
    return Ctx(request, deps, raw, signed, chosen if chosen in LANGUAGES else language(request))


async def signed_in(request: web.Request) -> Ctx:
    """The context of a signed-in admin; anyone else is sent to the sign-in page."""
    ctx = await context(request)
    if ctx.signed is None:
        raise web.HTTPSeeOther(PREFIX + "/signin")
    if not ctx.signed.admin:
        raise web.HTTPSeeOther(PREFIX + "/signin?m=signin.not_admin")
    return ctx


async def posted(request: web.Request, ctx: Ctx) -> MultiDictProxy[Any]:
    """The form of a POST whose CSRF token is the session's; else 403."""
    form = await request.post()
    sent = str(form.get("csrf") or "")
    if not ctx.csrf or not sent or not hmac.compare_digest(ctx.csrf.encode(), sent.encode()):
        log.info("portal.csrf_refused", path=request.path)
        raise web.HTTPForbidden(reason="csrf")
    return form


async def render(ctx: Ctx, template: str, *, status: int = 200, session: bool = True, **values: Any) -> web.Response:
    """A page in the request's language. A browser without a session yet gets one (its forms need a CSRF token),
    unless ``session`` is false (a page without forms)."""
    fresh = not ctx.csrf and session
    if fresh:
        ctx.raw["csrf"] = secrets.token_urlsafe(32)
    message = ctx.request.query.get("m", "")
    notice = ctx.t(message) if message in catalogs()["en"] else None  # a catalog text, never the query's own
    response = aiohttp_jinja2.render_template(template, ctx.request, {
        "t": ctx.t, "lang": ctx.lang, "csrf": ctx.csrf, "signed": ctx.signed, "path": ctx.request.path,
        "notice": notice, "error": None, **values}, status=status)
    response.headers["Cache-Control"] = "no-store"
    if fresh:
        await ctx.save(response)
    return response


def twin(request: web.Request, data: dict[str, Any]) -> web.Response | None:
    """The machine-readable twin of a page (``/portal/users.json`` beside ``/portal/users``), else None."""
    if not request.path.endswith(".json"):
        return None
    return web.Response(text=json.dumps(data, default=str, ensure_ascii=False), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def see_other(location: str | Any) -> web.Response:
    """A 303 as a plain response, which may carry a cookie (an ``HTTPSeeOther`` may only be raised)."""
    return web.Response(status=303, headers={"Location": str(location)})


def back(path: str, message: str | None = None) -> web.HTTPSeeOther:
    """After a POST: to a portal page (GET), with a message key to show there."""
    return web.HTTPSeeOther(PREFIX + path + (f"?m={message}" if message else ""))


async def start_session(ctx: Ctx, response: web.StreamResponse, account_id: str) -> None:
    """A new signed-in session (the sign-in's own: a new CSRF token) that keeps the chosen language."""
    ws = await ctx.deps.sessions.start(ctx.request, response, account_id=account_id, sipgate_user=None, admin=True)
    if "lang" in ctx.raw:
        session = Session(None, data=None, new=True, max_age=ctx.deps.sessions.max_age_s)
        session.update({**asdict(ws), "lang": ctx.raw["lang"]})
        await ctx.deps.sessions.storage().save_session(ctx.request, response, session)


def _status_key(status: int, reason: str) -> str:
    if status == 403 and reason == "csrf":
        return "error.csrf"
    return {404: "error.not_found", 503: "error.unavailable"}.get(status, "error.bad_request")


async def error_page(request: web.Request, status: int, reason: str = "") -> web.Response:
    try:
        ctx = await context(request)
    except Exception:  # noqa: BLE001  (an error page must not fail for a broken cookie)
        return web.Response(status=status, text=f"{status}\n")
    return await render(ctx, "error.html", status=status, message=ctx.t(_status_key(status, reason)))


async def refusal_page(request: web.Request, key: str, status: int, lang: str | None = None) -> web.Response:
    """A refused sipgate sign-in (hejcti/signin.py's callback, and ``/portal/refused/<key>`` behind its language
    switch, a link): the catalog's ``signin_refused.<key>`` in the request's language (or ``lang``), a link back
    to the portal, the portal's headers. It starts no portal session (no cookie): nothing on it is a form."""
    ctx = await context(request)
    if lang in LANGUAGES:
        ctx.lang = lang
    response = await render(ctx, "refused.html", status=status, key=key, title=ctx.t(f"signin_refused.{key}.title"),
                            message=ctx.t(f"signin_refused.{key}"), session=False)
    response.headers.update(HEADERS)
    return response


def refusal_keys() -> frozenset[str]:
    return frozenset(k.removeprefix("signin_refused.") for k in catalogs()["en"]
                     if k.startswith("signin_refused.") and not k.endswith(".title"))


async def _gone(request: web.Request) -> web.Response | None:
    """A session whose account was deleted meanwhile (by the CLI, or in another browser) ends: to the sign-in."""
    ctx = await context(request)
    if ctx.signed is None:
        return None
    try:
        await ctx.deps.admin().show_account(ctx.account_id)
        return None
    except NotFoundError:
        response = see_other(PREFIX + "/signin?m=signin.deleted")
        await ctx.deps.sessions.end(request, response)
        return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(handler: Handler) -> Handler:
    """``handler`` as a portal route runs it: its response gets the security headers, its failures become a page
    in the request's language."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPRedirection as e:
            response = see_other(e.location)
        except web.HTTPException as e:
            response = await error_page(request, e.status, e.reason)
        except NotFoundError:
            response = await _gone(request) or await error_page(request, 404)
        except BadRequestError as e:  # input the store cannot keep (a NUL): the user's error, not the server's
            log.info("portal.bad_request", path=request.path, error=type(e).__name__)
            response = await error_page(request, 400)
        except DatabaseUnavailableError:
            log.warning("portal.database_unavailable", path=request.path)
            response = await error_page(request, 503)
        if response.prepared:  # a streamed download (the export): its headers went out with it
            return response
        response.headers.update(HEADERS)
        return response

    return guarded


async def unrouted(request: web.Request) -> web.StreamResponse:
    """A portal path no route serves (the last route, guarded): 405 where another method would, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
