"""``hejcti serve --port 0``: without PUBLIC_URL, the base URL it prints and hands to sipgate names the port the
server is bound to, not the 0 it was asked for."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from urllib.parse import urlsplit
from xml.etree import ElementTree

import aiohttp

from tests.e2e.test_cli import ROOT, env_for, hejcti, one_json
from tests.e2e.test_fanout import new_call


async def test_serve_on_port_0_reports_and_hands_out_the_bound_port(database_url, tmp_path):
    env = env_for(database_url, tmp_path)
    acc = one_json(await hejcti(env, "account", "create", "--name", "P", "--crm", "hubspot", "--json"))
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hejcti.cli", "serve", "--host", "127.0.0.1",
                                                    "--port", "0", "--json", env=env, cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, log.read_text()[-3000:]
        started = json.loads(line)
        assert started["port"] > 0
        assert started["public_url"] == started["url"] == f"http://127.0.0.1:{started['port']}"
        path = urlsplit(acc["webhook_url"]).path
        async with aiohttp.ClientSession() as http, http.post(
                started["url"] + path, data=new_call("PORT0CALL"), timeout=aiohttp.ClientTimeout(total=30),
                headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 200, await r.text()
            answer = ElementTree.fromstring(await r.text())
        assert answer.get("onAnswer") == answer.get("onHangup") == started["url"] + path
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
