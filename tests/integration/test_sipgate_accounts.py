"""An account's sipgate side against a real PostgreSQL and the fake sipgate: the credential stored encrypted,
OAuth tokens refreshed once across processes (the rotated refresh token is in the database, not in memory),
a rejected credential shown as disconnected, and live users fetched once for many askers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from hejcti import db
from hejcti.sipgate import Credential, SipgateAuthError, SipgateNotConnectedError, UserInfo
from hejcti.sipgate_live import SipgateAccounts
from hejcti.store import Store
from tests.db import insert_account
from tests.fakes.sipgate import PAT, PAT_ID
from tests.harness import make_settings

INFO = UserInfo(sub="w0", masterSipId="1234567")


@pytest.fixture
async def make_accounts(database_url, tmp_path, sipgate_fake):
    """``SipgateAccounts`` as a process holds it: a pool and an HTTP session of its own."""
    opened: list[tuple[object, aiohttp.ClientSession]] = []

    async def make() -> SipgateAccounts:
        settings = make_settings(database_url, Path(tmp_path), sipgate_api_url=sipgate_fake.api_url,
                                 sipgate_login_url=sipgate_fake.login_url, sipgate_client_id=sipgate_fake.state.client_id,
                                 sipgate_client_secret=sipgate_fake.state.client_secret)
        pool = await db.create_pool(database_url, min_size=1, max_size=3)
        http = aiohttp.ClientSession()
        opened.append((pool, http))
        return SipgateAccounts(Store(pool), settings, http)

    yield make
    for pool, http in opened:
        await http.close()
        await pool.close()  # type: ignore[attr-defined]


def token_posts(sipgate_fake) -> int:
    return sum(1 for m, p in sipgate_fake.state.requests if m == "POST" and p.endswith("/token"))


async def stored(pool, account_id: str):
    return await pool.fetchrow("SELECT sipgate_account_id, sipgate_credential, sipgate_rejected_at FROM accounts "
                               "WHERE id = $1", account_id)


async def test_credential_is_stored_encrypted_and_read_back(pool, make_accounts):
    await insert_account(pool, "acc_1")
    accounts = await make_accounts()
    with pytest.raises(SipgateNotConnectedError):
        await accounts.client("acc_1")
    await accounts.store_credential("acc_1", INFO, Credential.pat(PAT_ID, PAT))
    row = await stored(pool, "acc_1")
    assert row["sipgate_account_id"] == "1234567"
    assert PAT.encode() not in row["sipgate_credential"] and PAT_ID.encode() not in row["sipgate_credential"]
    assert (await accounts.credential("acc_1")) == Credential.pat(PAT_ID, PAT)


async def test_a_second_process_uses_the_rotated_token_instead_of_refreshing_again(pool, make_accounts, sipgate_fake):
    await insert_account(pool, "acc_1")
    first, second = await make_accounts(), await make_accounts()
    await first.store_credential("acc_1", INFO, Credential.oauth(sipgate_fake.state.issue("w0"), owner="w0"))
    client_a, client_b = await first.client("acc_1"), await second.client("acc_1")  # both hold the same tokens
    sipgate_fake.state.expire_access_tokens()
    assert [u.id for u in await client_a.users()] == ["w0", "w1", "w2"]
    # the first refresh voided the refresh token process B holds; B must read the rotated one, not use its own
    assert [u.id for u in await client_b.users()] == ["w0", "w1", "w2"]
    assert token_posts(sipgate_fake) == 1
    row = await stored(pool, "acc_1")
    assert row["sipgate_rejected_at"] is None
    rotated = await first.credential("acc_1")
    assert rotated.refresh_token in sipgate_fake.state.refresh_tokens and client_b.credential == rotated


async def test_concurrent_refreshes_in_one_process_refresh_once(pool, make_accounts, sipgate_fake):
    await insert_account(pool, "acc_1")
    accounts = await make_accounts()
    await accounts.store_credential("acc_1", INFO, Credential.oauth(sipgate_fake.state.issue("w0"), owner="w0"))
    clients = [await accounts.client("acc_1") for _ in range(5)]
    sipgate_fake.state.expire_access_tokens()
    results = await asyncio.gather(*(c.userinfo() for c in clients))
    assert {r.sub for r in results} == {"w0"}
    assert token_posts(sipgate_fake) == 1


async def test_a_rejected_credential_shows_the_account_disconnected_until_connected_again(pool, make_accounts,
                                                                                         sipgate_fake):
    await insert_account(pool, "acc_1")
    accounts = await make_accounts()
    await accounts.store_credential("acc_1", INFO, Credential.pat(PAT_ID, PAT))
    sipgate_fake.state.pats.clear()  # the admin revoked the token
    with pytest.raises(SipgateAuthError):
        await accounts.users("acc_1")
    assert (await stored(pool, "acc_1"))["sipgate_rejected_at"] is not None
    asked = len(sipgate_fake.state.requests)
    with pytest.raises(SipgateAuthError) as e:  # no more calls to sipgate with it
        await accounts.users("acc_1")
    assert e.value.code == "sipgate_not_connected" and len(sipgate_fake.state.requests) == asked
    sipgate_fake.state.pats[PAT_ID] = PAT
    await accounts.store_credential("acc_1", INFO, Credential.pat(PAT_ID, PAT))
    assert len(await accounts.users("acc_1")) == 3


async def test_a_spent_refresh_token_disconnects_the_account(pool, make_accounts, sipgate_fake):
    await insert_account(pool, "acc_1")
    accounts = await make_accounts()
    await accounts.store_credential("acc_1", INFO, Credential.oauth(sipgate_fake.state.issue("w0"), owner="w0"))
    sipgate_fake.state.expire_access_tokens()
    sipgate_fake.state.refresh_tokens.clear()
    with pytest.raises(SipgateAuthError):
        await (await accounts.client("acc_1")).users()
    assert (await stored(pool, "acc_1"))["sipgate_rejected_at"] is not None


async def test_live_users_one_fetch_for_ten_askers_with_numbers_and_devices(pool, make_accounts, sipgate_fake):
    await insert_account(pool, "acc_1")
    accounts = await make_accounts()
    await accounts.store_credential("acc_1", INFO, Credential.pat(PAT_ID, PAT))
    sipgate_fake.state.delay = 0.05
    results = await asyncio.gather(*(accounts.users("acc_1") for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert sipgate_fake.state.count("GET", "/users") == 1 and sipgate_fake.state.count("GET", "/numbers") == 1
    assert len(sipgate_fake.state.requests) == 2  # no request per user: numbers by their endpoint, devices not needed
    grace = next(u for u in results[0] if u.id == "w1")
    assert grace.extension == "11" and grace.e164s == ["+4921155500101"]
    devices = await asyncio.gather(*(accounts.devices("acc_1", "w1") for _ in range(5)))
    assert [(d.id, d.online) for d in devices[0]] == [("e1", True), ("y1", False)]
    assert sipgate_fake.state.count("GET", "/w1/devices") == 1 and len(sipgate_fake.state.requests) == 3


async def test_live_users_on_neo_have_no_numbers_or_devices(pool, make_accounts, sipgate_fake):
    await insert_account(pool, "acc_1")
    accounts = await make_accounts()
    await accounts.store_credential("acc_1", INFO, Credential.pat(PAT_ID, PAT))
    sipgate_fake.state.neo = True
    users = await accounts.users("acc_1")
    assert [(u.id, u.numbers) for u in users] == [("w0", ()), ("w1", ()), ("w2", ())]
    assert await accounts.devices("acc_1", "w1") == ()
