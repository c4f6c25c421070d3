"""Anrufe / Calls: the account's last 100 calls, newest first, 25 a page, so an admin can see why a call popped
late or was not logged: masked numbers, direction, whom it rang for, who answered, whether the pop found the
caller, its ring-to-pop time, and the CRM record's state (pending, written with its link, failed with the
CRM's reason)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from aiohttp import web

from hejcti import phones
from hejcti.portal.common import render, signed_in, twin

PER_PAGE = 25
PAGES = 100 // PER_PAGE


def _record(row: Any) -> dict[str, Any]:
    state = row["record_state"]
    if state is None:
        return {"state": "none"}
    if state == "done":
        return {"state": "written", "url": row["crm_url"] if _http(row["crm_url"]) else None}
    if state == "failed":
        return {"state": "failed", "reason": (row["last_error"] or "")[:300]}
    return {"state": "pending"}


def _http(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("https://", "http://"))


def _person(sipgate_user: str | None, names: dict[str, str]) -> dict[str, Any] | None:
    """A sipgate user as the page shows them: the name (fetched live) with the id beside it, or the id alone."""
    return None if not sipgate_user else {"id": sipgate_user, "name": names.get(sipgate_user)}


def _call(row: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {"at": row["started_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "direction": row["direction"],
            "number": phones.mask(row["number"]) if row["number"] else None,
            "users": [_person(u, names) for u in row["users"] or []],
            "answered_by": _person(row["answered_by"], names), "voicemail": row["voicemail"],
            "pop_ms": row["pop_ms"], "resolved": row["pop_resolved"], "record": _record(row)}


async def page(request: web.Request) -> web.Response:
    ctx = await signed_in(request)
    try:
        number = max(1, min(int(request.query.get("page", "1")), PAGES))
    except ValueError:
        number = 1
    admin = ctx.deps.admin()
    found = await admin.recent_calls(ctx.account_id, limit=PER_PAGE, offset=(number - 1) * PER_PAGE)
    pages = max(1, -(-found["total"] // PER_PAGE))
    names = await admin.sipgate_names(ctx.account_id) if found["calls"] else {}
    calls = [_call(r, names) for r in found["calls"]]
    if (data := twin(request, {"page": min(number, pages), "pages": pages, "calls": calls})) is not None:
        return data
    return await render(ctx, "calls.html", calls=calls, page=min(number, pages),
                        pages=pages)


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/calls", page)
    r.add_get("/calls.json", page)
