"""The portal's session-presence writer sends only what changed since its last write (a write with nothing
changed rewrites no per-user row), plus one heartbeat row per process; readers count a process's rows only while
its heartbeat is fresh."""

from hejcti.portal.presence import Presence
from hejcti.store import Store


class _Hub:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def counts_by_user(self) -> dict[str, int]:
        return dict(self.counts)


async def _users(pool, n: int) -> list[str]:
    await pool.execute("INSERT INTO accounts (id, name, crm_kind, webhook_token_hash, webhook_nonce, admin_token_hash) "
                       "VALUES ('acc_1', 'A', 'none', '\\x01', '\\x00', '\\x00')")
    await pool.execute("INSERT INTO users (id, account_id, sipgate_user, token_hash) "
                       "SELECT 'usr_' || i, 'acc_1', 'w' || i, decode(md5(i::text), 'hex') FROM generate_series(1, $1::int) i",
                       n)
    return [f"usr_{i}" for i in range(1, n + 1)]


async def _versions(pool, process_id: str) -> dict[str, tuple[str, int]]:
    """Each row's (xmin, sessions): a row the write rewrote has a new xmin."""
    rows = await pool.fetch("SELECT user_id, xmin::text AS v, sessions FROM session_presence WHERE process_id = $1",
                            process_id)
    return {r["user_id"]: (r["v"], r["sessions"]) for r in rows}


async def test_a_write_sends_only_what_changed(pool):
    uids = await _users(pool, 50)
    store, hub = Store(pool), _Hub()
    writer = Presence(hub, interval=10)  # type: ignore[arg-type]
    hub.counts = {uid: 1 for uid in uids}
    await writer.write(store)
    first = await _versions(pool, writer.process_id)
    assert len(first) == 50
    await writer.write(store)  # nothing changed: no per-user row is touched
    assert await _versions(pool, writer.process_id) == first
    hub.counts[uids[0]] = 3
    del hub.counts[uids[1]]
    await writer.write(store)
    now = await _versions(pool, writer.process_id)
    assert uids[1] not in now and now[uids[0]][1] == 3 and now[uids[0]][0] != first[uids[0]][0]
    assert {u: now[u] for u in uids[2:]} == {u: first[u] for u in uids[2:]}
    await writer.stop(store)
    assert await pool.fetchval("SELECT count(*) FROM session_presence") == 0


async def test_a_process_whose_heartbeat_is_stale_is_not_counted(pool):
    uids = await _users(pool, 2)
    store = Store(pool)
    live, dead, reader = _Hub(), _Hub(), Presence(_Hub(), interval=10)  # type: ignore[arg-type]
    w_live, w_dead = Presence(live, interval=10), Presence(dead, interval=10)  # type: ignore[arg-type]
    live.counts, dead.counts = {uids[0]: 1}, {uids[0]: 2, uids[1]: 1}
    await w_live.write(store)
    await w_dead.write(store)
    assert await reader.counts(store, "acc_1", uids) == {uids[0]: 3, uids[1]: 1}
    await pool.execute("UPDATE session_presence_processes SET seen_at = now() - interval '1 hour' "
                       "WHERE process_id = $1", w_dead.process_id)  # it stopped writing long ago
    assert await reader.counts(store, "acc_1", uids) == {uids[0]: 1, uids[1]: 0}
    await w_live.write(store)  # the next writer purges the stale process's rows
    assert {r["process_id"] for r in await pool.fetch("SELECT process_id FROM session_presence")} == {w_live.process_id}
