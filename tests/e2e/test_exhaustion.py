"""Idle, slow and half-sent connections cannot hold the server (CONTRACT §4, issue 8 point 2): real sockets on
127.0.0.1 against the real app, with short deadlines and a small cap set for the test."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import resource
from urllib.parse import urlsplit

import aiohttp
from structlog.testing import capture_logs

from hejcti.config import Settings
from hejcti.connections import connection_cap
from tests.e2e.test_cli import env_for, hejcti, one_json
from tests.e2e.test_fanout import new_call
from tests.e2e.test_processes import Server

SHORT = {"header_timeout_s": 0.5, "body_timeout_s": 0.5, "keepalive_timeout_s": 1.0}
CLIENT_WAIT = 10.0  # generous: a connection the server never closes fails the test instead of hanging it

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(base: str) -> Conn:
    url = urlsplit(base)
    return await asyncio.open_connection(url.hostname, url.port)


async def closed_by_server(conn: Conn) -> None:
    """Reads (and ignores) what the server sends until it closes the connection."""
    reader, writer = conn
    try:
        async with asyncio.timeout(CLIENT_WAIT):
            while await reader.read(4096):
                pass
    except ConnectionResetError:
        pass
    finally:
        writer.close()


async def trickle(writer: asyncio.StreamWriter) -> None:
    """A body one byte at a time, until the server hangs up."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)


async def answers(http: aiohttp.ClientSession, base: str, webhook_url: str, call_id: str) -> None:
    """/healthz and a webhook answer as usual."""
    timeout = aiohttp.ClientTimeout(total=CLIENT_WAIT)
    async with http.get(f"{base}/healthz", timeout=timeout) as r:
        assert r.status == 200
    async with http.post(webhook_url, data=new_call(call_id), timeout=timeout,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 200, await r.text()


async def test_idle_half_sent_and_slow_connections_are_closed_while_webhooks_answer(make_harness):
    h = await make_harness(**SHORT)
    acc = await h.account()
    path = urlsplit(acc["url"]).path
    idle = [await connect(h.base) for _ in range(5)]
    half_header = [await connect(h.base) for _ in range(5)]
    for _, w in half_header:
        w.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-".encode())
    slow_body = [await connect(h.base) for _ in range(5)]
    for _, w in slow_body:
        w.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 60000\r\n\r\nevent=newCall".encode())
    trickles = [asyncio.create_task(trickle(w)) for _, w in slow_body]
    kept_alive = await connect(h.base)  # one request answered, then nothing: the keep-alive idle timeout
    kept_alive[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await kept_alive[0].readline()).startswith(b"HTTP/1.1 200")
    try:
        await answers(h.http, h.base, acc["url"], "CEXH0001")
        await asyncio.gather(*(closed_by_server(c) for c in [*idle, *half_header, *slow_body, kept_alive]))
        await answers(h.http, h.base, acc["url"], "CEXH0002")
    finally:
        for t in trickles:
            t.cancel()
        await asyncio.gather(*trickles, return_exceptions=True)
    assert await h.pool.fetchval("SELECT count(*) FROM call_events") == 2  # the slow bodies stored nothing


async def test_past_the_cap_the_oldest_idle_connections_make_room_and_it_is_logged_once(make_harness):
    h = await make_harness(max_connections=16, header_timeout_s=60, connection_log_interval_s=0.5)
    acc = await h.account()
    with capture_logs() as logs:
        idle = [await connect(h.base) for _ in range(40)]
        await answers(h.http, h.base, acc["url"], "CCAP0001")
        await asyncio.gather(*(closed_by_server(c) for c in idle[:24]))  # the oldest, to stay at 16
        await answers(h.http, h.base, acc["url"], "CCAP0002")
        async with asyncio.timeout(CLIENT_WAIT):
            while not [e for e in logs if e["event"] == "http.connections.closed"]:
                await asyncio.sleep(0.1)
    for _, w in idle[24:]:
        w.close()
    events = [e for e in logs if e["event"] == "http.connections.closed"]
    evicted = sum(e.get("evicted", 0) for e in events)
    assert evicted >= 24 and len(events) < evicted  # counted, not one line per connection
    assert events[0]["cap"] == 16 and events[0]["log_level"] == "warning"


async def test_when_every_connection_is_busy_a_new_one_is_refused(make_harness):
    h = await make_harness(max_connections=3, connection_log_interval_s=0.2)
    acc = await h.account()
    tokens = [await h.user(acc["account_id"], f"w{i}") for i in range(3)]
    sessions = [await h.connect(t) for t in tokens]  # authenticated sessions are busy, never dropped
    with capture_logs() as logs:
        await closed_by_server(await connect(h.base))
        async with asyncio.timeout(CLIENT_WAIT):
            while not [e for e in logs if e["event"] == "http.connections.closed"]:
                await asyncio.sleep(0.05)
    assert [e.get("refused") for e in logs if e["event"] == "http.connections.closed"] == [1]
    for s in sessions:
        assert (await s.request({"type": "ping", "id": 1}))["type"] == "pong"


async def test_accept_out_of_resources_is_counted_not_logged_per_accept(make_harness, caplog):
    h = await make_harness(connection_log_interval_s=0.2)
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        for _ in range(1000):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(errno.EMFILE, "Too many open files")})
        async with asyncio.timeout(CLIENT_WAIT):
            while not [e for e in logs if e["event"] == "http.connections.closed"]:
                await asyncio.sleep(0.05)
    assert [e["accept_failed"] for e in logs if e["event"] == "http.connections.closed"] == [1000]
    assert "out of system resource" not in caplog.text
    async with h.http.get(f"{h.base}/healthz") as r:
        assert r.status == 200


def test_the_default_cap_stays_below_the_open_file_limit():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = connection_cap(Settings(pool_size=10))
    assert 0 < cap < soft - 10 - 3 - 300  # room for both pools, the listener and the CRM clients
    assert connection_cap(Settings(max_connections=7)) == 7


def _file_limit(n: int):  # type: ignore[no-untyped-def]
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return preexec


async def test_a_serve_process_never_reaches_its_file_limit(database_url, tmp_path):
    """``hejcti serve`` with 1,024 files: 1,100 idle connections never take it to the limit (its cap derives
    from it), /healthz and webhooks keep answering, and nothing is logged once per connection."""
    env = env_for(database_url, tmp_path, HEJCTI_HEADER_TIMEOUT_S="60", HEJCTI_CONNECTION_LOG_INTERVAL_S="0.5")
    acc = one_json(await hejcti(env, "account", "create", "--name", "F", "--crm", "hubspot", "--no-log-calls",
                                "--json"))
    server = Server(env, tmp_path / "serve.log", role="web", preexec_fn=_file_limit(1024))
    conns: list[Conn] = []
    try:
        async with aiohttp.ClientSession() as http:
            await server.ready(http)
            for _ in range(1100):
                conns.append(await connect(server.base))
            await answers(http, server.base, f"{server.base}/webhooks/sipgate/{acc['webhook_token']}", "CLIM0001")
    finally:
        for _, w in conns:
            w.close()
        assert server.stop() == 0
    text = server.log.read_text()
    assert "out of system resource" not in text and "Too many open files" not in text, text[-2000:]
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    closed = [e for e in events if e["event"] == "http.connections.closed"]
    assert closed and sum(e.get("evicted", 0) for e in closed) >= 1100 - closed[0]["cap"]
    assert len(closed) < 20, closed  # once per interval, with counts
