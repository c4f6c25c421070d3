"""What every fake CRM shares: issued tokens, switches a test flips (expire, rate-limit, fail, delay,
malformed), the requests it saw, and a real aiohttp server on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hejcti.crm.base import CrmTransientError


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
    #: creates the CRM carries out whose answer is then lost, in order (``lose_next_create``)
    _lose_created: list[str] = field(default_factory=list)

    def lose_next_create(self, n: int = 1, how: str = "500") -> None:
        """The next ``n`` creates are stored, and then their answer is lost: ``"500"`` an error page instead
        (a proxy or the CRM failing after it acted), ``"drop"`` the connection closed before any answer."""
        if how not in ("500", "drop"):
            raise ValueError(f"lose_next_create: how is '500' or 'drop', not {how!r}")
        self._lose_created += [how] * n

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

    def created_answer(self, request: web.Request, answer: web.Response) -> web.Response:
        """The answer to a create the fake has already stored: ``answer``, or lost (``lose_next_create``)."""
        if not self.state._lose_created:
            return answer
        if self.state._lose_created.pop(0) == "drop":
            assert request.transport is not None
            request.transport.close()  # stored, and the answer never arrives
            return answer
        return web.Response(status=500, text="<html>upstream error</html>", content_type="text/html")

    async def slow(self) -> None:
        if self.state.delay:
            await asyncio.sleep(self.state.delay)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        self.routes(app)
        return app

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError


async def lost_create(state: FakeState, adapter: Any, record: Any, creds: Any, how: str = "500") -> dict[str, Any]:
    """``adapter.log_call(record)`` against a fake that stores the record and then loses the answer (``how`` as
    in ``lose_next_create``): the adapter must raise a transient error that says the CRM may have acted, and
    not send the create again. Returns the one record the fake stored."""
    before = len(state.created)
    state.lose_next_create(1, how)
    try:
        await adapter.log_call(record, creds)
    except CrmTransientError as e:
        assert e.maybe_applied is True, "a lost answer must count as a create that may have happened"
    else:
        raise AssertionError("log_call returned although its answer was lost")
    (created,) = state.created[before:]  # stored once, and not sent again by the adapter's own retries
    return created


def digits(v: Any) -> str:
    """The digits of a stored or searched value (any script's, as a CRM's search sees them); "" for None."""
    return "".join(ch for ch in str(v or "") if ch.isdigit())


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


def redirector(target: str, status: int, seen: list[str]) -> web.Application:
    """A CRM instance that sends every request on to ``target`` (same path and query)."""

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(status=status, headers={"Location": target + request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app
