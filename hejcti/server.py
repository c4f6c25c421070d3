"""``hejcti serve``: migrate, serve until SIGINT/SIGTERM, finish in-flight work, stop the embedded database."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hejcti import connections, db, logs, runtime
from hejcti.app import Role, create_app
from hejcti.config import Settings

log = logs.get("hejcti.server")


async def serve(settings: Settings, role: Role = "all", ready: asyncio.Event | None = None,
                on_started: Callable[[dict[str, Any]], None] | None = None) -> None:
    if not settings.embedded:
        settings.resolved_secret_key()  # required with DATABASE_URL: refuse to start without it
    # the port first: a busy one is one line, before the database, the pools or the listener start (and log)
    sock = listen_socket(settings.host, settings.port)
    embedded = db.Embedded(settings.data_dir) if settings.embedded else None
    try:
        url = await asyncio.to_thread(db.database_url, settings, embedded)
        await db.migrate(url)
        settings.resolved_secret_key()  # embedded: generated once into DATA_DIR
        app = create_app(settings, url, role)
        connections.raise_file_limit()
        runner = connections.Runner(app, settings, handle_signals=False, shutdown_timeout=10, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.port
        if settings.port == 0:  # the base URL (printed, handed to sipgate for onAnswer/onHangup) names the bound port
            settings.port = port
        runtime.tune_gc()
        log.info("server.started", host=settings.host, port=port, role=role, max_connections=runner.guard.limits.cap,
                 database="embedded" if embedded else "shared", public_url=settings.base_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        if on_started is not None:
            on_started({"url": f"http://{settings.host}:{port}", "host": settings.host, "port": port, "role": role,
                        "database": "embedded" if embedded else "shared", "public_url": settings.base_url})
        await stop.wait()
        # already stopping: a second SIGTERM (a supervisor repeating itself) must not cut the drain short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("server.stopping")
        await runner.cleanup()
        log.info("server.stopped")
    finally:
        sock.close()
        if embedded is not None:
            embedded.stop()


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on HOST:PORT (its first address), or an OSError that says which and why in one line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        reason = (e.strerror or str(e)).lower()
        raise OSError(e.errno, f"error while attempting to bind on address {address[:2]!r}: {reason}") from None
    sock.setblocking(False)
    return sock
