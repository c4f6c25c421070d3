"""A sipgate credential stored under another SECRET_KEY (CONTRACT §8): it cannot be read, and every caller says so
as sipgate_not_connected (an admin must connect sipgate again): the session's ``me`` and the CLI's
configure-webhooks as one line, with nothing asked of sipgate and nothing changed there."""

from __future__ import annotations

import asyncpg

from hejcti import crypto
from hejcti.sipgate import Credential
from tests.e2e.test_cli import env_for, hejcti, one_json
from tests.fakes.sipgate import PAT, PAT_ID

SAYS = "the stored sipgate credential cannot be read with this SECRET_KEY; an admin must connect sipgate again"


async def seal_under_another_key(db, account_id: str) -> None:
    """The account's row holds a credential as a process with another SECRET_KEY stored it."""
    sealed = crypto.encrypt(b"another-secret-key", account_id, Credential.pat(PAT_ID, PAT).dumps())
    await db.execute("UPDATE accounts SET sipgate_credential = $2, sipgate_account_id = '1234567' WHERE id = $1",
                     account_id, sealed)


async def test_me_answers_sipgate_not_connected(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    acc = await h.account()
    await seal_under_another_key(h.pool, acc["account_id"])
    session = await h.connect(await h.user(acc["account_id"], "w0"))
    reply = await session.request({"type": "me", "id": "k"})
    assert reply == {"type": "error", "id": "k", "code": "sipgate_not_connected", "message": SAYS}
    assert sipgate_fake.state.requests == []


async def test_configure_webhooks_is_one_line(database_url, tmp_path, sipgate_fake):
    env = env_for(database_url, tmp_path, HEJCTI_SIPGATE_API_URL=sipgate_fake.api_url,
                  HEJCTI_PUBLIC_URL="https://hej.example.org")
    aid = one_json(await hejcti(env, "account", "create", "--name", "Acme", "--crm", "hubspot",
                                "--json"))["account_id"]
    conn = await asyncpg.connect(database_url)
    try:
        await seal_under_another_key(conn, aid)
    finally:
        await conn.close()
    proc = await hejcti(env, "account", "configure-webhooks", aid, "--json", ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"hejcti: {SAYS}"]
    assert sipgate_fake.state.settings["incomingUrl"] == "https://old.example.org/in"
