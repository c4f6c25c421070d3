"""`hejcti demo --keep` (issue 11, point 6): after its call the demo stays up with a simulated sipgate that says
it is simulated, prints the portal's URL and a sign-in link, and a newcomer signs in (as the simulated admin)
and sees the demo's account, its sipgate users and its call; SIGTERM ends it and removes the demo account."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys

from tests.e2e.test_cli import ROOT, env_for
from tests.e2e.test_exhaustion import closed_by_server, connect
from tests.portal_kit import browser


async def demo_keep(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "hejcti.cli", "demo", "--keep", "--json",
                                                env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def test_demo_keep_walks_through_the_portal(database_url, tmp_path, pool):
    env = env_for(database_url, tmp_path)
    proc = await demo_keep(env)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        facts = json.loads(line)
        assert facts["sipgate"] == "simulated" and facts["portal"].endswith("/portal")
        async with browser() as http:
            async with http.get(facts["sign_in"]) as r:  # to the simulated sipgate's sign-in page
                page = await r.text()
                assert r.status == 200 and "Simulated sipgate" in page and "This is not sipgate" in page
                form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
                approve = str(r.url)
            async with http.post(approve, data={**form, "user": "w0"}) as r:
                account = await r.text()
                assert r.status == 200 and str(r.url).endswith("/portal/account"), account[:300]
            assert "Hej CTI demo" in account and facts["account_id"] in account
            async with http.get(facts["portal"] + "/users") as r:
                assert "Grace Hopper" in await r.text()
            async with http.get(facts["portal"] + "/calls") as r:
                calls = await r.text()
                assert "…567" in calls and "4915791234567" not in calls
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, (await proc.stderr.read()).decode()[-2000:]
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", facts["account_id"]) == 0


async def test_the_kept_demo_guards_its_connections_as_serve_does(database_url, tmp_path):
    """It runs for as long as a newcomer clicks around: a client that never finishes its headers is closed after
    HEADER_TIMEOUT_S, as by ``hejcti serve`` (connections.Runner), not held open forever."""
    proc = await demo_keep(env_for(database_url, tmp_path, HEJCTI_HEADER_TIMEOUT_S="0.5"))
    try:
        facts = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        reader, writer = await connect(facts["portal"].removesuffix("/portal"))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        await closed_by_server((reader, writer))  # fails if still open after a generous wait
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, (await proc.stderr.read()).decode()[-2000:]
