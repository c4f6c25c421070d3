"""Open extension sessions per user across processes (CONTRACT §7: several processes share one database), for
the portal's Users page. Off the hot path: each worker process writes, every ``interval`` seconds, one statement
with its heartbeat and only the counts that changed since its last write (kept here), and removes its rows when it
stops. A reader adds the rows of the other processes whose heartbeat is fresh (within three intervals) to its own
hub's live counts; rows of a process that died are ignored once its heartbeat goes stale, and purged by the next
writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from hejcti import logs, tokens
from hejcti.errors import DatabaseUnavailableError
from hejcti.sessions import Hub
from hejcti.store import Store

log = logs.get("hejcti.presence")


class Presence:
    def __init__(self, hub: Hub, *, interval: float) -> None:
        self.hub = hub
        self.interval = interval
        self.process_id = tokens.new_id("proc")
        self._task: asyncio.Task[None] | None = None
        self._written: dict[str, int] | None = None  # the counts of the last write; None: nothing written yet

    @property
    def stale_after_s(self) -> float:
        return 3 * self.interval

    def local(self, user_ids: Iterable[str]) -> dict[str, int]:
        """This process's open sessions of each of ``user_ids``."""
        counts = self.hub.counts_by_user()
        return {uid: counts.get(uid, 0) for uid in user_ids}

    def _all_local(self) -> dict[str, int]:
        return self.hub.counts_by_user()

    async def write(self, store: Store) -> None:
        """The heartbeat, and the counts that changed since the last write (all of them at the first)."""
        if self._written is None:
            await store.execute("session_presence_orphans_purge", self.stale_after_s)
        counts, before = self._all_local(), self._written or {}
        changed = {uid: n for uid, n in counts.items() if before.get(uid) != n}
        gone = [uid for uid in before if uid not in counts]
        new = await store.fetchval("session_presence_write", self.process_id, list(changed), list(changed.values()),
                                   gone, self.stale_after_s)
        if new and self._written is not None:  # purged as stale meanwhile (a long pause): its rows went with it
            await store.fetchval("session_presence_write", self.process_id, list(counts), list(counts.values()),
                                 [], self.stale_after_s)
        self._written = counts

    async def counts(self, store: Store, account_id: str, user_ids: Iterable[str]) -> dict[str, int]:
        """Open sessions per user of the account: this process's, live, and the other processes' last writes."""
        ids = list(user_ids)
        out = self.local(ids)
        for row in await store.fetch("session_presence_of_account", account_id, self.process_id, self.stale_after_s):
            if row["user_id"] in out:
                out[row["user_id"]] += int(row["sessions"])
        return out

    def start(self, store: Store) -> None:
        self._task = asyncio.create_task(self._run(store), name="presence")

    async def stop(self, store: Store) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(DatabaseUnavailableError, TimeoutError):  # a hung database must not hold the exit
            async with asyncio.timeout(2):
                await store.execute("session_presence_leave", self.process_id)
        self._written = None

    async def _run(self, store: Store) -> None:
        while True:
            try:
                await self.write(store)
            except DatabaseUnavailableError:
                log.warning("presence.write_failed", reason="database_unavailable")
            except Exception:  # noqa: BLE001  (a count for a page: never worth the worker process)
                log.exception("presence.write_failed")
            await asyncio.sleep(self.interval)
