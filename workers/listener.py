"""The one LISTEN connection of a process: a dedicated connection (never a pooled one), a liveness probe,
reconnect with backoff, and catch-up by event id, so a lost notification costs one poll interval, never an
event. Events go to the fan-out's local queue, each once per process.

Ids are handed out when a transaction starts but become visible when it commits, so a smaller id can show
up after a larger one. The listener keeps the ids between what it has seen as gaps for a minute and asks for
them (and for anything above the highest seen id) on every poll.

The same connection listens for revocations (a user's new token, a user's removal, an account's deletion;
CONTRACT §5) and has the hub close the sessions they name. A revocation sent while the connection was down is
lost, so every (re)connect also sweeps this process's sessions against the users table in one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import asyncpg

from hejcti import db, logs
from hejcti.metrics import Metrics
from hejcti.models import Event
from hejcti.sessions import Hub, Revocation
from hejcti.store import q
from hejcti.tasks import cancel_and_wait

log = logs.get("workers.listener")
CHANNEL = "hejcti_events"
REVOKED = "hejcti_revoked"  # fed by triggers on users and accounts (schema.sql)
PAGE = 5000  # rows per catch-up query; a full page is followed by the next at once
GAP_SPAN = 10_000  # how far below a newly seen id the ids not yet seen are tracked as gaps


class Listener:
    def __init__(self, url: str, deliver: Callable[[Event], None], metrics: Metrics, *,
                 poll_interval: float = 2.0, gap_ttl: float = 60.0, hub: Hub | None = None) -> None:
        self._url = url
        self._hub = hub
        self._deliver = deliver
        self._metrics = metrics
        self._poll = poll_interval
        self._gap_ttl = gap_ttl
        self.high = -1  # highest id seen; -1 until the first connect reads the current maximum
        self._gaps: dict[int, float] = {}
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.conn: asyncpg.Connection | None = None
        self._down_since = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="listener")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self._close()

    @property
    def backend_pid(self) -> int | None:
        return self.conn.get_server_pid() if self.conn is not None and not self.conn.is_closed() else None

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._connect()
                backoff = 0.2
                await self._loop()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("listener.lost", error=type(e).__name__, retry_in=round(backoff, 2))
            except Exception as e:  # asyncpg's InternalClientError and the like: reconnect, never go deaf
                log.error("listener.failed", error=type(e).__name__, detail=str(e)[:200], retry_in=round(backoff, 2))
            self.connected.clear()
            await self._close()
            self._metrics.listener_reconnects.inc()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> None:
        conn = await db.connect(self._url)
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        if self._hub is not None:
            await conn.add_listener(REVOKED, self._on_revoked)
        self.conn = conn
        if self.high < 0:
            self.high = await conn.fetchval(q("max_event_id"))
        else:
            await self._catch_up()  # what happened while we were away
        await self._sweep()  # revocations sent while we were away
        self.connected.set()
        log.info("listener.connected", backend=conn.get_server_pid(), high=self.high)

    async def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await conn.close()
        elif conn is not None:
            conn.terminate()
        if self.connected.is_set() or conn is not None:
            self._down_since = time.monotonic()

    async def _loop(self) -> None:
        assert self.conn is not None
        while True:
            lost = asyncio.ensure_future(self._lost.wait())
            woke = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({lost, woke}, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                woke.cancel()
            if self._lost.is_set() or self.conn.is_closed():
                raise ConnectionError("listener connection closed")
            self._wake.clear()
            # the poll doubles as the liveness probe: a dead connection fails here within the timeout
            async with asyncio.timeout(max(5.0, self._poll * 2)):
                await self._catch_up()

    async def _catch_up(self) -> None:
        assert self.conn is not None
        now = time.monotonic()
        for gid in [g for g, t in self._gaps.items() if now - t > self._gap_ttl]:
            del self._gaps[gid]  # a rolled-back insert or a repeated delivery left the id unused
        window = max(120.0, now - self._down_since + 30.0)
        while True:  # each full page moves ``high`` up (or clears gaps), so this ends
            rows = await self.conn.fetch(q("events_after"), self.high, list(self._gaps), window, PAGE)
            for row in rows:
                self._take(Event.from_mapping(row), "poll")
            if len(rows) < PAGE:
                return

    async def _sweep(self) -> None:
        """Close the sessions whose user row is gone or whose token was replaced (their account gone: 4503)."""
        live = self._hub.sweep() if self._hub is not None else []
        if not live or self.conn is None:
            return
        users, hashes, accounts = (list(col) for col in zip(*live, strict=True))
        rows = await self.conn.fetch(q("sessions_revoked"), users, hashes, accounts)
        for row in rows:
            self._revoke(Revocation.of_sweep(row))
        log.info("listener.swept", sessions=len(live), revoked=len(rows))

    def _on_revoked(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            m = json.loads(payload)
            r = Revocation(user_id=m.get("user_id"), account_id=m.get("account_id"),
                           token_hash=bytes.fromhex(m["token_hash"]) if m.get("token_hash") else None)
        except (ValueError, TypeError, AttributeError):
            log.warning("listener.revocation.unreadable")
            return
        if r.user_id is None and r.account_id is None:
            return
        self._revoke(r)

    def _revoke(self, r: Revocation) -> None:
        assert self._hub is not None
        n = self._hub.revoke(r)
        log.info("listener.revocation", account=r.account_id, user_id=r.user_id, sessions=n)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            m = json.loads(payload)
        except ValueError:
            return
        if "event" not in m:  # too large for a notification: read it on the next poll
            self._wake.set()
            return
        self._take(Event.from_mapping(m), "notify")

    def _take(self, ev: Event, source: str) -> None:
        if ev.id in self._seen:
            return
        self._seen[ev.id] = None
        if len(self._seen) > 200_000:
            self._seen.popitem(last=False)
        self._gaps.pop(ev.id, None)
        if source == "notify" and self.high >= 0 and ev.id - self.high > GAP_SPAN:
            # too far ahead to track what lies between as gaps: deliver it, and let the poll walk up to it
            self._wake.set()
        elif ev.id > self.high + 1 and self.high >= 0:
            now = time.monotonic()
            for gid in range(max(self.high + 1, ev.id - GAP_SPAN), ev.id):
                if gid not in self._seen:
                    self._gaps.setdefault(gid, now)
            self.high = max(self.high, ev.id)
        else:
            self.high = max(self.high, ev.id)
        self._metrics.events.labels(source).inc()
        self._deliver(ev)
