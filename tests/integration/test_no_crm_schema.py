"""An account without a CRM yet (crm_kind 'none', made by an admin's first sign-in with sipgate): a database
made before that kind existed gets it from `hejcti migrate`; other kinds stay refused; the account functions
find one sipgate account's account once, however many sign-ins make it at the same moment."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from hejcti import db
from hejcti.admin import Admin
from hejcti.config import Settings
from hejcti.store import Store
from tests.db import insert_account

OLD_CHECK = ("CHECK (crm_kind IN ('salesforce', 'hubspot', 'pipedrive', 'zendesk', 'sugarcrm', 'suitecrm', "
             "'directory'))")


async def test_migrate_lets_an_older_database_keep_accounts_without_a_crm(database_url, pool):
    await pool.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_crm_kind_check")
    await pool.execute(f"ALTER TABLE accounts ADD CONSTRAINT accounts_crm_kind_check {OLD_CHECK}")
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_account(pool, "acc_old", crm="none")
    await db.migrate(database_url)
    await db.migrate(database_url)  # again: nothing left to do
    await insert_account(pool, "acc_new", crm="none")
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_account(pool, "acc_bad", crm="excel")


async def test_one_account_per_sipgate_account_when_sign_ins_race(pool):
    admin = Admin(Store(pool), Settings(secret_key="k" * 32, database_url="postgresql://x/y"))
    made = await asyncio.gather(*[admin.account_for_sipgate("7654321") for _ in range(5)])
    assert len({account_id for account_id, _ in made}) == 1
    assert sum(1 for _, new in made if new) == 1
    row = await pool.fetchrow("SELECT crm_kind, log_calls, name FROM accounts WHERE sipgate_account_id = '7654321'")
    assert tuple(row) == ("none", False, "sipgate 7654321")
    users = await asyncio.gather(*[admin.sign_in_user(made[0][0], "w3") for _ in range(3)])
    assert len({u["user_id"] for u in users}) == 1 and len({u["token"] for u in users}) == 3
    assert await pool.fetchval("SELECT count(*) FROM users") == 1
