"""Faults an operator meets: PostgreSQL restarting under traffic, a process killed, a SIGTERM mid-traffic."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
from pathlib import Path

import aiohttp
import pytest

from hejcti import db
from hejcti.app import LISTENER
from tests.e2e.test_cli import env_for, hejcti, one_json
from tests.e2e.test_fanout import new_call
from tests.e2e.test_processes import Server
from tests.harness import Harness, make_settings


class OwnCluster:
    """A PostgreSQL of this test's own, so it can be stopped and started without touching the others."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hejcti-fault-pg-"))
        self.embedded = db.Embedded(self.dir)
        self.url = self.embedded.start()
        self.server = self.embedded._server  # noqa: SLF001

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.embedded.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_cluster():
    cluster = OwnCluster()
    yield cluster
    cluster.close()


async def test_postgres_restart_during_traffic(own_cluster, tmp_path):
    h = Harness(make_settings(own_cluster.url, tmp_path, poll_interval_s=0.5), own_cluster.url)
    await h.start()
    try:
        acc = await h.account(contacts=[("c1", "Julia", "", "+4915791234567", "", "")])
        rep = await h.connect(await h.user(acc["account_id"], "w0"))
        statuses: dict[str, int] = {}
        ready: list[int] = []

        async def traffic(n: int) -> None:
            for i in range(n):
                cid = f"CALLR{i:04d}"
                statuses[cid] = (await h.post(acc["url"], new_call(cid)))[0]
                async with h.http.get(f"{h.base}/readyz") as r:
                    ready.append(r.status)
                await asyncio.sleep(0.02)

        sender = asyncio.create_task(traffic(150))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_cluster.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(own_cluster.start)
        await sender

        codes = set(statuses.values())
        assert codes <= {200, 503}, codes  # never a 500, never a hang
        assert 503 in codes and 503 in ready  # the outage was seen, and /readyz flipped
        assert statuses[max(statuses)] == 200 and ready[-1] == 200  # and recovered without a restart
        accepted = {cid for cid, code in statuses.items() if code == 200}
        popped: set[str] = set()
        while not accepted <= popped:
            popped.add((await rep.expect("call.ringing", timeout=15))["call_id"])
        await asyncio.wait_for(h.app[LISTENER].connected.wait(), 10)
        stored = {r["call_id"] for r in await h.pool.fetch("SELECT call_id FROM call_events")}
        assert accepted <= stored  # every push that got a 200 is stored
    finally:
        await h.stop()


async def test_one_of_two_processes_killed(database_url, tmp_path):
    """SIGKILL one of two processes during traffic to both: its session reconnects to the other and resumes,
    and every webhook either process answered 200 reaches the extension."""
    env = env_for(database_url, tmp_path)
    csv = tmp_path / "c.csv"
    csv.write_text("id,name,company,phone,email,url\nc1,Julia,ACME,+4915791234567,,\n")
    aid = one_json(await hejcti(env, "account", "create", "--name", "A", "--crm", "directory", "--crm-instance",
                                str(csv), "--json"))["account_id"]
    token = one_json(await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--json"))["token"]
    webhook = one_json(await hejcti(env, "account", "show", aid, "--json"))["webhook_url"].split("/webhooks")[1]
    a, b = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")
    try:
        async with aiohttp.ClientSession() as http:
            await a.ready(http)
            await b.ready(http)
            seen: dict[str, int] = {}  # call id -> seq of its ringing

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        m = json.loads(msg.data)
                        if m["type"] == "call.ringing":
                            seen[m["call_id"]] = m["seq"]

            accepted: dict[str, str] = {}  # call id -> the process that answered 200

            async def traffic(n: int) -> None:
                for i in range(n):
                    server = (a, b)[i % 2]
                    cid = f"CALLK{i:03d}"
                    try:
                        async with http.post(server.base + "/webhooks" + webhook, data=new_call(cid)) as r:
                            if r.status == 200:
                                accepted[cid] = "ab"[i % 2]
                    except aiohttp.ClientError:
                        pass  # the killed process: sipgate would see a failed delivery
                    await asyncio.sleep(0.02)

            async with http.ws_connect(f"{b.base}/ws") as ws:
                await ws.send_json({"type": "auth", "token": token})
                assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
                reader = asyncio.create_task(read(ws))
                sender = asyncio.create_task(traffic(60))
                while len(accepted) < 10:
                    await asyncio.sleep(0.01)
                b.proc.send_signal(signal.SIGKILL)
                await asyncio.wait_for(reader, 10)  # the socket drops with the process
            last_seq = max(seen.values(), default=0)
            async with http.ws_connect(f"{a.base}/ws") as ws:  # the extension reconnects to the survivor
                await ws.send_json({"type": "auth", "token": token, "resume": last_seq})
                assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
                reader = asyncio.create_task(read(ws))
                await sender
                for _ in range(300):
                    if set(accepted) <= set(seen):
                        break
                    await asyncio.sleep(0.05)
                reader.cancel()
            assert "b" in accepted.values() and "a" in accepted.values()  # both took webhooks before the kill
            assert set(accepted) <= set(seen), sorted(set(accepted) - set(seen))
    finally:
        a.stop()
        b.stop()


async def test_sigterm_answers_in_flight_webhooks(database_url, tmp_path):
    env = env_for(database_url, tmp_path)
    aid = one_json(await hejcti(env, "account", "create", "--name", "A", "--crm", "hubspot", "--no-log-calls",
                                "--json"))["account_id"]
    webhook = one_json(await hejcti(env, "account", "show", aid, "--json"))["webhook_url"].split("/webhooks")[1]
    server = Server(env, tmp_path / "s.log")
    try:
        async with aiohttp.ClientSession() as http:
            await server.ready(http)

            async def post(i: int) -> int | str:
                try:
                    async with http.post(server.base + "/webhooks" + webhook, data=new_call(f"CALLT{i}")) as r:
                        return r.status
                except aiohttp.ClientConnectionError as e:
                    return type(e).__name__

            first = [asyncio.create_task(post(i)) for i in range(40)]
            await asyncio.sleep(0.01)
            server.terminate()
            results = await asyncio.gather(*first)
    finally:
        code = server.stop()
    assert code == 0
    answered = [r for r in results if isinstance(r, int)]
    assert answered and set(answered) <= {200}, results  # what was taken in was answered, and answered 200
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM call_events")
    finally:
        await conn.close()
    assert stored >= len(answered)
