"""Caller lookup for a process: account settings, one adapter per account, a cache of at most five minutes
(misses included), one request in flight per number, and the credential hand-shake with the sessions
(CONTRACT §5: ask ``missing``/``expired``, wait a bounded time for a new token, retry once)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from hejcti import logs
from hejcti.crm import adapter_class
from hejcti.crm.base import (
    Contact,
    Credentials,
    CrmAdapter,
    CrmAuthError,
    CrmCredentialsMissingError,
    CrmError,
)
from hejcti.metrics import Metrics
from hejcti.sessions import Session
from hejcti.store import Store

log = logs.get("hejcti.lookup")


@dataclass(frozen=True)
class Account:
    id: str
    crm_kind: str
    crm_instance: str | None
    region: str
    log_calls: bool


class Accounts:
    """Account settings, cached for a few seconds (they change rarely; a deleted account stops being served
    within that time, while its webhooks answer 404 at once). One read in flight per account, and a stale
    entry keeps serving while it is refreshed, so a hot account never stampedes the pool."""

    def __init__(self, store: Store, ttl: float = 10.0) -> None:
        self._store = store
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Account | None]] = {}
        self._loading: dict[str, asyncio.Task[Account | None]] = {}
        self._crm_users: dict[str, tuple[float, dict[str, str | None]]] = {}

    async def get(self, account_id: str) -> Account | None:
        hit = self._cache.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        task = self._loading.get(account_id)
        if task is None:
            task = asyncio.create_task(self._load(account_id))
            self._loading[account_id] = task
            task.add_done_callback(lambda t: self._loaded(account_id, t))
        if hit is not None:
            return hit[1]  # stale while the refresh runs
        return await asyncio.shield(task)

    def _loaded(self, account_id: str, task: asyncio.Task[Account | None]) -> None:
        self._loading.pop(account_id, None)
        if not task.cancelled() and task.exception() is not None:  # retrieved: a failed refresh of a stale
            log.warning("account.load.failed", account=account_id,  # entry has nobody else to see it
                        error=type(task.exception()).__name__)

    async def _load(self, account_id: str) -> Account | None:
        row = await self._store.fetchrow("account_settings", account_id)
        account = None if row is None else Account(id=row["id"], crm_kind=row["crm_kind"],
                                                   crm_instance=row["crm_instance"], region=row["region"],
                                                   log_calls=row["log_calls"])
        self._cache[account_id] = (time.monotonic() + self._ttl, account)
        return account

    async def crm_users(self, account_id: str) -> dict[str, str | None]:
        """sipgate user → mapped CRM user (for call-record owners); read when a record is written."""
        hit = self._crm_users.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        rows = await self._store.fetch("crm_users_of_account", account_id)
        users = {r["sipgate_user"]: r["crm_user"] for r in rows}
        self._crm_users[account_id] = (time.monotonic() + self._ttl, users)
        return users

    def forget(self, account_id: str) -> None:
        self._cache.pop(account_id, None)
        self._crm_users.pop(account_id, None)


async def wait_for_credentials(sessions: list[Session], timeout: float) -> tuple[Session, Credentials] | None:
    """The first session that has (or sends within ``timeout``) CRM credentials."""
    deadline = time.monotonic() + timeout
    while True:
        for s in sessions:
            if s.credentials is not None and not s.closed:
                return s, s.credentials
        left = deadline - time.monotonic()
        live = [s for s in sessions if not s.closed]
        if left <= 0 or not live:
            return None
        waiters = [asyncio.ensure_future(s.credentials_changed.wait()) for s in live]
        try:
            await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()


class Lookups:
    def __init__(self, *, http: aiohttp.ClientSession | None, metrics: Metrics, deadline_s: float,
                 cache_ttl_s: float = 300.0, credentials_wait_s: float = 10.0) -> None:
        self._http = http
        self._metrics = metrics
        self._deadline = deadline_s
        self._ttl = min(cache_ttl_s, 300.0)
        self._wait = credentials_wait_s
        self._adapters: dict[str, tuple[tuple[str, str | None, str], CrmAdapter]] = {}
        self._cache: dict[tuple[str, str], tuple[float, list[Contact]]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[list[Contact]]] = {}

    def adapter(self, account: Account) -> CrmAdapter:
        key = (account.crm_kind, account.crm_instance, account.region)
        hit = self._adapters.get(account.id)
        if hit is None or hit[0] != key:
            cls = adapter_class(account.crm_kind)
            adapter = cls(instance=account.crm_instance, region=account.region, http=self._http,
                          budget=max(self._deadline, 0.5))
            self._adapters[account.id] = (key, adapter)
            return adapter
        return hit[1]

    def cached(self, account_id: str, e164: str) -> list[Contact] | None:
        hit = self._cache.get((account_id, e164))
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._cache[(account_id, e164)]
            return None
        return hit[1]

    def has_credentials(self, account: Account, sessions: list[Session]) -> bool:
        if not self.adapter(account).needs_credentials:
            return True
        return any(s.credentials is not None for s in sessions)

    def start(self, account: Account, e164: str, sessions: list[Session]) -> asyncio.Task[list[Contact]]:
        """The lookup for this number: shared with any already running, so ten sessions cost one request."""
        key = (account.id, e164)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._run(account, e164, sessions), name=f"lookup-{account.id}")
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._inflight.pop(k, None))
        return task

    async def _run(self, account: Account, e164: str, sessions: list[Session]) -> list[Contact]:
        adapter = self.adapter(account)
        started = time.monotonic()
        try:
            contacts = await self._with_credentials(adapter, e164, sessions)
        except CrmError as e:
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            log.warning("crm.lookup.failed", account=account.id, crm=account.crm_kind, kind=e.kind,
                        status=e.status, error=str(e), number=e164)
            raise
        self._metrics.lookup_seconds.labels(account.crm_kind).observe(time.monotonic() - started)
        self._cache[(account.id, e164)] = (time.monotonic() + self._ttl, contacts)
        if len(self._cache) > 100_000:
            self._evict()
        log.info("crm.lookup.done", account=account.id, crm=account.crm_kind, matches=len(contacts),
                 ms=round((time.monotonic() - started) * 1000, 1), number=e164)
        return contacts

    async def _with_credentials(self, adapter: CrmAdapter, e164: str, sessions: list[Session]) -> list[Contact]:
        if not adapter.needs_credentials:
            return await adapter.lookup(e164, None)
        got = await self._credentials(sessions, "missing")
        if got is None:
            raise CrmCredentialsMissingError("no session sent CRM credentials in time", crm=adapter.kind)
        session, creds = got
        try:
            return await adapter.lookup(e164, creds, crm_user=session.crm_user)
        except CrmAuthError:
            for s in sessions:
                if s.credentials == creds:
                    s.ask_credentials("expired")
            got = await self._credentials(sessions, "expired")
            if got is None:
                raise
            session, creds = got
            return await adapter.lookup(e164, creds, crm_user=session.crm_user)

    async def _credentials(self, sessions: list[Session], reason: str) -> tuple[Session, Credentials] | None:
        for s in sessions:
            if s.credentials is not None and not s.closed:
                return s, s.credentials
        for s in sessions:
            s.ask_credentials(reason)
        return await wait_for_credentials(sessions, self._wait)

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (exp, _) in self._cache.items() if exp < now]:
            del self._cache[key]

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        for _, adapter in self._adapters.values():
            await adapter.close()

    def stats(self) -> dict[str, Any]:
        return {"cached": len(self._cache), "inflight": len(self._inflight)}
