"""The real app on a free port of 127.0.0.1, with helpers a test needs: accounts, users, WebSocket clients
that record what they receive, and webhook posts in sipgate's wire format."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from hejcti import db
from hejcti.admin import Admin
from hejcti.app import Role, create_app
from hejcti.config import Settings
from hejcti.connections import Runner
from hejcti.store import Store

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
CONTACTS_HEADER = "id,name,company,phone,email,url\n"


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": "test-secret-key",
        "data_dir": tmp_path / "data",
        "host": "127.0.0.1",
        "port": 0,
        "log_format": "json",
        "poll_interval_s": 0.5,
        "reaper_interval_s": 3600,
        "lookup_deadline_ms": 1500,
    }
    base.update(overrides)
    return Settings(**base)


@dataclass
class Client:
    """A WebSocket client that reads everything into a queue (or stops reading, for slow-reader tests)."""

    ws: aiohttp.ClientWebSocketResponse
    http: aiohttp.ClientSession
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                self.seen.append(data)
                await self.queue.put(data)
        self.close_code = self.ws.close_code
        await self.queue.put({"type": "__closed__", "code": self.ws.close_code})

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def expect(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next message of this type (and these field values); others in between are skipped."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            msg = await asyncio.wait_for(self.queue.get(), max(0.01, end - loop.time()))
            if msg["type"] == "__closed__" and kind != "__closed__":
                raise AssertionError(f"socket closed with {msg['code']} while waiting for {kind}")
            if msg["type"] == kind and all(msg.get(k) == v for k, v in match.items()):
                return msg

    async def send(self, message: dict[str, Any] | str) -> None:
        if isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_json(message)

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        await self.send(message)
        return await self.expect_id(message["id"], timeout)

    async def expect_id(self, msg_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            msg = await asyncio.wait_for(self.queue.get(), max(0.01, end - loop.time()))
            if msg.get("id") == msg_id:
                return msg

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.seen if m["type"] == kind]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


class Harness:
    def __init__(self, settings: Settings, database_url: str, role: Role = "all") -> None:
        self.settings = settings
        self.database_url = database_url
        self.role = role
        self.runner: web.AppRunner | None = None
        self.base = ""
        self.http: aiohttp.ClientSession | None = None
        self.pool: asyncpg.Pool | None = None
        self.admin: Admin | None = None
        self.clients: list[Client] = []
        self.tmp = Path(settings.data_dir)

    @property
    def app(self) -> web.Application:
        assert self.runner is not None
        return self.runner.app

    async def start(self) -> Harness:
        await db.migrate(self.database_url)
        self.runner = Runner(create_app(self.settings, self.database_url, self.role), self.settings,
                             access_log=None, shutdown_timeout=5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        self.settings.public_url = self.base
        self.http = aiohttp.ClientSession()
        self.pool = await db.create_pool(self.database_url, min_size=1, max_size=3)
        self.admin = Admin(Store(self.pool), self.settings)
        if self.role != "web":
            from hejcti.app import LISTENER

            await asyncio.wait_for(self.app[LISTENER].connected.wait(), 10)
        return self

    async def stop(self) -> None:
        for c in self.clients:
            await c.close()
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.pool is not None:
            await self.pool.close()

    # -- set-up helpers ----------------------------------------------------------------------------

    def contacts_csv(self, rows: list[tuple[str, ...]], name: str = "contacts.csv") -> str:
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / name
        path.write_text(CONTACTS_HEADER + "".join(",".join(r) + "\n" for r in rows))
        return str(path)

    async def account(self, *, name: str = "Acme", crm: str = "directory", crm_instance: str | None = None,
                      contacts: list[tuple[str, ...]] | None = None, region: str = "DE",
                      log_calls: bool = True) -> dict[str, Any]:
        assert self.admin is not None
        if crm == "directory" and crm_instance is None:
            crm_instance = self.contacts_csv(contacts or [], f"contacts-{name}.csv")
        acc = await self.admin.create_account(name=name, crm=crm, crm_instance=crm_instance, region=region,
                                              log_calls=log_calls)
        acc["url"] = f"{self.base}/webhooks/sipgate/{acc['webhook_token']}"
        return acc

    async def user(self, account_id: str, sipgate_user: str, crm_user: str | None = None) -> str:
        assert self.admin is not None
        return (await self.admin.add_user(account_id=account_id, sipgate_user=sipgate_user,
                                          crm_user=crm_user))["token"]

    async def connect(self, token: str | None = None, *, resume: int | None = None, auth: bool = True) -> Client:
        assert self.http is not None
        ws = await self.http.ws_connect(f"{self.base}/ws", autoping=True)
        client = Client(ws=ws, http=self.http)
        self.clients.append(client)
        if auth:
            msg: dict[str, Any] = {"type": "auth", "token": token}
            if resume is not None:
                msg["resume"] = resume
            await ws.send_json(msg)
        client.start()
        if auth:
            first = await client.next()
            assert first["type"] == "auth_ok", first
        return client

    async def post(self, url: str, body: bytes | str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        assert self.http is not None
        data = body.encode() if isinstance(body, str) else body
        async with self.http.post(url, data=data, headers={**FORM, **(headers or {})}) as r:
            return r.status, await r.text()


@contextlib.asynccontextmanager
async def running(settings: Settings, database_url: str, role: Role = "all"):  # type: ignore[no-untyped-def]
    h = Harness(settings, database_url, role)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
