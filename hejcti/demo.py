"""``hejcti demo``: one simulated call end to end on the embedded default. It starts the server on a free
port, creates a demo account with a few sample contacts, connects a demo extension session, posts newCall,
answer and hangup as sipgate would, prints what the session receives, and exits 0.

With ``--keep`` it then stays up, with a simulated sipgate of its own (demo_sipgate.py: it says so on its sign-in
page) connected to the demo account, and prints the portal's URL and a sign-in link, so a newcomer can click
through the portal without a sipgate account; Ctrl-C (or SIGTERM) ends it and removes the demo account."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from hejcti import connections, db, demo_sipgate, simulate
from hejcti.admin import Admin
from hejcti.app import LISTENER, create_app
from hejcti.config import Settings
from hejcti.errors import HejctiError
from hejcti.store import Store

CONTACTS = [
    ("demo-1", "Julia Schmidt", "Schmidt & Söhne GmbH", "+49 157 91234567", "julia@example.com",
     "https://crm.example.com/contacts/demo-1"),
    ("demo-2", "Ahmet Yılmaz", "Kontor Nord", "030 12345678", "ahmet@example.com",
     "https://crm.example.com/contacts/demo-2"),
    ("demo-3", "Emma Bauer", "", "0049 89 1234567", "emma@example.com", "https://crm.example.com/contacts/demo-3"),
]
CALLER = "4915791234567"
OFFICE = "492111234567"


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


async def demo(settings: Settings, quiet: bool = False, keep: bool = False) -> dict[str, Any]:
    settings.port = 0
    settings.host = "127.0.0.1"
    settings.sipgate_signature = "off"  # the demo's pushes come from us, unsigned; real sipgate signs them
    embedded = db.Embedded(settings.data_dir) if settings.embedded else None
    url = await asyncio.to_thread(db.database_url, settings, embedded)
    runner: connections.Runner | None = None
    simulated: web.AppRunner | None = None
    try:
        if keep:
            simulated = await _simulated_sipgate(settings)
        await db.migrate(url)
        # the server as ``hejcti serve`` runs it (header, body and connection-cap guards): --keep stays up for long
        connections.raise_file_limit()
        runner = connections.Runner(create_app(settings, url), settings, access_log=None, shutdown_timeout=5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        settings.public_url = base
        async with asyncio.timeout(10):
            await runner.app[LISTENER].connected.wait()
        _say(quiet, f"server:    {base} ({'embedded PostgreSQL in ' + str(settings.data_dir) if embedded else 'shared PostgreSQL'})")
        return await _call(settings, url, base, quiet, keep)
    finally:
        if runner is not None:
            await runner.cleanup()
        if simulated is not None:
            await simulated.cleanup()
        if embedded is not None:
            embedded.stop()


async def _simulated_sipgate(settings: Settings) -> web.AppRunner:
    """The demo's own sipgate on a free port, and the settings that send the server there."""
    runner = web.AppRunner(demo_sipgate.SimulatedSipgate().app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sim = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings.sipgate_api_url = sim + demo_sipgate.API
    settings.sipgate_login_url = sim + demo_sipgate.LOGIN
    settings.sipgate_client_id = demo_sipgate.CLIENT_ID
    settings.sipgate_client_secret = SecretStr(demo_sipgate.CLIENT_SECRET)
    return runner


async def _keep(admin: Admin, account_id: str, base: str, quiet: bool) -> None:
    """Stay up for the portal until Ctrl-C or SIGTERM: the demo account connected to the simulated sipgate."""
    await admin.connect_sipgate(account_id, token_id=demo_sipgate.PAT_ID, token=demo_sipgate.PAT)
    facts = {"portal": f"{base}/portal", "sign_in": f"{base}/auth/sipgate?for=portal", "sipgate": "simulated",
             "account_id": account_id}
    if quiet:
        print(json.dumps(facts), flush=True)
    _say(quiet, f"\nThe server keeps running, with a SIMULATED sipgate (no sipgate account needed).\n"
                f"portal:    {facts['portal']}\n"
                f"sign in:   {facts['sign_in']}  (sign in as Ada Lovelace, the simulated admin)\n"
                f"Press Ctrl-C to stop; the demo account is removed then.")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _call(settings: Settings, url: str, base: str, quiet: bool, keep: bool = False) -> dict[str, Any]:
    pool = await db.create_pool(url, min_size=1, max_size=2)
    admin = Admin(Store(pool), settings)
    account_id = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        csv_path = settings.data_dir / "demo-contacts.csv"
        csv_path.write_text("id,name,company,phone,email,url\n" + "".join(
            ",".join(f'"{v}"' if "," in v else v for v in row) + "\n" for row in CONTACTS), encoding="utf-8")
        acc = await admin.create_account(name="Hej CTI demo", crm="directory", crm_instance=str(csv_path))
        account_id = acc["account_id"]
        user = await admin.add_user(account_id=account_id, sipgate_user="w0")
        _say(quiet, f"account:   {account_id} (directory of {len(CONTACTS)} sample contacts), user w0")
        received: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/ws") as ws:
            await ws.send_json({"type": "auth", "token": user["token"]})
            received.append(await ws.receive_json(timeout=5))
            if received[0].get("type") != "auth_ok":
                raise HejctiError(f"the demo session was refused: {received[0]}")
            _say(quiet, "session:   connected as w0\n")
            webhook = f"{base}/webhooks/sipgate/{acc['webhook_token']}"
            events = simulate.bodies(number_from=CALLER, number_to=OFFICE, user="w0", answer_by="w0",
                                     hangup="normalClearing")
            for event, body in events:
                _say(quiet, f"sipgate -> POST {event}")
                (result,) = await simulate.post_all(webhook, [(event, body)], delay=0, session=http)
                if result["status"] != 200:
                    raise HejctiError(f"the server answered {result['status']} to {event}")
                want = {"newCall": "call.ringing", "answer": "call.answered", "hangup": "call.ended"}[event]
                while True:
                    msg = await ws.receive_json(timeout=5)
                    received.append(msg)
                    _say(quiet, "extension <- " + json.dumps(msg, ensure_ascii=False))
                    if msg["type"] == want:
                        break
                if event == "answer":
                    await asyncio.sleep(1.2)  # a short talk, so the talk time is not zero
        ringing = next(m for m in received if m["type"] == "call.ringing")
        ended = next(m for m in received if m["type"] == "call.ended")
        name = ringing["contacts"][0]["name"] if ringing["contacts"] else "nobody"
        _say(quiet, f"\nThe pop showed {name} for {ringing['display']}; the call lasted {ended['duration_s']} s.")
        if keep:
            await _keep(admin, account_id, base, quiet)
        return {"ok": True, "account_id": account_id, "received": received}
    finally:
        if account_id is not None:
            with contextlib.suppress(Exception):
                await admin.delete_account(account_id)  # the demo leaves nothing behind
        await pool.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if asyncio.run(demo(Settings()))["ok"] else 1)
