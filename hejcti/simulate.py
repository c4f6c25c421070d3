"""``simulate-call``: post the pushes of one call to a running server, in sipgate's wire format
(form-encoded, brackets percent-encoded, numbers as E.164 digits without ``+``)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlencode

import aiohttp

FORM = "application/x-www-form-urlencoded; charset=UTF-8"


def call_id() -> str:
    return "54566B150B0C0D3A5D" + secrets.token_hex(29).upper()


def bodies(*, number_from: str, number_to: str, user: str, direction: str = "in", answer_by: str | None = None,
           hangup: str | None = None, cid: str | None = None, xcid: str | None = None,
           end: bool = True) -> list[tuple[str, str]]:
    """The (event, body) pairs sipgate would send for this call; without ``end`` no hangup (the call stays
    ringing or answered until the server ends it, CONTRACT §4)."""
    cid = cid or call_id()
    xcid = xcid or secrets.token_hex(8)
    common = [("from", number_from), ("to", number_to), ("direction", direction)]
    new_call = [("event", "newCall"), ("direction", direction), ("from", number_from), ("to", number_to),
                ("callId", cid), ("origCallId", cid), ("user[]", user), ("userId[]", user),
                ("fullUserId[]", f"1234567{user}"), ("xcid", xcid)]
    out = [("newCall", urlencode(new_call))]
    if answer_by:
        answer = [("event", "answer"), ("callId", cid), *common,
                  ("answeringNumber", number_to if direction == "in" else number_from),
                  ("origCallId", cid), ("xcid", xcid)]
        if direction == "in":
            answer[2:2] = [("user", answer_by), ("userId", answer_by), ("fullUserId", f"1234567{answer_by}")]
        out.append(("answer", urlencode(answer)))
    if not end:
        return out
    cause = hangup or ("normalClearing" if answer_by else "cancel")
    out.append(("hangup", urlencode([("event", "hangup"), ("callId", cid), ("cause", cause), *common,
                                     ("origCallId", cid), ("xcid", xcid)])))
    return out


async def post_all(url: str, events: list[tuple[str, str]], delay: float = 1.0,
                   session: aiohttp.ClientSession | None = None) -> list[dict[str, Any]]:
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    results = []
    try:
        for i, (event, body) in enumerate(events):
            if i and delay > 0:
                await asyncio.sleep(delay)
            async with session.post(url, data=body.encode(), headers={"Content-Type": FORM,
                                                                      "User-Agent": "sipgate.io"}) as r:
                text = await r.text()
                results.append({"event": event, "status": r.status, "body": text})
    finally:
        if own:
            await session.close()
    return results
