"""Benutzer / Users: the account's sipgate users fetched live, joined with its users table, with their CRM user,
open sessions and actions (enable, disable, map, end sessions).

A CRM user is typed by id, or picked from the CRM's users where the admin gave a CRM access token for this
browser session: the token lives in the encrypted session cookie only (never on the server, in a page, a URL
or a log line), and the list proposes the CRM user with the sipgate user's email, as sipgate's App Connect does.
Listing needs the adapter's ``list_users``; for a CRM without it the page shows the id field alone, and no
token form.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hejcti import logs
from hejcti.crm import NO_CRM, adapter_class
from hejcti.crm.base import Credentials, CrmError
from hejcti.errors import BadRequestError
from hejcti.portal.common import CRM_TOKEN_MAX, PREFIX, Ctx, back, posted, render, see_other, signed_in, twin

log = logs.get("hejcti.portal")
CRM_TOKEN = "crm_token"  # the session cookie's key of the admin's CRM access token


async def _crm_users(ctx: Ctx, account: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The CRM's users with the session's token, or None and the message key saying why not."""
    if _needs_instance(account):
        return None, "users.crm_list_needs_instance"
    token = ctx.raw.get(CRM_TOKEN)
    if not token or account["crm"] in (NO_CRM, "directory"):
        return None, None
    adapter = adapter_class(account["crm"])(instance=account["crm_instance"], region=account["region"],
                                            http=ctx.deps.http(), budget=10)
    lister = getattr(adapter, "list_users", None)
    if lister is None:
        return None, "users.crm_list_unsupported"
    try:
        return await lister(Credentials(access_token=str(token))), None
    except CrmError as e:
        log.info("portal.crm_users_failed", account=ctx.account_id, crm=account["crm"], error=type(e).__name__,
                 status=e.status)
        return None, "users.crm_list_failed"
    finally:
        await adapter.close()


def _needs_instance(account: dict[str, Any]) -> bool:
    """Salesforce without ``crm_instance``: normal for lookups (each extension session reports its org's URL),
    but the portal has no session to ask, so it cannot list the org's users."""
    return account["crm"] == "salesforce" and not account["crm_instance"]


def _proposal(email: str | None, crm_users: list[dict[str, Any]]) -> str | None:
    if not email:
        return None
    wanted = email.strip().lower()
    return next((u["id"] for u in crm_users if (u.get("email") or "").strip().lower() == wanted), None)


async def page(request: web.Request, *, status: int = 200, error: str | None = None,
               new_token: dict[str, str] | None = None) -> web.Response:
    ctx = await signed_in(request)
    admin = ctx.deps.admin()
    account = await admin.show_account(ctx.account_id)
    overview = await admin.users_overview(ctx.account_id)
    crm_users, crm_problem = await _crm_users(ctx, account)
    open_sessions = await ctx.deps.presence().counts(ctx.deps.store(), ctx.account_id,
                                                     [u["user_id"] for u in overview["users"] if u["user_id"]])
    rows = []
    for u in overview["users"]:
        rows.append({**u, "sessions": open_sessions.get(u["user_id"], 0) if u["user_id"] else 0,
                     "proposal": _proposal(u.get("email"), crm_users) if crm_users and not u["crm_user"] else None})
    if (data := twin(request, {"sipgate": overview["sipgate"], "users": rows})) is not None:
        return data
    problem = {"not_connected": "users.sipgate_not_connected",
               "unavailable": "users.sipgate_unavailable"}.get(overview["sipgate"])
    oauth = ctx.deps.sipgate().oauth_client() is not None
    can_list = account["crm"] not in (NO_CRM, "directory") and hasattr(adapter_class(account["crm"]), "list_users")
    if new_token is not None:
        new_token["label"] = next((r["name"] or r["sipgate_user"] for r in rows if r["user_id"] == new_token["user_id"]),
                                  new_token["user_id"])
    return await render(ctx, "users.html", status=status, rows=rows, crm_users=crm_users, oauth=oauth, can_list=can_list,
                        new_token=new_token, path=PREFIX + "/users",  # the language switch returns here
                        crm_token_set=bool(ctx.raw.get(CRM_TOKEN)), account=account,
                        needs_instance=_needs_instance(account),
                        sipgate_problem=ctx.t(problem) if problem else None,
                        crm_problem=ctx.t(crm_problem) if crm_problem else None,
                        error=ctx.t(error) if error else None)


async def enable(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    form = await posted(request, ctx)
    try:
        made = await ctx.deps.admin().add_user(account_id=ctx.account_id, sipgate_user=str(form.get("sipgate_user")
                                                                                          or ""))
    except BadRequestError:
        return await page(request, status=400, error="users.enable_failed")
    log.info("portal.user_enabled", account=ctx.account_id, user_id=made["user_id"])  # its token is never shown
    oauth = ctx.deps.sipgate().oauth_client() is not None  # else the user needs a token: "New token" shows one
    raise back("/users", "users.enabled_done" if oauth else "users.enabled_done_token")


async def _own_user(request: web.Request) -> tuple[Ctx, Any, str]:
    """The signed-in admin's context, the form, and the user id of the URL: 404 unless it is of this account."""
    ctx = await signed_in(request)
    form = await posted(request, ctx)
    user_id = request.match_info["user_id"]
    await ctx.deps.admin().account_user(ctx.account_id, user_id)
    return ctx, form, user_id


async def disable(request: web.Request) -> web.Response:
    ctx, _, user_id = await _own_user(request)
    await ctx.deps.admin().remove_user(user_id)
    log.info("portal.user_disabled", account=ctx.account_id, user_id=user_id)
    raise back("/users", "users.disabled_done")


async def map_user(request: web.Request) -> web.Response:
    ctx, form, user_id = await _own_user(request)
    crm_user = str(form.get("crm_user") or "").strip()[:255]
    await ctx.deps.admin().map_user(user_id, crm_user)
    log.info("portal.user_mapped", account=ctx.account_id, user_id=user_id, mapped=bool(crm_user))
    raise back("/users", "users.mapped_done")


async def revoke(request: web.Request) -> web.Response:
    ctx, _, user_id = await _own_user(request)
    await ctx.deps.admin().new_user_token(user_id)  # the new token is shown to nobody: the user signs in again
    log.info("portal.user_revoked", account=ctx.account_id, user_id=user_id)
    raise back("/users", "users.revoked_done")


async def new_token(request: web.Request) -> web.Response:
    """A new extension token for the user, shown once on the page this POST answers (never in a URL or a log
    line; the page is not cached); the old token stops working and its sessions end (4502)."""
    ctx, _, user_id = await _own_user(request)
    made = await ctx.deps.admin().new_user_token(user_id)
    log.info("portal.user_token", account=ctx.account_id, user_id=user_id)
    return await page(request, new_token={"user_id": user_id, "token": made["token"]})


async def crm_token(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    form = await posted(request, ctx)
    if form.get("action") == "forget":
        ctx.raw.pop(CRM_TOKEN, None)
        message = "users.crm_token_forgotten"
    else:
        token = str(form.get("token") or "").strip()
        if len(token) > CRM_TOKEN_MAX:
            return await page(request, status=400, error="users.crm_token_too_long")
        if not token or any(c.isspace() for c in token):
            return await page(request, status=400, error="users.crm_token_empty")
        ctx.raw[CRM_TOKEN] = token
        message = "users.crm_token_saved"
    response = see_other(f"{PREFIX}/users?m={message}")
    await ctx.save(response)
    log.info("portal.crm_token", account=ctx.account_id, kept=CRM_TOKEN in ctx.raw)
    return response


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/users", page)
    r.add_get("/users.json", page)
    r.add_post("/users/enable", enable)
    r.add_post("/users/crm-token", crm_token)
    r.add_post("/users/{user_id}/disable", disable)
    r.add_post("/users/{user_id}/map", map_user)
    r.add_post("/users/{user_id}/revoke", revoke)
    r.add_post("/users/{user_id}/token", new_token)
