"""Housekeeping, one process at a time (a PostgreSQL advisory lock): calls that never got their hangup
are ended with cause ``timeout`` through the normal ingest path (so sessions get ``call.ended``), and data
older than RETENTION_DAYS is purged."""

from __future__ import annotations

import time

import asyncpg

from hejcti import logs
from hejcti.store import q
from hejcti.tasks import Periodic

log = logs.get("workers.reaper")
LOCK = 0x4E4A_5245


class Reaper(Periodic):
    name = "reaper"

    def __init__(self, pool: asyncpg.Pool, *, interval: float, ring_timeout_s: int, talk_timeout_s: int,
                 retention_days: int, purge_every_s: float = 3600.0) -> None:
        super().__init__(interval)
        self._pool = pool
        self._ring = ring_timeout_s
        self._talk = talk_timeout_s
        self._days = retention_days
        self._purge_every = purge_every_s
        self._last_purge: float | None = None  # None: purge in the first round

    async def once(self) -> dict[str, int]:
        """One round; returns what it did (for tests and logs)."""
        done = {"ended": 0, "purged": 0}
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
                return done
            try:
                for row in await conn.fetch(q("calls_overdue"), self._ring, self._talk):
                    data = {"direction": row["direction"], "number": row["number"], "own_number": row["own_number"],
                            "anonymous": row["number"] is None, "orig_call_id": row["orig_call_id"],
                            "xcid": row["xcid"], "diversion": None, "cause": "timeout"}
                    eid = await conn.fetchval(q("ingest_for_account"), row["account_id"], "hangup", row["call_id"],
                                              "", data)
                    if eid is not None:
                        done["ended"] += 1
                        log.info("call.timed_out", call_id=row["call_id"], account=row["account_id"], seq=eid)
                now = time.monotonic()
                if self._last_purge is None or now - self._last_purge >= self._purge_every:
                    self._last_purge = now
                    for name in ("purge_events", "purge_records", "purge_calls"):
                        status = await conn.execute(q(name), self._days)
                        done["purged"] += int(status.split()[-1])
                    if done["purged"]:
                        log.info("retention.purged", rows=done["purged"], days=self._days)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
        return done
