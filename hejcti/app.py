"""``create_app(settings, database_url)``: the one factory. Every resource (pool, HTTP client, ingest,
listener, workers, reaper, call-record jobs) is opened and closed through ``cleanup_ctx``; open WebSockets
are closed with 1001 in ``on_shutdown``.

Roles: ``web`` takes webhooks; ``worker`` serves extension sessions and runs the listener, fan-out,
reaper and call-record jobs; ``all`` (the default) does both. Health and metrics are served by every role.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import asyncpg
from aiohttp import web

from hejcti import db, logs, portal, signin
from hejcti.actions import Actions
from hejcti.config import Settings
from hejcti.connections import client_address, peer_in
from hejcti.crm_oauth import CrmOAuth
from hejcti.lookup import Accounts, Lookups
from hejcti.metrics import Metrics
from hejcti.portal.presence import Presence
from hejcti.sessions import Hub
from hejcti.sipgate_live import SipgateAccounts
from hejcti.store import UNAVAILABLE, Store
from hejcti.websession import WebSessions
from hejcti.ws import WebSocketHandler, close_sessions
from webhooks.handler import WebhookHandler
from webhooks.ingest import Ingest
from workers.fanout import Fanout
from workers.listener import Listener
from workers.reaper import Reaper
from workers.records import Records

log = logs.get("hejcti.app")
Role = Literal["all", "web", "worker"]

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
POOL = web.AppKey("pool", asyncpg.Pool)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
HTTP = web.AppKey("http", aiohttp.ClientSession)
INGEST = web.AppKey("ingest", Ingest)
INGEST_POOL = web.AppKey("ingest_pool", asyncpg.Pool)
FANOUT = web.AppKey("fanout", Fanout)
LISTENER = web.AppKey("listener", Listener)
REAPER = web.AppKey("reaper", Reaper)
RECORDS = web.AppKey("records", Records)
LOOKUPS = web.AppKey("lookups", Lookups)
WS = web.AppKey("ws", WebSocketHandler)
SIPGATE = web.AppKey("sipgate", SipgateAccounts)
WEB_SESSIONS = web.AppKey("web_sessions", WebSessions)
PRESENCE = web.AppKey("presence", Presence)


def create_app(settings: Settings, database_url: str, role: Role = "all") -> web.Application:
    app = web.Application(client_max_size=64 * 1024 + 1)
    app[SETTINGS] = settings
    app[METRICS] = metrics = Metrics()
    app[HUB] = hub = Hub(metrics)
    app[PRESENCE] = presence = Presence(hub, interval=settings.presence_interval_s)  # open sessions, all processes
    serve_web = role in ("all", "web")
    serve_worker = role in ("all", "worker")

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await db.create_pool(database_url, min_size=2, max_size=settings.pool_size)
        app[POOL] = pool
        app[STORE] = Store(pool)
        yield
        async with asyncio.timeout(10):
            await pool.close()

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        app[HTTP] = session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), headers={"User-Agent": "hejcti"},
            connector=aiohttp.TCPConnector(limit=200, ttl_dns_cache=300))
        yield
        await session.close()

    async def ingest_ctx(app: web.Application) -> AsyncIterator[None]:
        # the hot path has connections of its own: nothing else can make a webhook wait for the pool
        app[INGEST_POOL] = pool = await db.create_pool(database_url, min_size=1, max_size=2, stateless=True)
        app[INGEST] = ingest = Ingest(pool, metrics, deadline=settings.ingest_deadline_s)
        ingest.start()
        yield
        await ingest.stop()
        async with asyncio.timeout(10):
            await pool.close()

    async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        accounts = Accounts(store)
        app[LOOKUPS] = lookups = Lookups(http=app[HTTP], metrics=metrics,
                                         deadline_s=settings.lookup_deadline_ms / 1000,
                                         cache_ttl_s=settings.cache_ttl_s,
                                         credentials_wait_s=settings.credentials_wait_s)
        app[FANOUT] = fanout = Fanout(hub=hub, store=store, accounts=accounts, lookups=lookups, metrics=metrics,
                                      deadline_s=settings.lookup_deadline_ms / 1000, workers=settings.workers,
                                      resume_window_s=settings.resume_window_s)
        app[RECORDS] = records = Records(pool=app[POOL], hub=hub, accounts=accounts, lookups=lookups,
                                         metrics=metrics, credentials_wait_s=settings.credentials_wait_s)
        app[WS].replay = fanout.replay
        app[WS].note = records.add_note
        app[WS].on_credentials = lambda _session: records.wake()
        app[WS].actions = Actions(sipgate=app[SIPGATE], store=store, settings=settings)
        app[LISTENER] = listener = Listener(database_url, _deliver(fanout, records), metrics,
                                            poll_interval=settings.poll_interval_s, hub=hub)
        app[REAPER] = reaper = Reaper(app[POOL], interval=settings.reaper_interval_s,
                                      ring_timeout_s=settings.ring_timeout_s,
                                      talk_timeout_s=settings.talk_timeout_s,
                                      retention_days=settings.retention_days)
        fanout.start()
        listener.start()
        reaper.start()
        records.start()
        yield
        await listener.stop()
        await fanout.drain()
        await records.stop()
        await reaper.stop()
        await lookups.close()

    async def sipgate_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SIPGATE] = SipgateAccounts(app[STORE], settings, app[HTTP])  # the process's one (live-data cache)
        yield

    app.cleanup_ctx.append(pool_ctx)
    app.cleanup_ctx.append(http_ctx)
    app.cleanup_ctx.append(sipgate_ctx)
    if serve_web:
        app.cleanup_ctx.append(ingest_ctx)
        app.router.add_post("/webhooks/sipgate/{token}", _lazy_webhook(settings, metrics))
    if serve_worker:
        app[WS] = ws = WebSocketHandler(settings=settings, store=_LazyStore(app), hub=hub, metrics=metrics)
        app.cleanup_ctx.append(worker_ctx)

        async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
            presence.start(app[STORE])
            yield
            await presence.stop(app[STORE])

        app.cleanup_ctx.append(presence_ctx)
        app.router.add_get("/ws", ws.__call__)

        async def on_shutdown(app: web.Application) -> None:
            await close_sessions(hub, ws)

        app.on_shutdown.append(on_shutdown)

    app[READINESS] = readiness = Readiness(settings.readyz_timeout_s)
    app.on_shutdown.append(readiness.close)
    app[WEB_SESSIONS] = web_sessions = WebSessions(settings)
    signin.setup(app, signin.SignIn(settings, lambda: app[STORE], lambda: app[SIPGATE], web_sessions))
    CrmOAuth(settings, lambda: app[HTTP], lambda: app[STORE]).register(app)  # the extension's CRM sign-in (§10)
    portal.setup(app, web_sessions)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", _metrics_view(settings, metrics))
    return app


def _deliver(fanout: Fanout, records: Records):  # type: ignore[no-untyped-def]
    def deliver(ev):  # type: ignore[no-untyped-def]
        fanout.submit(ev)
        records.notice(ev)

    return deliver


def _lazy_webhook(settings: Settings, metrics: Metrics):  # type: ignore[no-untyped-def]
    """The handler needs the ingest, which exists once the app has started."""
    handler: list[WebhookHandler] = []

    async def view(request: web.Request) -> web.Response:
        if not handler:
            handler.append(WebhookHandler(settings, request.app[INGEST], metrics))
        return await handler[0](request)

    return view


class _LazyStore(Store):
    """The WebSocket handler is built before the pool exists; it reads the app's store when it runs."""

    def __init__(self, app: web.Application) -> None:  # noqa: D107
        self._app = app

    @property  # type: ignore[override]
    def pool(self) -> asyncpg.Pool:
        return self._app[POOL]


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class Readiness:
    """``/readyz``: one probe of the database at a time, awaited at most ``timeout``. A probe of a server that
    does not answer is left running, not cancelled: cancelling an asyncpg query sends a CancelRequest through the
    same server, and the pool's release waits for it up to the pool's command timeout (10 s), which is how a 1 s
    timeout took 11 s. A /readyz that finds the probe still running waits for that one, never starts a second."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._probe: asyncio.Task[bool] | None = None

    async def ready(self, pool: asyncpg.Pool) -> bool:
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.create_task(self._select(pool), name="readyz")
        done, _ = await asyncio.wait({probe}, timeout=self.timeout)
        return bool(done) and not probe.cancelled() and probe.result()

    @staticmethod
    async def _select(pool: asyncpg.Pool) -> bool:
        try:
            async with asyncio.timeout(30):
                await pool.fetchval("SELECT 1")
        except (*UNAVAILABLE, asyncpg.PostgresError):
            return False
        return True

    async def close(self, _: web.Application | None = None) -> None:
        if self._probe is not None:
            self._probe.cancel()


READINESS = web.AppKey("readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    if not await request.app[READINESS].ready(request.app[POOL]):
        return web.json_response({"status": "unavailable", "database": "down"}, status=503)
    return web.json_response({"status": "ready", "database": "up"})


def _metrics_view(settings: Settings, metrics: Metrics):  # type: ignore[no-untyped-def]
    """``/metrics`` for peers in ``METRICS_ALLOWED_IPS`` (loopback by default; empty: anyone), else 403."""
    allowed, trusted = settings.metrics_networks, settings.trusted_networks

    async def view(request: web.Request) -> web.Response:
        if allowed and not peer_in(addr := client_address(request, trusted), allowed):
            log.warning("metrics.forbidden", peer=addr)
            return web.Response(status=403, text="peer not allowed\n")
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    return view
