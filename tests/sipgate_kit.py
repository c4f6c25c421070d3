"""What the tests of sipgate sign-in and click-to-call share: the extension's redirect, the settings that point
the app at the fake sipgate, and a browser driving the OAuth dance (start → sipgate's authorize page → its button →
the callback, cookies kept per browser, redirects followed by hand)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.fakes.sipgate import FakeSipgate

EXT = "hnnlhefhhmhfapdfppcpbjkplolijhoc"
REDIRECT = f"https://{EXT}.chromiumapp.org/signin"


def sipgate_settings(fake: FakeSipgate, **more: Any) -> dict[str, Any]:
    return {"sipgate_api_url": fake.api_url, "sipgate_login_url": fake.login_url,
            "sipgate_client_id": fake.state.client_id, "sipgate_client_secret": fake.state.client_secret,
            "extension_ids": f"{EXT},bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", **more}


@dataclass
class Answer:
    status: int
    headers: Any
    text: str
    url: str = ""

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Browser:
    """One browser: its own cookie jar (IP hosts allowed, as a browser on 127.0.0.1 has them)."""

    http: aiohttp.ClientSession = field(default_factory=lambda: aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True)))
    lang: str = "en"

    async def get(self, url: str) -> Answer:
        async with self.http.get(url, allow_redirects=False, headers={"Accept-Language": self.lang}) as r:
            return Answer(r.status, r.headers, await r.text(), url)

    async def post(self, url: str, data: dict[str, str]) -> Answer:
        async with self.http.post(url, data=data, allow_redirects=False) as r:
            return Answer(r.status, r.headers, await r.text(), url)

    async def start(self, base: str, purpose: str, redirect_uri: str | None = None) -> Answer:
        query = {"for": purpose, **({"redirect_uri": redirect_uri} if redirect_uri else {})}
        return await self.get(f"{base}/auth/sipgate?{urlencode(query)}")

    async def at_sipgate(self, authorize_url: str, as_user: str) -> str:
        """sipgate's authorize page, its button pressed as ``as_user``: the callback URL it sends the browser to."""
        page = await self.get(authorize_url)
        assert page.status == 200, page.text
        form = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text))
        approved = await self.post(authorize_url, {**form, "user": as_user})
        assert approved.status == 302
        return approved.location

    async def sign_in(self, base: str, purpose: str, as_user: str = "w0", redirect_uri: str | None = None) -> Answer:
        started = await self.start(base, purpose, redirect_uri)
        assert started.status == 302, started.text
        return await self.get(await self.at_sipgate(started.location, as_user))

    async def close(self) -> None:
        await self.http.close()
