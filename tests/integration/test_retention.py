"""Retention: events, calls and call records older than RETENTION_DAYS are purged, by one process at a time."""

from __future__ import annotations

from tests.db import insert_account
from workers.reaper import LOCK, Reaper


async def seed(pool, account_id: str) -> None:
    await insert_account(pool, account_id)
    for age, cid in ((8, "OLD"), (1, "NEW")):
        await pool.execute("INSERT INTO calls (account_id, call_id, started_at) VALUES ($1, $2, now() - make_interval(days => $3))",
                           account_id, cid, age)
        await pool.execute("INSERT INTO call_events (account_id, call_id, event, data, received_at)"
                           " VALUES ($1, $2, 'newCall', '{}', now() - make_interval(days => $3))", account_id, cid, age)
        await pool.execute("INSERT INTO call_records (account_id, record_key, created_at)"
                           " VALUES ($1, $2, now() - make_interval(days => $3))", account_id, cid, age)


async def counts(pool) -> dict[str, int]:
    return {"calls": await pool.fetchval("SELECT count(*) FROM calls"),
            "call_events": await pool.fetchval("SELECT count(*) FROM call_events"),
            "call_records": await pool.fetchval("SELECT count(*) FROM call_records")}


def reaper(pool) -> Reaper:
    return Reaper(pool, interval=3600, ring_timeout_s=10**6, talk_timeout_s=10**6, retention_days=7)


async def test_old_data_is_purged_and_recent_data_kept(pool):
    await seed(pool, "acc_r")
    done = await reaper(pool).once()
    assert done["purged"] == 3
    assert await counts(pool) == {"calls": 1, "call_events": 1, "call_records": 1}
    assert await pool.fetchval("SELECT call_id FROM call_events") == "NEW"


async def test_one_process_at_a_time(pool):
    await seed(pool, "acc_r")
    async with pool.acquire() as other:  # another process holds the housekeeping lock
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK)
        assert await reaper(pool).once() == {"ended": 0, "purged": 0}
        assert (await counts(pool))["call_events"] == 2
        await other.execute("SELECT pg_advisory_unlock($1)", LOCK)
    assert (await reaper(pool).once())["purged"] == 3
