"""What every fake CRM shares: issued tokens, switches a test flips (expire, rate-limit, fail, delay,
malformed), the requests it saw, and a real aiohttp server on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeState:
    tokens: set[str] = field(default_factory=lambda: {"good-token"})
    delay: float = 0.0  # seconds before a lookup answers
    requests: list[tuple[str, str]] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # time.monotonic() of each request, in order
    # answers in the vendor's error shape the next requests get (status, JSON body), before any handler
    vendor_errors: list[tuple[int, Any]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)  # call records, as the CRM stores them
    notes: list[tuple[str, str]] = field(default_factory=list)
    _rate_limit: list[float | None] = field(default_factory=list)
    _fail: list[int] = field(default_factory=list)
    _malformed: int = 0

    def expire_token(self, token: str = "good-token") -> None:
        self.tokens.discard(token)

    def rate_limit_next(self, n: int = 1, retry_after: float | None = None) -> None:
        self._rate_limit += [retry_after] * n

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        self._fail += [status] * n

    def malformed_next(self, n: int = 1) -> None:
        self._malformed += n

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, p in self.requests if m == method and path_part in p)


class FakeCrm:
    """Subclasses add routes and say how their CRM answers an expired token and a rate limit."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def expired(self) -> web.Response:
        raise NotImplementedError

    def rate_limited(self, retry_after: float | None) -> web.Response:
        raise NotImplementedError

    def token_of(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def unauthenticated(self, request: web.Request) -> web.Response | None:
        """The answer to a request with no credentials at all, where the CRM has a shape of its own for it."""
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        s = self.state
        s.requests.append((request.method, request.path_qs))
        s.stamps.append(time.monotonic())
        if (answer := self.unauthenticated(request)) is not None:
            return answer
        if s.vendor_errors:
            status, body = s.vendor_errors.pop(0)
            return json_response(body, status)
        if self.token_of(request) not in s.tokens:
            return self.expired()
        if s._rate_limit:
            return self.rate_limited(s._rate_limit.pop(0))
        if s._fail:
            return web.Response(status=s._fail.pop(0), text="<html>upstream error</html>", content_type="text/html")
        if s._malformed:
            s._malformed -= 1
            return web.Response(status=200, text='{"results": [', content_type="application/json")
        return await handler(request)

    async def slow(self) -> None:
        if self.state.delay:
            await asyncio.sleep(self.state.delay)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        self.routes(app)
        return app

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json", headers=headers)


class Running:
    """``async with Running(app) as base:`` a real server on 127.0.0.1 with a free port."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # a hanging fake stops fast
        self.base = ""

    async def __aenter__(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
