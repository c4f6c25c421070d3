"""Konto / Account: the CRM (kind, instance, call logging), the sipgate connection and its webhook settings
(with a button that sets them), the webhook URL and its rotation, the export and the account's deletion."""

from __future__ import annotations

import json

from aiohttp import web

from hejcti import logs
from hejcti.crm import KINDS
from hejcti.crm.zendesk import instance_url as zendesk_instance_url
from hejcti.errors import BadRequestError
from hejcti.portal.common import PREFIX, back, posted, render, see_other, signed_in, twin
from hejcti.portal.hosts import refused_instance
from hejcti.sipgate import SipgateError

log = logs.get("hejcti.portal")

#: the CRMs an admin picks here; ``directory`` (a CSV file on the server) is the operator's, set with the CLI
CHOICES = tuple(k for k in KINDS if k != "directory")
CRM_NAMES = {"salesforce": "Salesforce", "hubspot": "HubSpot", "pipedrive": "Pipedrive", "zendesk": "Zendesk",
             "sugarcrm": "SugarCRM", "suitecrm": "SuiteCRM"}


async def page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    ctx = await signed_in(request)
    admin = ctx.deps.admin()
    shown = await admin.show_account(ctx.account_id)
    sipgate = await admin.sipgate_status(ctx.account_id)
    if (data := twin(request, {"account": shown, "sipgate": sipgate})) is not None:
        return data
    oauth = ctx.deps.sipgate().oauth_client() is not None
    return await render(ctx, "account.html", status=status, account=shown, sipgate=sipgate, choices=CHOICES, oauth=oauth,
                        crm_names=CRM_NAMES, error=ctx.t(error) if error else None)


async def set_crm(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    form = await posted(request, ctx)
    crm = str(form.get("crm") or "")
    if crm not in CHOICES:
        return await page(request, status=400, error="account.crm_directory_refused" if crm == "directory"
                          else "account.crm_invalid")
    instance = str(form.get("crm_instance") or "").strip() or None
    if instance and not ctx.deps.settings.crm_allow_private_hosts:  # no CRM on the server's own networks (SSRF)
        url = zendesk_instance_url(instance) if crm == "zendesk" else instance
        if "://" in url and (why := await refused_instance(url)) is not None:
            log.info("portal.crm_refused", account=ctx.account_id, crm=crm, reason=why)
            return await page(request, status=400, error=why)
    try:
        await ctx.deps.admin().set_crm(ctx.account_id, crm=crm, crm_instance=instance,
                                       log_calls=form.get("log_calls") == "on")
    except BadRequestError:
        return await page(request, status=400, error="account.crm_invalid")
    log.info("portal.crm_set", account=ctx.account_id, crm=crm)
    raise back("/account", "account.crm_saved")


async def set_webhooks(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    await posted(request, ctx)
    try:
        await ctx.deps.admin().configure_webhooks(ctx.account_id)
    except SipgateError as e:
        log.info("portal.webhooks_failed", account=ctx.account_id, error=type(e).__name__)
        return await page(request, status=502, error="account.webhooks_failed")
    log.info("portal.webhooks_set", account=ctx.account_id)
    raise back("/account", "account.webhooks_done")


async def rotate(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    await posted(request, ctx)
    await ctx.deps.admin().rotate_webhook(ctx.account_id)
    log.info("portal.webhook_rotated", account=ctx.account_id)
    raise back("/account", "account.webhook_rotated")


async def export(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    data = await ctx.deps.admin().export(ctx.account_id)
    log.info("portal.exported", account=ctx.account_id)
    return web.Response(body=json.dumps(data, default=str, indent=1).encode(), content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="hejcti-{ctx.account_id}.json"',
                                 "Cache-Control": "no-store"})


async def delete(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    form = await posted(request, ctx)
    admin = ctx.deps.admin()
    shown = await admin.show_account(ctx.account_id)
    if str(form.get("confirm") or "").strip() != shown["name"]:
        return await page(request, status=400, error="account.delete_mismatch")
    await admin.delete_account(ctx.account_id)
    log.info("portal.account_deleted", account=ctx.account_id)
    response = see_other(PREFIX + "/signin?m=signin.deleted")
    await ctx.deps.sessions.end(request, response)
    return response


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/account", page)
    r.add_get("/account.json", page)
    r.add_post("/account/crm", set_crm)
    r.add_post("/account/webhooks", set_webhooks)
    r.add_post("/account/rotate", rotate)
    r.add_get("/account/export", export)
    r.add_post("/account/delete", delete)
