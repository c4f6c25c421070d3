"""The portal, continued: open sessions counted across processes, names on the calls page, the CRM record's
state there, Konto and Users on a server without sipgate's OAuth client, and CRM instances an admin may not set."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from structlog.testing import capture_logs

from hejcti.store import q
from tests.e2e.test_fanout import hangup, new_call
from tests.fakes import hubspot, salesforce
from tests.fakes.base import Running
from tests.portal_kit import CSP, Portal, browser, catalog, keys_shown


async def _users_json(portal: Portal, want: Any, key: str = "sessions") -> list[dict[str, Any]]:
    """users.json's rows once the first row's ``key`` is ``want`` (or as they are after a few seconds)."""
    for _ in range(60):
        rows = json.loads(await portal.get("/portal/users.json"))["users"]
        if rows and rows[0][key] == want:
            break
        await asyncio.sleep(0.1)
    return rows


async def test_open_sessions_are_counted_across_processes(make_harness):
    a = await make_harness(presence_interval_s=0.2)
    b = await make_harness(presence_interval_s=0.2)
    acc = await a.account()
    token = await a.user(acc["account_id"], "w1")
    on_a = await a.connect(token)
    on_b = await b.connect(token)
    async with browser() as http:
        portal = Portal(a, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        assert (await _users_json(portal, 2))[0]["sessions"] == 2  # one here, one on the other process
        await on_b.close()
        assert (await _users_json(portal, 1))[0]["sessions"] == 1
        await b.stop()  # a process that stops takes its rows with it
        rows = await a.pool.fetch("SELECT process_id FROM session_presence")
        assert len({r["process_id"] for r in rows}) <= 1
        page = await portal.get("/portal/users")
        assert "per process" not in page and "this server process" not in page
    await on_a.close()


async def _calls_of(h: Any, acc: dict[str, Any], *call_ids: str) -> None:
    for call_id in call_ids:
        assert (await h.post(acc["url"], new_call(call_id, frm="492111234567")))[0] == 200
        assert (await h.post(acc["url"], hangup(call_id)))[0] == 200
    for _ in range(100):
        if await h.pool.fetchval("SELECT count(*) FROM calls WHERE account_id = $1", acc["account_id"]) == len(call_ids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the calls were not stored")


async def test_the_calls_page_shows_the_records_link_and_the_reason_it_failed(harness):
    acc = await harness.account()
    await harness.user(acc["account_id"], "w0")
    await _calls_of(harness, acc, "CALLREC1", "CALLREC2")
    insert = ("INSERT INTO call_records (account_id, record_key, call_ids, state, crm_url, last_error) "
              "VALUES ($1, $2, ARRAY[$2], $3, $4, $5)")
    await harness.pool.execute(insert, acc["account_id"], "CALLREC1", "done", "https://crm.example.com/calls/77", None)
    await harness.pool.execute(insert, acc["account_id"], "CALLREC2", "failed", None,
                               'HTTP 400: <b>field "subject" is required</b>')
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        async with http.get(harness.base + "/portal/calls") as r:
            raw = await r.text()
        assert '<a href="https://crm.example.com/calls/77" rel="noreferrer noopener">open</a>' in raw
        assert "&lt;b&gt;field &#34;subject&#34; is required&lt;/b&gt;" in raw and "<b>" not in raw
        assert "written" in raw and "failed" in raw
        assert "<td>w0</td>" in raw  # without sipgate connected: the id alone, for whom it rang


async def test_without_sipgate_sign_in_konto_says_how_to_connect_and_users_get_a_token_once(harness):
    acc = await harness.account()
    old = await harness.user(acc["account_id"], "w1")
    user_id = (await harness.admin.list_users(acc["account_id"]))["users"][0]["user_id"]
    ws = await harness.connect(old)
    with capture_logs() as logs:
        async with browser() as http:
            portal = Portal(harness, http)
            await portal.sign_in(acc["account_id"], acc["admin_token"])
            konto = await portal.get("/portal/account")
            assert f"hejcti account connect-sipgate {acc['account_id']} --token-id token-… --token …" in konto
            assert "personal access token" in konto
            status, page, _ = await portal.post("/portal/users/enable", {"sipgate_user": "w5"})
            assert 'Press "New token" in their row' in page and "with sipgate" not in page
            status, page, r = await portal.post(f"/portal/users/{user_id}/token")
            assert status == 200 and r.headers["Cache-Control"] == "no-store" and str(r.url).endswith("/token")
            token = re.search(r'id="new_token" class="wide" value="([^"]+)"', page).group(1)
            assert "New token for w1" in page and "shown only this once" in page
            assert '<input type="hidden" name="next" value="/portal/users">' in page  # the switch: back to a GET
            assert (await ws.expect("__closed__", timeout=10))["code"] == 4502  # the old token ended
            again = await harness.connect(token)
            assert token not in await portal.get("/portal/users")  # once
            status, page, _ = await portal.post(f"/portal/users/{user_id}/token", csrf=False)
            assert status == 403 and token not in page
    assert token not in repr(logs) and old not in repr(logs)
    assert not again.of("__closed__")



async def test_the_crm_user_picker_lists_hubspot_owners_and_is_gone_where_the_crm_cannot_list(harness):
    acc = await harness.account()  # a CSV file on the server: nothing to pick from
    await harness.user(acc["account_id"], "w1")
    state = hubspot.State()
    state.add_owner("41630000", "Grace", "Hopper", "grace.hopper@example.org")
    async with Running(hubspot.make_app(state)) as base, browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        assert 'action="/portal/users/crm-token"' not in await portal.get("/portal/users")
        await harness.admin.set_crm(acc["account_id"], crm="hubspot", crm_instance=base)
        assert 'action="/portal/users/crm-token"' in await portal.get("/portal/users")
        status, page, _ = await portal.post("/portal/users/crm-token", {"token": "good-token"})
        assert status == 200 and "Grace Hopper <grace.hopper@example.org>" in page


async def test_salesforce_without_an_instance_says_the_picker_needs_it_and_lists_once_it_is_set(harness):
    h = harness
    acc = await h.account()
    await h.user(acc["account_id"], "w1")
    await h.admin.set_crm(acc["account_id"], crm="salesforce", crm_instance="")  # the extension's session gives it
    state = salesforce.State()
    state.add_user("005000000000001AAA", "Ada Lovelace", "ada@example.org")
    async with Running(salesforce.make_app(state)) as base, browser() as http:
        portal = Portal(h, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        page = await portal.get("/portal/users")
        assert "Listing Salesforce users needs the instance URL set on the Account page" in page
        assert 'name="token"' not in page and "is the token valid" not in page
        status, page, _ = await portal.post("/portal/users/crm-token", {"token": "good-token"})  # a token kept before
        assert status == 200 and "Listing Salesforce users needs the instance URL" in page
        assert "is the token valid" not in page and not state.requests
        await portal.post("/portal/language", {"lang": "de", "next": "/portal/users"})
        page = await portal.get("/portal/users")
        assert "Um Salesforce-Benutzer aufzulisten, braucht es die Instanz-URL auf der Seite Konto" in page
        assert keys_shown(page) == []
        await h.admin.set_crm(acc["account_id"], crm="salesforce", crm_instance=base)
        status, page, _ = await portal.post("/portal/users/crm-token", {"token": "good-token"})
        assert status == 200 and "Ada Lovelace <ada@example.org>" in page and "Instanz-URL" not in page


async def test_the_portal_refuses_a_crm_on_the_servers_own_networks(make_harness):
    internal = ("https://127.0.0.1", "https://169.254.169.254/latest", "https://10.0.0.1:8443", "http://[::1]/",
                "https://localhost", "https://2130706433", "https://[::ffff:127.0.0.1]")
    for allowed in (False, True):
        h = await make_harness(crm_allow_private_hosts=allowed)
        acc = await h.account()
        async with browser() as http:
            portal = Portal(h, http)
            await portal.sign_in(acc["account_id"], acc["admin_token"])
            for url in internal:
                status, page, _ = await portal.post("/portal/account/crm", {"crm": "sugarcrm", "crm_instance": url})
                stored = (await h.admin.show_account(acc["account_id"]))["crm_instance"]
                if allowed:
                    assert status == 200 and stored == url.rstrip("/"), url
                else:
                    assert status == 400 and "private, loopback or link-local network" in page, url
                    assert stored != url.rstrip("/")
    await h.admin.set_crm(acc["account_id"], crm="sugarcrm", crm_instance="https://127.0.0.1")  # the CLI's way


async def test_a_refused_sipgate_sign_in_is_a_portal_page_with_the_language_switch(harness):
    async with browser("de") as http:
        async with http.get(harness.base + "/auth/sipgate/callback") as r:  # no code, no state: incomplete
            page = await r.text()
            assert r.status == 400 and "hejcti_portal" not in r.headers.get("Set-Cookie", "")
            assert r.headers["Content-Security-Policy"] == CSP
        assert "<h1>Anmeldung fehlgeschlagen</h1>" in page and "Die Antwort von sipgate ist unvollständig." in page
        assert '<a href="/portal">Zurück zum Portal</a>' in page and keys_shown(page) == []
        assert 'href="/portal/static/portal.css"' in page
        switch = re.search(r'<a href="(/portal/refused/incomplete\?lang=en)"', page)
        assert switch, page
        async with http.get(harness.base + switch.group(1)) as r:
            english = await r.text()
            assert r.status == 200 and "The answer from sipgate is incomplete." in english
        async with http.get(harness.base + "/portal/refused/nonsense") as r:
            assert r.status == 404


async def test_an_empty_crm_token_is_called_empty_and_the_german_texts_read_right(harness):
    assert "funktioniert ab sofort nicht mehr" in catalog("de")["account.webhook_rotate_help"]
    acc = await harness.account()
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        for token, said in (("", "The token is empty"), ("two words", "The token is empty"),
                            ("x" * 2001, "The token is too long")):
            status, page, _ = await portal.post("/portal/users/crm-token", {"token": token})
            assert status == 400 and said in page, token[:20]


async def test_the_calls_page_finds_a_calls_record_through_the_gin_index(harness):
    acc = await harness.account()  # an account with many call records: its id narrows nothing, the call id does
    await harness.pool.execute("INSERT INTO call_records (account_id, record_key, call_ids, state) "
                               "SELECT $1, 'C' || i, ARRAY['C' || i], 'done' FROM generate_series(1, 3000) i",
                               acc["account_id"])
    await harness.pool.execute("ANALYZE call_records")
    async with harness.pool.acquire() as conn, conn.transaction():
        # a plan that may not walk a table or a b-tree in order: whether the GIN index can serve it at all
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + q("portal_calls"), acc["account_id"], 25, 0))
    assert "Bitmap Index Scan on call_records_calls" in plan, plan
