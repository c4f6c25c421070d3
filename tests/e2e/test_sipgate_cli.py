"""The sipgate commands of the CLI (CONTRACT §3), as subprocesses against the fake sipgate: connect-sipgate,
configure-webhooks, user sync and user list with live names; their errors as one line on stderr; and what
they leave in the database (CONTRACT §6: no name, email, user number or token in plain text)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.db import assert_absent, dump_tables
from tests.e2e.test_cli import env_for, hejcti, one_json
from tests.fakes.sipgate import PAT, PAT_ID


@pytest.fixture
def env(database_url, tmp_path, sipgate_fake):
    return env_for(database_url, tmp_path, HEJCTI_SIPGATE_API_URL=sipgate_fake.api_url,
                   HEJCTI_PUBLIC_URL="https://hej.example.org")


async def account(env) -> dict:
    return one_json(await hejcti(env, "account", "create", "--name", "Acme", "--crm", "hubspot", "--json"))


async def connect(env, aid: str) -> dict:
    return one_json(await hejcti(env, "account", "connect-sipgate", aid, "--token-id", PAT_ID, "--token", PAT,
                                 "--json"))


async def test_connect_configure_sync(env, sipgate_fake):
    acc = await account(env)
    aid = acc["account_id"]
    assert await connect(env, aid) == {"account_id": aid, "sipgate_account": "1234567", "users": 3}

    configured = one_json(await hejcti(env, "account", "configure-webhooks", aid, "--json"))
    assert configured["before"] == {"incomingUrl": "https://old.example.org/in",
                                    "outgoingUrl": "https://old.example.org/out", "log": True,
                                    "whitelist": ["p0", "g1"]}
    assert configured["after"] == {**configured["before"], "incomingUrl": acc["webhook_url"],
                                   "outgoingUrl": acc["webhook_url"]}
    assert sipgate_fake.state.settings == configured["after"]
    assert acc["webhook_url"].startswith("https://hej.example.org/webhooks/sipgate/")

    synced = one_json(await hejcti(env, "user", "sync", "--account", aid, "--json"))
    assert [u["sipgate_user"] for u in synced["added"]] == ["w0", "w1", "w2"] and synced["kept"] == []
    assert "token" not in str(synced)
    sipgate_fake.state.users.append({"id": "w3", "firstname": "New", "lastname": "Colleague"})
    again = one_json(await hejcti(env, "user", "sync", "--account", aid, "--json"))
    assert [u["sipgate_user"] for u in again["added"]] == ["w3"]
    assert [u["sipgate_user"] for u in again["kept"]] == ["w0", "w1", "w2"]
    assert {u["user_id"] for u in again["kept"]} == {u["user_id"] for u in synced["added"]}

    # a synced user gets a token the usual way
    token = one_json(await hejcti(env, "user", "token", synced["added"][0]["user_id"], "--json"))["token"]
    assert len(token) >= 43

    # one sipgate account connects to one account only (the same one again is fine)
    await connect(env, aid)
    other = (await account(env))["account_id"]
    proc = await hejcti(env, "account", "connect-sipgate", other, "--token-id", PAT_ID, "--token", PAT, ok=False)
    assert proc.returncode == 1 and aid in proc.stderr and "1234567" in proc.stderr


async def test_user_list_shows_live_names_and_degrades_without_sipgate(env, sipgate_fake, tmp_path, database_url):
    aid = (await account(env))["account_id"]
    await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w2", "--json")
    plain = one_json(await hejcti(env, "user", "list", "--account", aid, "--json"))
    assert plain["sipgate"] == "not_connected" and plain["users"][0]["name"] is None

    await connect(env, aid)
    listed = one_json(await hejcti(env, "user", "list", "--account", aid, "--json"))
    assert listed["sipgate"] == "connected"
    [user] = listed["users"]
    assert (user["sipgate_user"], user["name"], user["email"], user["extension"]) == (
        "w2", "Jürgen Müller", "juergen.mueller@example.org", "12")

    down = env_for(database_url, tmp_path, HEJCTI_SIPGATE_API_URL="http://127.0.0.1:9/v2")
    degraded = one_json(await hejcti(down, "user", "list", "--account", aid, "--json"))
    assert degraded["sipgate"] == "unavailable" and "sipgate" in degraded["sipgate_error"]
    assert [u["sipgate_user"] for u in degraded["users"]] == ["w2"] and degraded["users"][0]["name"] is None


async def stored_credential(database_url: str, aid: str):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT sipgate_account_id, sipgate_credential FROM accounts WHERE id = $1", aid)
    finally:
        await conn.close()


async def test_a_wrong_token_is_one_line_and_nothing_stored(env, sipgate_fake, database_url):
    aid = (await account(env))["account_id"]
    proc = await hejcti(env, "account", "connect-sipgate", aid, "--token-id", PAT_ID, "--token", "wrong", "--json",
                        ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "sipgate rejected" in proc.stderr
    row = await stored_credential(database_url, aid)
    assert row["sipgate_credential"] is None and row["sipgate_account_id"] is None


@pytest.mark.parametrize("setup, says", [
    (lambda f: f.state.fail_next(1, 403), "sipgate refused (403): Forbidden"),
    (lambda f: f.state.fail_next(9, 503), "sipgate answered 503"),
])
async def test_sipgate_refusing_or_failing_is_one_line(env, sipgate_fake, setup, says):
    aid = (await account(env))["account_id"]
    await connect(env, aid)
    setup(sipgate_fake)
    proc = await hejcti(env, "account", "configure-webhooks", aid, "--json", ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"hejcti: {says}"]
    assert sipgate_fake.state.settings["incomingUrl"] == "https://old.example.org/in"  # nothing half-changed


async def test_unreachable_sipgate_and_unconnected_account_are_one_line(database_url, tmp_path, env):
    aid = (await account(env))["account_id"]
    not_connected = await hejcti(env, "user", "sync", "--account", aid, "--json", ok=False)
    assert not_connected.returncode == 1
    assert len(not_connected.stderr.strip().splitlines()) == 1 and "not connected" in not_connected.stderr
    down = env_for(database_url, tmp_path, HEJCTI_SIPGATE_API_URL="http://127.0.0.1:9/v2")
    proc = await hejcti(down, "account", "connect-sipgate", aid, "--token-id", PAT_ID, "--token", PAT, ok=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == ["hejcti: cannot reach sipgate: "
                                                                          "ClientConnectorError"]


async def test_nothing_of_sipgate_users_or_the_token_is_stored(env, sipgate_fake, database_url):
    aid = (await account(env))["account_id"]
    outputs = [await hejcti(env, "account", "connect-sipgate", aid, "--token-id", PAT_ID, "--token", PAT, "--json"),
               await hejcti(env, "user", "sync", "--account", aid, "--json"),
               await hejcti(env, "user", "list", "--account", aid, "--json")]
    assert "Lovelace" in outputs[-1].stdout  # the names were there to leak
    secrets = [PAT, PAT_ID]
    for u in sipgate_fake.state.users:
        secrets += [u["firstname"], u["lastname"], u["email"]]
    secrets += [n["number"] for ns in sipgate_fake.state.numbers.values() for n in ns]
    secrets += [n["number"][2:] for ns in sipgate_fake.state.numbers.values() for n in ns]  # national digits too
    assert_absent(await dump_tables(database_url), *secrets)
    for proc in outputs:  # nor in what the commands logged
        assert PAT not in proc.stderr


async def test_user_list_with_a_users_numbers_or_devices_failing_prints_the_list(env, sipgate_fake):
    aid = (await account(env))["account_id"]
    await connect(env, aid)
    for user in ("w1", "w2"):
        await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", user, "--json")
    for path in ("/w2/devices", "/w2/numbers", "/numbers"):  # every attempt of each
        sipgate_fake.state.fail_at("GET", path, 503, "down", n=3)
    proc = await hejcti(env, "user", "list", "--account", aid, "--json", ok=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    listed = one_json(proc)
    assert listed["sipgate"] == "connected"
    assert [(u["sipgate_user"], u["name"]) for u in listed["users"]] == [("w1", "Grace Hopper"),
                                                                       ("w2", "Jürgen Müller")]
