"""The baseline: a bare aiohttp app that takes the same webhooks and pushes the same message to the same
sessions, storing nothing (no PostgreSQL, no NOTIFY, no workers, no queues). Hej CTI is measured against it.

    python -m bench.baseline --port P --config users.json
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import parse_qsl

from aiohttp import web

from hejcti import phones, runtime


def build_app(tokens: dict[str, str], contacts: dict[str, list[dict]]) -> web.Application:
    sessions: dict[str, set[web.WebSocketResponse]] = {}
    app = web.Application()

    async def webhook(request: web.Request) -> web.Response:
        form: dict[str, list[str]] = {}
        for k, v in parse_qsl((await request.read()).decode(), keep_blank_values=True):
            form.setdefault(k, []).append(v)
        number = phones.from_sipgate(form.get("from", [""])[0])
        call_id = form.get("callId", [""])[0]
        users = form.get("userId[]", [])
        message = json.dumps({
            "type": "call.ringing", "call_id": call_id, "seq": 0, "direction": "in", "number": number,
            "orig_call_id": None, "diversion": None, "display": phones.display(number, "DE"), "anonymous": False,
            "users": users, "contacts": contacts.get(number or "", []), "resolved": True, "at": "",
        }, separators=(",", ":"))
        for u in users:
            for ws in list(sessions.get(u, ())):
                await ws.send_str(message)
        url = f"{request.url}"
        return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="{url}" '
                                 f'onHangup="{url}"/>', content_type="application/xml")

    async def ws_view(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        msg = await ws.receive_json(timeout=10)
        user = tokens.get(msg.get("token", ""))
        if user is None:
            await ws.close(code=4500)
            return ws
        await ws.send_json({"type": "auth_ok", "user_id": user})
        sessions.setdefault(user, set()).add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sessions[user].discard(ws)
        return ws

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app.router.add_post("/webhooks/sipgate/{token}", webhook)
    app.router.add_get("/ws", ws_view)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config", required=True)
    args = p.parse_args()
    with open(args.config) as fh:
        cfg = json.load(fh)
    app = build_app({t: u for u, t in cfg["tokens"].items()}, cfg["contacts"])

    async def tuned(_: web.Application) -> None:
        runtime.tune_gc()  # the same runtime tuning as `hejcti serve`: the comparison is of the work done

    app.on_startup.append(tuned)
    web.run_app(app, host="127.0.0.1",
                port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
