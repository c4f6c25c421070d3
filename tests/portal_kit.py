"""What the portal's tests share: a browser-like HTTP client (cookie jar), the CSRF token of a page, sign-in
with an admin token, and the checks every page must pass (headers, no untranslated key)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness import Harness

MESSAGES = Path(__file__).parent.parent / "hejcti" / "portal" / "messages"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def catalog(lang: str) -> dict[str, str]:
    return json.loads((MESSAGES / f"{lang}.json").read_text(encoding="utf-8"))


def keys_shown(page: str) -> list[str]:
    """Catalog keys that a page shows as such (a text missing from a catalog is rendered as its key)."""
    return [k for k in catalog("en") if re.search(rf"(?<![\w./-]){re.escape(k)}(?![\w-])", page)]


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def browser(lang: str = "en") -> aiohttp.ClientSession:
    # unsafe: the server is 127.0.0.1, whose cookies aiohttp's jar refuses by default (a browser keeps them)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept-Language": lang})


class Portal:
    """One browser on the portal of a harness."""

    def __init__(self, h: Harness, http: aiohttp.ClientSession) -> None:
        self.h, self.http, self.csrf = h, http, ""

    async def get(self, path: str, status: int = 200) -> str:
        async with self.http.get(self.h.base + path, allow_redirects=True) as r:
            text = html.unescape(await r.text())  # as a person reads it
            assert r.status == status, (path, r.status, text[:500])
            if 'name="csrf"' in text:
                self.csrf = csrf_of(text)
            return text

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   follow: bool = True) -> tuple[int, str, aiohttp.ClientResponse]:
        form = {**({"csrf": self.csrf} if csrf else {}), **(data or {})}
        async with self.http.post(self.h.base + path, data=form, allow_redirects=follow) as r:
            text = html.unescape(await r.text())
            if 'name="csrf"' in text:
                self.csrf = csrf_of(text)
            return r.status, text, r

    async def sign_in(self, account_id: str, admin_token: str) -> str:
        await self.get("/portal/signin")
        status, text, _ = await self.post("/portal/signin", {"account_id": account_id, "admin_token": admin_token})
        assert status == 200, text[:500]
        return text
