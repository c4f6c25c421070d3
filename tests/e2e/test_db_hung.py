"""A PostgreSQL that hangs (SIGSTOP) rather than goes away (issue 8 point 7, CONTRACT §4): webhooks answer 503
in time, /readyz within its timeout, and once the database runs again the server recovers. The cluster is the
test's own, so stopping it holds up no other test."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from tests.e2e.test_fanout import new_call
from tests.e2e.test_faults import own_cluster  # noqa: F401  (fixture)
from tests.harness import FORM, Harness, make_settings

CLIENT_WAIT = aiohttp.ClientTimeout(total=10)  # generous: a server that hangs fails the test instead of hanging it


def cluster_pids(pgdata: Path) -> list[int]:
    """The postmaster, then every process it started (background workers and the backends)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


async def post(h: Harness, url: str, body: str) -> int:
    async with h.http.post(url, data=body, headers=FORM, timeout=CLIENT_WAIT) as r:
        return r.status


async def readyz(h: Harness) -> int:
    async with h.http.get(f"{h.base}/readyz", timeout=CLIENT_WAIT) as r:
        return r.status


async def test_a_hung_database_gets_webhooks_503_and_readyz_503_then_recovers(own_cluster, tmp_path):  # noqa: F811
    h = Harness(make_settings(own_cluster.url, tmp_path), own_cluster.url)
    await h.start()
    try:
        acc = await h.account(contacts=[("c1", "Julia", "", "+4915791234567", "", "")])
        session = await h.connect(await h.user(acc["account_id"], "w0"))
        assert await post(h, acc["url"], new_call("CHUNG000")) == 200
        await session.expect("call.ringing", call_id="CHUNG000")

        stopped: list[int] = []
        try:
            for pid in cluster_pids(Path(own_cluster.server.pgdata)):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            answers = await asyncio.gather(*(post(h, acc["url"], new_call(f"CHUNG{i:03d}")) for i in range(1, 5)),
                                           readyz(h), readyz(h))
            later = await post(h, acc["url"], new_call("CHUNG005"))  # behind the commits still waiting
            ready_again = await readyz(h)
        finally:
            for pid in reversed(stopped):
                os.kill(pid, signal.SIGCONT)
        assert answers == [503] * 6
        assert (later, ready_again) == (503, 503)

        for _ in range(40):  # the server recovers: the next webhook gets its 200, and it pops
            if await post(h, acc["url"], new_call("CHUNG100")) == 200:
                break
            await asyncio.sleep(0.25)
        await session.expect("call.ringing", call_id="CHUNG100", timeout=10)
        assert await readyz(h) == 200
        # a push answered 503 may have been committed after all: sipgate's retry of it is a repeat, stored once
        assert await post(h, acc["url"], new_call("CHUNG001")) == 200
        assert await h.pool.fetchval("SELECT count(*) FROM call_events WHERE call_id = 'CHUNG001'") == 1
    finally:
        await h.stop()
