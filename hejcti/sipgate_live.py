"""An account's sipgate side: its stored credential (encrypted with a key from SECRET_KEY, crypto.py), a
client for it, and the live user data (names, emails, numbers, devices) that is fetched when needed and kept
in memory for at most 60 s per account, one request in flight per account however many ask at once; never
in the database (CONTRACT §6, §8).

One ``SipgateAccounts`` per process (the app's, or a short-lived one for a CLI command). OAuth tokens are
refreshed under a row lock, so that of several processes one refreshes and the others read the rotated
tokens from the database: sipgate voids a refresh token once it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from hejcti import crypto, logs
from hejcti.config import Settings
from hejcti.errors import DatabaseUnavailableError, NotFoundError
from hejcti.sipgate import (
    Credential,
    Device,
    Number,
    OAuthClient,
    SipgateAuthError,
    SipgateClient,
    SipgateNotConnectedError,
    User,
    UserInfo,
    oauth_refresher,
)
from hejcti.store import UNAVAILABLE, Store, q

log = logs.get("hejcti.sipgate")
V = TypeVar("V")
MAX_TTL_S = 60.0


class LiveCache(Generic[V]):
    """Values by key for at most ``ttl`` seconds (counted from when their fetch began), with one fetch in
    flight per key: every asker while it runs gets its result (or its error, which is not kept)."""

    def __init__(self, ttl: float = MAX_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = min(ttl, MAX_TTL_S)
        self.clock = clock
        self._values: dict[str, tuple[float, V]] = {}
        self._flights: dict[str, asyncio.Task[V]] = {}

    async def get(self, key: str, fetch: Callable[[], Awaitable[V]]) -> V:
        hit = self._values.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nobody left to ask: no warning
            self._flights[key] = task
        return await asyncio.shield(task)  # one asker giving up does not cancel the others' fetch

    async def _fetch(self, key: str, fetch: Callable[[], Awaitable[V]]) -> V:
        started = self.clock()
        try:
            value = await fetch()
            now = self.clock()
            for k in [k for k, (until, _) in self._values.items() if until <= now]:
                del self._values[k]
            if self.ttl > 0:
                self._values[key] = (started + self.ttl, value)
            return value
        finally:
            self._flights.pop(key, None)

    def forget(self, key: str) -> None:
        self._values.pop(key, None)


@dataclass(frozen=True)
class LiveUser:
    """A sipgate user with their numbers and devices, as sipgate says now. Memory only."""

    user: User
    numbers: tuple[Number, ...] = ()
    devices: tuple[Device, ...] = ()

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def extension(self) -> str | None:
        return self.user.direct_dial_ids[0] if self.user.direct_dial_ids else None

    @property
    def e164s(self) -> list[str]:
        return [n.e164 for n in self.numbers if n.e164]


class SipgateAccounts:
    def __init__(self, store: Store, settings: Settings, http: aiohttp.ClientSession) -> None:
        self.store = store
        self.settings = settings
        self.http = http
        self.cache: LiveCache[list[LiveUser]] = LiveCache(settings.sipgate_cache_ttl_s)
        self._locks: dict[str, asyncio.Lock] = {}

    def oauth_client(self) -> OAuthClient | None:
        s = self.settings
        if not s.sipgate_client_id or s.sipgate_client_secret is None:
            return None
        return OAuthClient(s.sipgate_login_url, s.sipgate_client_id, s.sipgate_client_secret.get_secret_value())

    def new_client(self, credential: Credential, account_id: str | None = None) -> SipgateClient:
        """A client for a credential not (yet) stored: it is neither refreshed nor marked rejected."""
        return SipgateClient(self.http, credential, base_url=self.settings.sipgate_api_url,
                             timeout=self.settings.sipgate_timeout_s, account=account_id)

    # -- the stored credential ------------------------------------------------------------------------

    def _seal(self, account_id: str, credential: Credential) -> bytes:
        return crypto.encrypt(self.settings.resolved_secret_key(), account_id, credential.dumps())

    def _open(self, row: Any) -> Credential:
        if row["sipgate_credential"] is None:
            raise SipgateNotConnectedError("the account is not connected to sipgate (hejcti account "
                                           "connect-sipgate, or an admin signs in with sipgate)")
        if row["sipgate_rejected_at"] is not None:
            raise SipgateAuthError("sipgate rejected the account's credential; an admin must connect sipgate again")
        blob = crypto.decrypt(self.settings.resolved_secret_key(), row["id"], bytes(row["sipgate_credential"]))
        return Credential.loads(blob)

    async def store_credential(self, account_id: str, info: UserInfo, credential: Credential) -> None:
        """Connect the account: the credential (encrypted) and sipgate's account id (``masterSipId``)."""
        if await self.store.fetchval("sipgate_connect", account_id, info.master_sip_id,
                                     self._seal(account_id, credential)) is None:
            raise NotFoundError(f"no account {account_id!r}")
        self.cache.forget(account_id)
        log.info("sipgate.connected", account=account_id, kind=credential.kind)

    async def credential(self, account_id: str) -> Credential:
        row = await self.store.fetchrow("sipgate_credential", account_id)
        if row is None:
            raise NotFoundError(f"no account {account_id!r}")
        return self._open(row)

    async def client(self, account_id: str) -> SipgateClient:
        """A client with the account's stored credential; raises ``SipgateNotConnectedError`` without one."""
        credential = await self.credential(account_id)
        refresh = None
        if credential.kind == "oauth":
            async def refresh(stale: Credential) -> Credential:
                return await self._refresh(account_id, stale)

        async def rejected() -> None:
            await self.store.fetchval("sipgate_rejected", account_id)
            self.cache.forget(account_id)
            log.info("sipgate.disconnected", account=account_id)

        return SipgateClient(self.http, credential, base_url=self.settings.sipgate_api_url,
                             timeout=self.settings.sipgate_timeout_s, refresh=refresh, on_rejected=rejected,
                             account=account_id)

    async def _refresh(self, account_id: str, stale: Credential) -> Credential:
        oauth = self.oauth_client()
        if oauth is None:
            raise SipgateAuthError("the account signed in with sipgate, but SIPGATE_CLIENT_ID is not set")
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            try:
                async with self.store.pool.acquire() as conn, conn.transaction():
                    row = await conn.fetchrow(q("sipgate_credential_lock"), account_id)
                    if row is None:
                        raise NotFoundError(f"no account {account_id!r}")
                    current = self._open(row)
                    if current.refresh_token != stale.refresh_token and not current.expired():
                        return current  # another process (or task) has refreshed meanwhile

                    async def rotated(new: Credential) -> None:
                        await conn.execute(q("sipgate_credential_rotated"), account_id, self._seal(account_id, new))

                    return await oauth_refresher(self.http, oauth, rotated)(current)
            except UNAVAILABLE as e:
                raise DatabaseUnavailableError(str(e) or type(e).__name__) from e

    # -- live user data ---------------------------------------------------------------------------------

    async def users(self, account_id: str) -> list[LiveUser]:
        """The account's sipgate users with their numbers and devices: at most ``sipgate_cache_ttl_s`` old,
        one fetch in flight per account."""
        return await self.cache.get(account_id, lambda: self._fetch_users(account_id))

    async def _fetch_users(self, account_id: str) -> list[LiveUser]:
        client = await self.client(account_id)
        users = await client.users()
        gate = asyncio.Semaphore(4)  # a company's users one after another, but not all at once

        async def one(user: User) -> LiveUser:
            async with gate:
                devices = await client.devices(user.id)
                numbers = await client.user_numbers(user.id)
            return LiveUser(user, tuple(numbers), tuple(devices))

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(u)) for u in users]
        log.info("sipgate.users.fetched", account=account_id, users=len(users))
        return [t.result() for t in tasks]


@contextlib.asynccontextmanager
async def opened(store: Store, settings: Settings,
                 accounts: SipgateAccounts | None = None) -> AsyncIterator[SipgateAccounts]:
    """The process's ``SipgateAccounts`` if there is one, else one on an HTTP session of its own (a CLI run)."""
    if accounts is not None:
        yield accounts
        return
    async with aiohttp.ClientSession(headers={"User-Agent": "hejcti"}) as http:
        yield SipgateAccounts(store, settings, http)
