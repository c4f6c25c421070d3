"""README's first call, as a newcomer types it: the example contacts, `hejcti listen` as the extension,
`simulate-call` and its flags, `--host/--port` on every command, and `serve` on a busy port."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from hejcti.listen import Listener, ListenError
from tests.e2e.test_cli import ROOT, env_for, hejcti, one_json

CALLER = "0157 91234567"  # the README's simulated caller, Julia Schmidt in examples/contacts.csv


@pytest.fixture
async def walk(database_url, tmp_path, harness):
    """The README's account (a directory of examples/contacts.csv) and user w0, on the harness's database."""
    env = env_for(database_url, tmp_path, HEJCTI_SECRET_KEY=harness.settings.secret_key.get_secret_value())
    acc = await harness.account(crm_instance=str(ROOT / "examples" / "contacts.csv"))
    token = await harness.user(acc["account_id"], "w0")
    return {"env": env, "aid": acc["account_id"], "token": token, "port": harness.base.rsplit(":", 1)[1]}


class Listen:
    """`hejcti listen` as a subprocess, its stdout read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> Listen:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hejcti.cli", "listen", *args, env=env,
                                                    cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert raw, "listen exited: " + (await self.proc.stderr.read()).decode()
        return raw.decode().rstrip("\n")

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            msg = json.loads(await self.line())
            if msg["type"] == kind:
                return msg

    async def stop(self) -> tuple[int, str]:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(self.proc.communicate(), 30)
        return self.proc.returncode, err.decode()


async def test_listen_prints_the_pops_of_a_simulated_call(walk):
    env, aid = walk["env"], walk["aid"]
    # --host/--port (no --url) decide where both commands connect
    where = ("--host", "127.0.0.1", "--port", walk["port"])
    listen = await Listen.start(env, "--token", walk["token"], *where, "--json")
    try:
        assert (await listen.until("auth_ok"))["account_id"] == aid
        sim = one_json(await hejcti(env, "simulate-call", "--account", aid, "--from", CALLER, "--to", "0211 1234567",
                                    "--user", "w0", "--answer-by", "w0", *where, "--delay", "0", "--json"))
        ringing = await listen.until("call.ringing")
        assert ringing["call_id"] == sim["call_id"] and ringing["number"] == "+4915791234567"
        assert [c["name"] for c in ringing["contacts"]] == ["Julia Schmidt"]
        assert (await listen.until("call.answered"))["by"] == "w0"
        assert (await listen.until("call.ended"))["cause"] == "normalClearing"
    finally:
        code, err = await listen.stop()
    assert code == 0 and err == ""


async def test_listen_without_json_prints_one_readable_line_per_event(walk):
    listen = await Listen.start(walk["env"], "--token", walk["token"], "--port", walk["port"])
    try:
        assert (await listen.line()).startswith("connected: user ")
        await hejcti(walk["env"], "simulate-call", "--account", walk["aid"], "--from", CALLER, "--to", "0211 1234567",
                     "--user", "w0", "--port", walk["port"], "--delay", "0", "--no-hangup", "--json")
        line = await listen.line()
        assert line.startswith("call.ringing") and "Julia Schmidt (Schmidt & Söhne GmbH)" in line
        assert "{" not in line
    finally:
        code, _ = await listen.stop()
    assert code == 0


async def test_listen_with_a_bad_token_exits_with_one_line(harness, database_url, tmp_path):
    listen = await Listen.start(env_for(database_url, tmp_path), "--token", "not-a-token", "--url", harness.base)
    out, err_b = await asyncio.wait_for(listen.proc.communicate(), 30)
    assert listen.proc.returncode == 1
    err = err_b.decode()
    assert len(err.strip().splitlines()) == 1 and "4500" in err and "auth_invalid" in err


async def test_listen_resumes_after_a_reconnect_and_stops_on_4500_to_4999():
    """4000-4499 and 1001: reconnect, resuming with the last seq seen; 4502: stop, saying why."""
    auths: list[dict[str, Any]] = []

    async def ws_view(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg = await ws.receive()
        assert msg.type == WSMsgType.TEXT
        auths.append(json.loads(msg.data))
        await ws.send_json({"type": "auth_ok", "user_id": "usr_1", "account_id": "acc_1", "session_id": "s"})
        if len(auths) == 1:
            await ws.send_json({"type": "call.ringing", "call_id": "C1", "seq": 7, "contacts": []})
            await ws.close(code=4000)
        elif len(auths) == 2:
            await ws.send_json({"type": "call.ended", "call_id": "C1", "seq": 9, "cause": "cancel"})
            await ws.close(code=1001)
        else:
            await ws.close(code=4502)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_view)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    out: list[str] = []
    notes: list[str] = []
    try:
        listener = Listener(f"http://127.0.0.1:{runner.addresses[0][1]}", "T", out=out.append, as_json=True,
                            backoff_s=0.01, note=notes.append)
        with pytest.raises(ListenError, match="4502.*revoked"):
            await asyncio.wait_for(listener.run(), 10)
    finally:
        await runner.cleanup()
    assert [a.get("resume") for a in auths] == [None, 7, 9]
    assert [json.loads(line)["type"] for line in out].count("auth_ok") == 3
    assert len(notes) == 2 and "resuming after seq 7" in notes[0]


async def test_simulate_call_for_a_user_never_added_fails_with_one_line(walk, harness):
    proc = await hejcti(walk["env"], "simulate-call", "--account", walk["aid"], "--from", CALLER, "--to",
                        "0211 1234567", "--user", "w5", "--url", harness.base, "--json", ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "no sipgate user w5" in proc.stderr and "hejcti user add" in proc.stderr


async def test_simulate_call_no_hangup_posts_no_hangup(walk):
    sim = one_json(await hejcti(walk["env"], "simulate-call", "--account", walk["aid"], "--from", CALLER, "--to",
                                "0211 1234567", "--user", "w0", "--answer-by", "w0", "--port", walk["port"],
                                "--delay", "0", "--no-hangup", "--json"))
    assert [e["event"] for e in sim["events"]] == ["newCall", "answer"]


@pytest.mark.parametrize("args", [("account", "list"), ("user", "list", "--account", "acc_none")])
async def test_host_and_port_are_accepted_by_every_command(database_url, tmp_path, args):
    proc = await hejcti(env_for(database_url, tmp_path), *args, "--host", "127.0.0.1", "--port", "8081", "--json",
                        ok=False)
    assert "unrecognized arguments" not in proc.stderr
    assert proc.returncode == (1 if "acc_none" in args else 0), proc.stderr


async def test_serve_on_a_busy_port_is_one_line(database_url, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await hejcti(env_for(database_url, tmp_path), "serve", "--port", str(port), ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "address already in use" in proc.stderr
