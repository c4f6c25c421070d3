"""An account's sipgate side: its stored credential (encrypted with a key from SECRET_KEY, crypto.py), a
client for it, and the live user data (names, emails, numbers; a user's devices where needed) that is fetched
when needed and kept in memory for at most 60 s per account, one request in flight per account however many
ask at once; never in the database (CONTRACT §6, §8). A listing costs two requests (``/users``, ``/numbers``),
not two per user; numbers or devices that cannot be fetched leave the users without them, never the listing.

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
from urllib.parse import urlsplit

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
    SipgateError,
    SipgateNotConfiguredError,
    SipgateNotConnectedError,
    User,
    UserInfo,
    oauth_refresher,
)
from hejcti.store import UNAVAILABLE, Store, q

log = logs.get("hejcti.sipgate")
V = TypeVar("V")
MAX_TTL_S = 60.0
PARTIAL_TTL_S = 5.0  # a listing that lacks some numbers: asked again soon


class LiveCache(Generic[V]):
    """Values by key for at most ``ttl`` seconds (counted from when their fetch began), with one fetch in
    flight per key: every asker while it runs gets its result (or its error, which is not kept). ``ttl_of`` may
    keep a value shorter (a listing that lacks some of its parts)."""

    def __init__(self, ttl: float = MAX_TTL_S, clock: Callable[[], float] = time.monotonic,
                 ttl_of: Callable[[V], float] | None = None) -> None:
        self.ttl = min(ttl, MAX_TTL_S)
        self.clock = clock
        self.ttl_of = ttl_of
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
            ttl = min(self.ttl, self.ttl_of(value)) if self.ttl_of is not None else self.ttl
            if ttl > 0:
                self._values[key] = (started + ttl, value)
            return value
        finally:
            self._flights.pop(key, None)

    def forget(self, key: str, *, prefix: bool = False) -> None:
        for k in [k for k in self._values if k.startswith(key)] if prefix else [key]:
            self._values.pop(k, None)


@dataclass(frozen=True)
class LiveUser:
    """A sipgate user with their numbers, as sipgate says now. Memory only. (Devices are asked per user, where
    needed: ``SipgateAccounts.devices``.)"""

    user: User
    numbers: tuple[Number, ...] = ()

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def extension(self) -> str | None:
        return self.user.direct_dial_ids[0] if self.user.direct_dial_ids else None

    @property
    def e164s(self) -> list[str]:
        return [n.e164 for n in self.numbers if n.e164]


@dataclass(frozen=True)
class Listing:
    """An account's users as one fetch found them; ``complete`` False when some numbers could not be fetched
    (the users are listed without them, and the listing is kept only ``PARTIAL_TTL_S``)."""

    users: list[LiveUser]
    complete: bool = True


def number_owner(number: Number, user_ids: set[str]) -> str | None:
    """The user a number of ``GET /numbers`` routes to: its ``endpointId`` when that is a user, else the user
    its ``endpointUrl`` names (``…/v2/w0/phonelines/p0``); None for a group's, or when neither says."""
    if number.endpoint_id in user_ids:
        return number.endpoint_id
    return next((seg for seg in urlsplit(number.endpoint_url or "").path.split("/") if seg in user_ids), None)


class SipgateAccounts:
    def __init__(self, store: Store, settings: Settings, http: aiohttp.ClientSession) -> None:
        self.store = store
        self.settings = settings
        self.http = http
        self.cache: LiveCache[Listing] = LiveCache(
            settings.sipgate_cache_ttl_s, ttl_of=lambda listing: MAX_TTL_S if listing.complete else PARTIAL_TTL_S)
        self.device_cache: LiveCache[tuple[Device, ...]] = LiveCache(settings.sipgate_cache_ttl_s)
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
            raise SipgateAuthError("sipgate rejected the account's credential; a sipgate admin must sign in to the "
                                   "portal again (or connect a personal access token with hejcti account "
                                   "connect-sipgate)")
        try:
            blob = crypto.decrypt(self.settings.resolved_secret_key(), row["id"], bytes(row["sipgate_credential"]))
        except crypto.CredentialDecryptError as e:
            raise SipgateNotConnectedError("the stored sipgate credential cannot be read with this SECRET_KEY; an "
                                           "admin must connect sipgate again") from e
        return Credential.loads(blob)

    async def store_credential(self, account_id: str, info: UserInfo, credential: Credential) -> None:
        """Connect the account: the credential (encrypted) and sipgate's account id (``masterSipId``)."""
        if await self.store.fetchval("sipgate_connect", account_id, info.master_sip_id,
                                     self._seal(account_id, credential)) is None:
            raise NotFoundError(f"no account {account_id!r}")
        self._forget(account_id)
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
            self._forget(account_id)
            log.info("sipgate.disconnected", account=account_id)

        return SipgateClient(self.http, credential, base_url=self.settings.sipgate_api_url,
                             timeout=self.settings.sipgate_timeout_s, refresh=refresh, on_rejected=rejected,
                             account=account_id)

    async def _refresh(self, account_id: str, stale: Credential) -> Credential:
        oauth = self.oauth_client()
        if oauth is None:  # not sipgate's verdict on the credential: other processes may refresh it
            log.info("sipgate.oauth.not_configured", account=account_id)
            raise SipgateNotConfiguredError(
                "the account is connected with sipgate sign-in, but the OAuth client is not configured in this "
                "process (HEJCTI_SIPGATE_CLIENT_ID and HEJCTI_SIPGATE_CLIENT_SECRET), so it cannot refresh "
                "sipgate's access token")
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

    def _forget(self, account_id: str) -> None:
        self.cache.forget(account_id)
        self.device_cache.forget(account_id + "/", prefix=True)

    # -- live user data ---------------------------------------------------------------------------------

    async def users(self, account_id: str) -> list[LiveUser]:
        """The account's sipgate users with their numbers: at most ``sipgate_cache_ttl_s`` old, one fetch in
        flight per account. A fetch is ``GET /users`` and ``GET /numbers``, two requests however many users."""
        return (await self.cache.get(account_id, lambda: self._fetch_users(account_id))).users

    async def devices(self, account_id: str, user_id: str) -> tuple[Device, ...]:
        """One user's devices (``me``): one request, kept as long as the users."""
        async def fetch() -> tuple[Device, ...]:
            return tuple(await (await self.client(account_id)).devices(user_id))

        return await self.device_cache.get(f"{account_id}/{user_id}", fetch)

    async def _fetch_users(self, account_id: str) -> Listing:
        """``/users`` (its failure is the listing's), then the account's numbers in one ``/numbers``, mapped to
        users by their endpoint. Numbers that cannot be fetched leave the users without them (a shorter-kept
        listing), but a rejected credential is the listing's failure too."""
        client = await self.client(account_id)
        users = await client.users()
        ids = {u.id for u in users}
        complete = True
        try:
            numbers = await client.numbers()
        except SipgateNotConnectedError:
            raise
        except SipgateError as e:
            log.info("sipgate.numbers.failed", account=account_id, error=type(e).__name__,
                     status=getattr(e, "status", None))
            numbers, complete = [], False
        mine: dict[str, list[Number]] = {}
        unplaced = 0
        for n in numbers:
            owner = number_owner(n, ids)
            if owner is not None:
                mine.setdefault(owner, []).append(n)
            elif not (n.endpoint_id or "").startswith("g"):  # a group's number is nobody's own
                unplaced += 1
        if unplaced:  # /numbers does not say whose: each user's own, as sipgate lists them per user
            log.info("sipgate.numbers.unplaced", account=account_id, numbers=unplaced)
            mine, complete = await self._numbers_per_user(client, account_id, users)
        log.info("sipgate.users.fetched", account=account_id, users=len(users), complete=complete)
        return Listing([LiveUser(u, tuple(mine.get(u.id, ()))) for u in users], complete)

    async def _numbers_per_user(self, client: SipgateClient, account_id: str,
                                users: list[User]) -> tuple[dict[str, list[Number]], bool]:
        gate = asyncio.Semaphore(4)  # a company's users one after another, but not all at once

        async def one(user: User) -> list[Number]:
            async with gate:
                return await client.user_numbers(user.id)

        results = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
        out: dict[str, list[Number]] = {}
        for user, result in zip(users, results, strict=True):
            if isinstance(result, SipgateNotConnectedError):
                raise result
            if isinstance(result, SipgateError):
                log.info("sipgate.numbers.failed", account=account_id, user=user.id, error=type(result).__name__)
            elif isinstance(result, BaseException):
                raise result
            else:
                out[user.id] = result
        return out, len(out) == len(users)


@contextlib.asynccontextmanager
async def opened(store: Store, settings: Settings,
                 accounts: SipgateAccounts | None = None) -> AsyncIterator[SipgateAccounts]:
    """The process's ``SipgateAccounts`` if there is one, else one on an HTTP session of its own (a CLI run)."""
    if accounts is not None:
        yield accounts
        return
    async with aiohttp.ClientSession(headers={"User-Agent": "hejcti"}) as http:
        yield SipgateAccounts(store, settings, http)
