"""Real `hejcti serve` processes: two on one PostgreSQL share the work; SIGTERM finishes and closes with 1001;
`hejcti demo` on the embedded default exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.test_cli import ROOT, env_for, hejcti, one_json


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], log: Path, role: str = "all", **popen: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "hejcti.cli", "serve", "--port", str(self.port),
                                      "--role", role],
                                     env={**env, "HEJCTI_PUBLIC_URL": self.base}, cwd=ROOT,
                                     stdout=self._fh, stderr=subprocess.STDOUT, **popen)

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                async with http.get(f"{self.base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("server did not become ready:\n" + self.log.read_text())

    def terminate(self) -> None:
        self.terminated = True
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        if self.proc.poll() is None and not getattr(self, "terminated", False):
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._fh.close()
        return code


async def test_webhook_on_one_process_pops_on_the_other(database_url, tmp_path):
    env = env_for(database_url, tmp_path)
    csv = tmp_path / "c.csv"
    csv.write_text("id,name,company,phone,email,url\nc1,Julia,ACME,+4915791234567,,\n")
    aid = one_json(await hejcti(env, "account", "create", "--name", "A", "--crm", "directory", "--crm-instance",
                                str(csv), "--json"))["account_id"]
    token = one_json(await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--json"))["token"]
    a, b = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")
    try:
        async with aiohttp.ClientSession() as http:
            await a.ready(http)
            await b.ready(http)
            async with http.ws_connect(f"{b.base}/ws") as ws:
                await ws.send_json({"type": "auth", "token": token})
                assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
                sim = one_json(await hejcti(env, "simulate-call", "--account", aid, "--from", "015791234567",
                                            "--to", "02111234567", "--user", "w0", "--url", a.base,
                                            "--delay", "0.1", "--json"))
                ringing = await ws.receive_json(timeout=10)
                assert ringing["type"] == "call.ringing" and ringing["call_id"] == sim["call_id"]
                assert ringing["contacts"][0]["id"] == "c1"
                assert (await ws.receive_json(timeout=10))["type"] == "call.ended"
                # SIGTERM: b finishes and closes its sessions with 1001 (going away)
                b.terminate()
                msg = await ws.receive(timeout=15)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    finally:
        codes = (a.stop(), b.stop())
    assert codes == (0, 0), (a.log.read_text(), b.log.read_text())
    for log in (a.log, b.log):
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(e["event"] == "server.stopped" for e in lines)


async def test_demo_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJCTI_")}
    env.update(HEJCTI_DATA_DIR=str(tmp_path / "demo"), PYTHONPATH=str(ROOT), HEJCTI_LOG_FORMAT="json")
    result = one_json(await hejcti(env, "demo", "--json"))
    kinds = [m["type"] for m in result["received"]]
    assert kinds == ["auth_ok", "call.ringing", "call.answered", "call.ended"]
    ringing = result["received"][1]
    assert ringing["contacts"][0]["name"] == "Julia Schmidt" and ringing["resolved"] is True
    assert result["received"][3]["duration_s"] >= 1
    human = await hejcti(env, "demo")
    assert "extension <- " in human.stdout and "Julia Schmidt" in human.stdout


async def test_web_and_worker_roles(database_url, tmp_path):
    """A `--role web` process takes webhooks only; a `--role worker` process serves the sessions."""
    env = env_for(database_url, tmp_path)
    aid = one_json(await hejcti(env, "account", "create", "--name", "R", "--crm", "hubspot", "--no-log-calls",
                                "--json"))["account_id"]
    token = one_json(await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--json"))["token"]
    web, worker = Server(env, tmp_path / "web.log", "web"), Server(env, tmp_path / "worker.log", "worker")
    try:
        async with aiohttp.ClientSession() as http:
            await web.ready(http)
            await worker.ready(http)
            async with http.get(f"{web.base}/ws") as r:
                assert r.status == 404  # no sessions on a web-only process
            async with http.ws_connect(f"{worker.base}/ws") as ws:
                await ws.send_json({"type": "auth", "token": token})
                assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
                sim = one_json(await hejcti(env, "simulate-call", "--account", aid, "--from", "anonymous", "--to",
                                            "02111234567", "--user", "w0", "--url", web.base, "--delay", "0",
                                            "--json"))
                ringing = await ws.receive_json(timeout=10)
                assert ringing["call_id"] == sim["call_id"] and ringing["anonymous"] is True
            async with http.post(f"{worker.base}/webhooks/sipgate/x", data=b"event=newCall") as r:
                assert r.status in (404, 405)  # no webhooks on a worker-only process
    finally:
        assert (web.stop(), worker.stop()) == (0, 0)


async def test_cli_commands_attach_to_the_embedded_server_of_serve(tmp_path):
    """With no DATABASE_URL, `serve` starts PostgreSQL in DATA_DIR; CLI commands find it and leave it running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJCTI_")}
    env.update(HEJCTI_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), HEJCTI_LOG_FORMAT="json")
    server = Server(env, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession() as http:
            await server.ready(http)
            aid = one_json(await hejcti(env, "account", "create", "--name", "E", "--crm", "hubspot",
                                        "--json"))["account_id"]
            token = one_json(await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0",
                                          "--json"))["token"]
            async with http.get(f"{server.base}/readyz") as r:
                assert r.status == 200  # the CLI's exit did not stop the server's database
            async with http.ws_connect(f"{server.base}/ws") as ws:
                await ws.send_json({"type": "auth", "token": token})
                assert (await ws.receive_json(timeout=5))["account_id"] == aid
    finally:
        assert server.stop() == 0
    assert (tmp_path / "data" / "secret_key").exists()
