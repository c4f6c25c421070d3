"""calls_popped (the fan-out's ring-to-pop batch, about once a second) probes calls' primary key once per popped
call, whatever the size of the table: never a walk over every call."""

from hejcti.store import q


async def _calls(pool, n: int) -> None:
    await pool.execute("INSERT INTO accounts (id, name, crm_kind, webhook_token_hash, webhook_nonce, admin_token_hash) "
                       "SELECT 'acc_' || a, 'A', 'none', decode(md5(a::text), 'hex'), '\\x00', '\\x00' "
                       "FROM generate_series(1, 4) a")
    await pool.execute("INSERT INTO calls (account_id, call_id, started_at) "
                       "SELECT 'acc_' || (1 + i % 4), 'C' || i, now() FROM generate_series(1, $1::int) i", n)
    await pool.execute("ANALYZE calls")


async def test_calls_popped_probes_the_primary_key_per_call(pool):
    await _calls(pool, 20_000)
    keys = [(f"acc_{1 + i % 4}", f"C{i}") for i in range(1, 1001)]
    args = ([k[0] for k in keys], [k[1] for k in keys], [5] * len(keys), [True] * len(keys))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")  # as a prepared statement runs it
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + q("calls_popped"), *args))
    assert "calls_pkey" in plan and "Seq Scan on calls" not in plan, plan


async def test_calls_popped_keeps_the_first_pop(pool):
    await _calls(pool, 8)
    await pool.execute(q("calls_popped"), ["acc_2", "acc_3", "acc_2"], ["C1", "C2", "C404"], [700, 900, 1],
                       [True, False, True])
    await pool.execute(q("calls_popped"), ["acc_2", "acc_3"], ["C1", "C2"], [500, 950], [False, True])
    rows = {r["call_id"]: (r["pop_ms"], r["pop_resolved"]) for r in
            await pool.fetch("SELECT call_id, pop_ms, pop_resolved FROM calls WHERE pop_ms IS NOT NULL")}
    assert rows == {"C1": (500, True), "C2": (900, False)}
