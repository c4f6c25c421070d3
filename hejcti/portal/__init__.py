"""The portal (CONTRACT §9): server-rendered pages where a company's admin sets the CRM, connects sipgate's
webhooks, maps the users and reads the last calls. A sub-application at ``/portal`` (a guard around each of its
handlers gives every response the security headers; no middleware, which would cost every request of the app), Jinja templates, one CSS file and one small script; every form works without
JavaScript. The pages call the account and user functions the CLI calls (hejcti/admin.py).

Pages: ``/portal/signin``, ``/portal/account`` (Konto), ``/portal/users`` (Benutzer), ``/portal/calls``
(Anrufe); sign-out and the language switch are POSTs from every page.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from hejcti import logs
from hejcti.portal import account, calls, users
from hejcti.portal.common import (
    DEPS,
    HERE,
    PREFIX,
    Deps,
    context,
    guard,
    posted,
    refusal_keys,
    refusal_page,
    render,
    see_other,
    start_session,
    unrouted,
)
from hejcti.websession import LANGUAGES, WebSessions

log = logs.get("hejcti.portal")

STATIC = {"portal.css": "text/css", "users.js": "text/javascript"}


async def home(request: web.Request) -> web.Response:
    ctx = await context(request)
    raise web.HTTPSeeOther(PREFIX + ("/account" if ctx.signed is not None else "/signin"))


async def signin_page(request: web.Request) -> web.Response:
    ctx = await context(request)
    oauth = ctx.deps.sipgate().oauth_client() is not None
    return await render(ctx, "signin.html", oauth=oauth, failed=False)


async def signin_token(request: web.Request) -> web.Response:
    """The account's admin token, for installations without sipgate's OAuth client."""
    ctx = await context(request)
    form = await posted(request, ctx)
    if ctx.deps.sipgate().oauth_client() is not None:
        raise web.HTTPNotFound()
    account_id = str(form.get("account_id") or "").strip()[:64]
    if not await ctx.deps.admin().check_admin_token(account_id, str(form.get("admin_token") or "")):
        log.info("portal.signin_refused", reason="admin_token")
        return await render(ctx, "signin.html", status=401, oauth=False, failed=True)
    response = see_other(PREFIX + "/account")
    await start_session(ctx, response, account_id)
    log.info("portal.signin", account=account_id, via="admin_token")
    return response


async def refused(request: web.Request) -> web.Response:
    """A sign-in refusal's text again, in the language its switch asks for (the refusal itself is gone)."""
    key = request.match_info["key"]
    if key not in refusal_keys():
        raise web.HTTPNotFound()
    return await refusal_page(request, key, 200, request.query.get("lang"))


async def signout(request: web.Request) -> web.Response:
    ctx = await context(request)
    await posted(request, ctx)
    response = see_other(PREFIX + "/signin?m=signin.signed_out")
    await ctx.deps.sessions.end(request, response)
    if ctx.signed is not None:
        log.info("portal.signout", account=ctx.signed.account_id)
    return response


def _printable(target: str) -> bool:
    """Printable ASCII without space or backslash: what a Location header may hold as it is (a control character
    there would be a header injection, which aiohttp refuses by dropping the connection)."""
    return all("!" <= c <= "~" and c != "\\" for c in target)


async def switch_language(request: web.Request) -> web.Response:
    ctx = await context(request)
    form = await posted(request, ctx)
    lang = str(form.get("lang") or "")
    if lang not in LANGUAGES:
        raise web.HTTPBadRequest()
    target = str(form.get("next") or "")
    parts = urlsplit(target)
    own = (not parts.scheme and not parts.netloc and (parts.path == PREFIX or parts.path.startswith(PREFIX + "/"))
           and _printable(target))
    ctx.raw["lang"] = lang
    response = see_other(parts.path if own else PREFIX)  # only back to a portal page of this server
    await ctx.save(response)
    return response


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=(HERE / "static" / name).read_bytes(), content_type=STATIC[name], charset="utf-8",
                        headers={"Cache-Control": "max-age=300"})


def setup(app: web.Application, sessions: WebSessions) -> None:
    """Mount the portal at /portal on ``app`` (the main application, whose keys it reads at request time)."""
    from hejcti.app import HTTP, PRESENCE, SETTINGS, SIPGATE, STORE  # noqa: I001  (app imports this first)

    portal = web.Application()
    portal[DEPS] = Deps(settings=app[SETTINGS], sessions=sessions, store=lambda: app[STORE],
                        sipgate=lambda: app[SIPGATE], http=lambda: app[HTTP],
                        presence=lambda: app[PRESENCE])
    for where in (portal, app):  # the main app's too: the sign-in's refusals (/auth/sipgate) are portal pages
        aiohttp_jinja2.setup(where, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    app[DEPS] = portal[DEPS]
    r = web.UrlDispatcher()  # the routes are gathered here, then each goes to the portal with its handler guarded
    r.add_get("", home)
    r.add_get("/", home)
    r.add_get("/signin", signin_page)
    r.add_post("/signin", signin_token)
    r.add_post("/signout", signout)
    r.add_get("/refused/{key}", refused)
    r.add_post("/language", switch_language)
    r.add_get("/static/{name}", static)
    account.routes(r)
    users.routes(r)
    calls.routes(r)
    for route in r.routes():
        portal.router.add_route(route.method, route.resource.canonical if route.resource else "", guard(route.handler))
    portal.router.add_route("*", "/{tail:.*}", guard(unrouted))  # last: what no route above serves
    app.add_subapp(PREFIX, portal)
