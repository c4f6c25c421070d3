"""Incoming connections that cannot hold the server (CONTRACT §4): a request's header and its body each have
a deadline, an idle keep-alive connection is closed, and past a cap below the process's file limit a new
connection makes room by dropping the oldest one that is idle, still sending its request or a WebSocket not
yet authenticated (or, when every connection is busy, is refused). What was closed, and every "out of system
resource" of ``accept()``, is logged once per interval with counts, never once per connection.

aiohttp has no header or body timeout of its own: ``Runner`` is an ``AppRunner`` whose server makes
``GuardedHandler`` protocols, aiohttp's ``RequestHandler`` with one deadline timer per connection.
``client_address`` says who a request comes from, behind trusted proxies too; ``authenticating`` marks an
upgraded connection as droppable until its handler says it has authenticated.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_server
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from hejcti import logs
from hejcti.config import Network, Settings

log = logs.get("hejcti.connections")

#: file descriptors the process needs besides its HTTP connections: the database pools, the listener's
#: connection, the CRM and sipgate HTTP clients (aiohttp's connector limits), what one pass of asyncio's accept
#: loop takes before a refused connection is closed (the listen backlog), and the rest (log, pipes, epoll)
PG_EXTRA = 2 + 1 + 8  # ingest pool, listener, cancel requests in flight
HTTP_CLIENTS = 200 + 100
BACKLOG = 128
SPARE = 64
#: connections to look at for one to drop before a new one is refused
SCAN = 64
ACCEPT_EXHAUSTED = "socket.accept() out of system resource"


def peer_in(addr: str | None, networks: Sequence[Network]) -> bool:
    """Whether an address (IPv4, IPv6, IPv4-mapped IPv6, with or without a zone) lies in one of the networks."""
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.strip().split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks)


def client_address(request: web.BaseRequest, trusted: Sequence[Network]) -> str | None:
    """The socket peer; when that peer is a trusted proxy, the right-most X-Forwarded-For entry that is not."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    addr = peer[0] if peer else None
    if not trusted or not peer_in(addr, trusted):
        return addr
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not peer_in(hop, trusted):
            return hop
    return hops[0] if hops else addr


def connection_cap(settings: Settings) -> int:
    """``max_connections`` if set, else the file limit minus what the process needs besides its connections."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - (settings.pool_size + PG_EXTRA + HTTP_CLIENTS + BACKLOG + SPARE))


def raise_file_limit() -> int:
    """The soft limit on open files raised to the hard one (as Go's runtime does): a server that holds one
    socket per extension session should not stop at a shell's default of 1,024. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    body_timeout: float
    cap: int
    log_interval: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(header_timeout=settings.header_timeout_s, body_timeout=settings.body_timeout_s,
                   cap=connection_cap(settings), log_interval=settings.connection_log_interval_s)


class Guard:
    """The open connections, oldest first, and the counts of what was closed or refused since the last log."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: OrderedDict[GuardedHandler, None] = OrderedDict()
        self._counts: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    def admit(self, handler: GuardedHandler) -> bool:
        if len(self.open) >= self.limits.cap:
            victim = self._victim()
            if victim is None:
                self.count("refused")
                return False
            self.count("evicted")
            victim.drop()
        self.open[handler] = None
        return True

    def _victim(self) -> GuardedHandler | None:
        """The oldest connection that is idle, still sending its request or not yet authenticated; busy ones
        met on the way move to the back, so that the next search does not walk past them again."""
        for _ in range(min(SCAN, len(self.open))):
            handler = next(iter(self.open))
            if handler.waiting:
                return handler
            self.open.move_to_end(handler)
        return None

    def forget(self, handler: GuardedHandler) -> None:
        self.open.pop(handler, None)

    def count(self, what: str) -> None:
        self._counts[what] += 1
        if self._report is None:
            self._report = asyncio.get_running_loop().call_later(self.limits.log_interval, self.report)

    def report(self) -> None:
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        level = log.warning if counts.keys() - {"header_timeout", "body_timeout"} else log.info
        level("http.connections.closed", **counts, open=len(self.open), cap=self.limits.cap,
              interval_s=self.limits.log_interval)

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any],
                      previous: Any = None) -> None:
        """asyncio's exception handler: a failed ``accept()`` is counted; anything else goes on as before."""
        if str(context.get("message", "")).startswith(ACCEPT_EXHAUSTED):
            self.count("accept_failed")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)


_HEADER, _BODY, _NONE = "header", "body", None


class GuardedHandler(RequestHandler):
    """aiohttp's protocol with a deadline for the request header (from the connection's start, or from the
    first byte of a later request on a kept-alive connection) and one for the body (from the end of the
    header). One timer per connection, moved forward rather than replaced. Upgraded connections (WebSockets)
    are left to their handler, which has deadlines of its own; until it has authenticated one
    (``authenticating``), it counts as waiting: an attacker holding cap-many upgrades keeps nobody out."""

    __slots__ = ("_guard", "_phase", "_deadline", "_timer", "_body", "_admitted", "authenticating")

    def __init__(self, manager: web_server.Server, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._phase: str | None = _NONE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        self._admitted = False
        self.authenticating = False

    @property
    def waiting(self) -> bool:
        """Idle between requests, still sending the header or the body of one, or upgraded and not yet
        authenticated."""
        if self.authenticating:
            return True
        if self._phase is _HEADER or (self._phase is _BODY and self._body is not None and not self._body.is_eof()):
            return True
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            transport.abort()
            return
        self._admitted = True
        super().connection_made(transport)
        self._expect(_HEADER, self._guard.limits.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._guard.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._upgraded or self._payload_parser is not None:
            super().data_received(data)
            return
        if self._phase is _NONE:
            waiter = self._waiter
            if waiter is not None and not waiter.done():  # idle until now: a new request's first bytes
                self._expect(_HEADER, self._guard.limits.header_timeout)
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self._messages:  # a header is complete
            body = self._messages[-1][1]
            if body.is_eof():
                self._phase = _NONE
            else:
                self._body = body
                self._expect(_BODY, self._guard.limits.body_timeout)

    def _expect(self, phase: str, timeout: float) -> None:
        self._phase = phase
        self._deadline = self._loop.time() + timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        phase = self._phase
        if phase is _BODY and self._body is not None and self._body.is_eof():
            phase = self._phase = _NONE
            self._body = None
        if phase is _NONE or self.transport is None:
            return
        if self._loop.time() < self._deadline:  # moved on since this timer was set
            self._timer = self._loop.call_at(self._deadline, self._on_deadline)
            return
        self._guard.count(f"{phase}_timeout")
        self.drop()

    def drop(self) -> None:
        self._guard.forget(self)
        self.force_close()


def authenticating(request: web.BaseRequest, pending: bool) -> None:
    """Mark the upgraded connection of ``request`` as not yet authenticated (``pending``: dropped like an idle
    one to make room past the cap) or authenticated (busy: never dropped)."""
    handler = request.protocol
    if isinstance(handler, GuardedHandler):
        handler.authenticating = pending


class _Server(web_server.Server):
    """aiohttp's server whose protocol is ``GuardedHandler``."""

    def __init__(self, guard: Guard, plain: web_server.Server) -> None:
        super().__init__(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, loop=plain._loop,  # noqa: SLF001
                         **plain._kwargs)  # noqa: SLF001
        self.guard = guard

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, self.guard, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` for ``hejcti serve`` and the test harness alike: every connection guarded."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_timeout_s, **kwargs)
        self.guard = Guard(Limits.of(settings))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None
        self._handler: Any = None

    async def setup(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._previous = previous = loop.get_exception_handler()
        self._handler = lambda lp, ctx: self.guard.on_loop_error(lp, ctx, previous)  # noqa: E731
        loop.set_exception_handler(self._handler)
        await super().setup()

    async def _make_server(self) -> web_server.Server:
        return _Server(self.guard, await super()._make_server())

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self.guard.report()
            if self._loop is not None and self._loop.get_exception_handler() is self._handler:
                self._loop.set_exception_handler(self._previous)
