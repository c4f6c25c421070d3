"""``hejcti listen``: a session as an extension holds it (CONTRACT §3, §5). It connects to ``BASE/ws``,
authenticates, prints each server event (one JSON object a line with ``--json``, else one readable line),
pings every 20 s, and reconnects with backoff after 1001, 4000-4499 or a lost connection, resuming with the
last ``seq`` it saw. A close in 4500-4999 ends it with one line on stderr; SIGINT ends it with exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from collections.abc import Callable
from typing import Any

import aiohttp

from hejcti.errors import HejctiError

#: what a close code in 4500-4999 means, for the one line on stderr (CONTRACT §5)
FINAL = {4500: "the token is not valid (auth_invalid)",
         4501: "the server closed the session before authentication completed",
         4502: "the token was revoked",
         4503: "the account was deleted"}


class ListenError(HejctiError):
    """The server said not to reconnect with this token, or it cannot be reached at all."""


def ws_url(base: str) -> str:
    base = base.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/ws"
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + "/ws"
    if base.startswith(("ws://", "wss://")):
        return base if base.endswith("/ws") else base + "/ws"
    raise ListenError(f"--url must start with http:// or https://, not {base!r}")


def _names(contacts: list[dict[str, Any]]) -> str:
    if not contacts:
        return "no contact found"
    parts = []
    for c in contacts:
        who = c.get("name") or c.get("id")
        parts.append(f"{who} ({c['company']})" if c.get("company") else str(who))
    return ", ".join(parts)


def readable(msg: dict[str, Any]) -> str:
    """One line a person reads at a glance."""
    kind = msg.get("type", "?")
    call = str(msg.get("call_id", ""))[-8:]
    if kind == "auth_ok":
        return f"connected: user {msg.get('user_id')} of account {msg.get('account_id')} ({msg.get('session_id')})"
    if kind == "call.ringing":
        who = "anonymous" if msg.get("anonymous") else (msg.get("display") or msg.get("number"))
        arrow = "from" if msg.get("direction") == "in" else "to"
        late = "" if msg.get("resolved") else " (CRM still looking)"
        return (f"call.ringing  …{call} {arrow} {who} for {', '.join(msg.get('users') or [])}: "
                f"{_names(msg.get('contacts') or [])}{late}")
    if kind == "call.resolved":
        return f"call.resolved …{call}: {_names(msg.get('contacts') or [])}"
    if kind == "call.answered":
        by = "the voicemail" if msg.get("voicemail") else (msg.get("by") or "nobody")
        return f"call.answered …{call} by {by}"
    if kind == "call.ended":
        talk = f", talked {msg['duration_s']} s" if msg.get("duration_s") is not None else ", not answered"
        return f"call.ended    …{call}: {msg.get('cause')}{talk}"
    if kind == "call.logged":
        return f"call.logged   …{call}: {msg.get('crm')} record {msg.get('record_id')} {msg.get('url') or ''}".rstrip()
    rest = {k: v for k, v in msg.items() if k != "type"}
    return f"{kind} {json.dumps(rest, ensure_ascii=False)}" if rest else kind


class Listener:
    def __init__(self, base: str, token: str, *, out: Callable[[str], None], as_json: bool = False,
                 ping_s: float = 20.0, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 note: Callable[[str], None] | None = None) -> None:
        self.url = ws_url(base)
        self.token = token
        self.out = out
        self.as_json = as_json
        self.ping_s = ping_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.note = note or (lambda _line: None)
        self.last_seq: int | None = None
        self.connects = 0
        self._authed = False

    def _print(self, msg: dict[str, Any]) -> None:
        self.out(json.dumps(msg, ensure_ascii=False) if self.as_json else readable(msg))

    async def run(self) -> None:
        """Until cancelled, or a close that says not to reconnect (ListenError)."""
        delay = self.backoff_s
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    code = await self._session(http)
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    why = str(getattr(e, "os_error", None) or e) or type(e).__name__
                    if not self.connects:  # never connected: a wrong URL or no server, say so at once
                        raise ListenError(f"cannot reach the server at {self.url}: {why}") from e
                    code = None
                else:
                    if code is not None and 4500 <= code <= 4999:
                        raise ListenError(f"the server closed the session with {code}: "
                                          f"{FINAL.get(code, 'do not reconnect with this token')}")
                    why = f"closed with {code}"
                if self._authed:
                    delay = self.backoff_s  # this session was up: start the backoff over
                wait = min(delay, self.backoff_max_s) * (0.5 + random.random() / 2)  # noqa: S311 - jitter
                self.note(f"hejcti: connection lost ({why}); reconnecting in {wait:.1f} s"
                          + (f", resuming after seq {self.last_seq}" if self.last_seq is not None else ""))
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max_s)

    async def _session(self, http: aiohttp.ClientSession) -> int | None:
        self._authed = False
        async with http.ws_connect(self.url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            auth: dict[str, Any] = {"type": "auth", "token": self.token}
            if self.last_seq is not None:
                auth["resume"] = self.last_seq
            await ws.send_json(auth)
            pinger = asyncio.create_task(self._ping(ws))
            try:
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        continue
                    try:
                        msg = json.loads(frame.data)
                    except ValueError:
                        continue
                    if not isinstance(msg, dict) or msg.get("type") == "pong":
                        continue
                    if msg.get("type") == "auth_ok":
                        self.connects += 1
                        self._authed = True
                    if isinstance(msg.get("seq"), int):
                        self.last_seq = max(self.last_seq or 0, msg["seq"])
                    self._print(msg)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
            return ws.close_code

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.ping_s)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"type": "ping"})


async def listen(base: str, token: str, *, as_json: bool, out: Callable[[str], None],
                 note: Callable[[str], None]) -> None:
    """The command: runs until SIGINT or SIGTERM (then returns normally), or raises ListenError."""
    listener = Listener(base, token, out=out, as_json=as_json, note=note)
    task = asyncio.ensure_future(listener.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def default_base(host: str, port: int, public_url: str | None, address_given: bool) -> str:
    """Where a client on this machine finds the server when no --url is given: PUBLIC_URL, unless --host or
    --port were given on the command line; else http://HOST:PORT, a wildcard host read as loopback."""
    if public_url and not address_given:
        return public_url.rstrip("/")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
