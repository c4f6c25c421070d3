"""What the two browser sign-in flows share, sipgate's (``signin``) and the CRMs' (``crm_oauth``): which redirect
URI may receive a token, a provider's ``error`` made safe to show and log, and the plain-text answer."""

from __future__ import annotations

import re

from aiohttp import web

_REDIRECT = re.compile(r"https://([a-z0-9]{1,64})\.chromiumapp\.org/[A-Za-z0-9._~/-]{0,512}")
_NOT_ERROR = re.compile(r"[^a-z_]")


def check_redirect_uri(value: str, extension_ids: frozenset[str]) -> str | None:
    """Why ``value`` may not receive a token (None: it may). Only ``https://<id>.chromiumapp.org/<path>`` with
    ``<id>`` in EXTENSION_IDS: no userinfo, port, query or fragment, a plain path (no percent-escapes)."""
    found = _REDIRECT.fullmatch(value)
    if found is None:
        return "redirect_uri must be https://<extension id>.chromiumapp.org/<path>"
    if found.group(1) not in extension_ids:
        return "redirect_uri names an extension that is not in EXTENSION_IDS"
    return None


def error_code(value: str) -> str:
    """A provider's ``error=`` parameter as an OAuth error code: lower case letters and ``_`` only, 40 at most
    (it goes into a log line and a redirect)."""
    return _NOT_ERROR.sub("", value.lower())[:40]


def plain(status: int, text: str) -> web.Response:
    """A one-line plain-text answer that no cache keeps."""
    return web.Response(status=status, text=text + "\n", headers={"Cache-Control": "no-store"})
