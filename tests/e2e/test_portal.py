"""The portal over HTTP (CONTRACT §9): sign-in with the admin token, the session cookie, CSRF on every POST,
the headers on every response, only the account's own data, no token in any page or log line, both languages
complete, and the pages' forms calling the account and user functions."""

from __future__ import annotations

import json
import re

from structlog.testing import capture_logs

from tests.e2e.test_fanout import hangup, new_call
from tests.portal_kit import CSP, Portal, browser, catalog, keys_shown

PAGES = ("/portal/account", "/portal/users", "/portal/calls")


def test_both_catalogs_have_every_key():
    en, de = catalog("en"), catalog("de")
    assert set(en) == set(de)
    assert all(v.strip() for v in [*en.values(), *de.values()])


async def test_pages_render_in_both_languages_without_a_raw_key(harness):
    acc = await harness.account()
    await harness.user(acc["account_id"], "w1", crm_user="crm-7")
    for lang, word in (("en", "Users"), ("de", "Benutzer")):
        async with browser(lang) as http:
            portal = Portal(harness, http)
            signin = await portal.get("/portal/signin")
            assert keys_shown(signin) == []
            await portal.sign_in(acc["account_id"], acc["admin_token"])
            for path in PAGES:
                page = await portal.get(path)
                assert keys_shown(page) == [], (lang, path)
                assert f'<html lang="{lang}">' in page
            assert word in page


async def test_headers_and_cookie(harness):
    acc = await harness.account()
    async with browser() as http:
        for path in ("/portal/signin", "/portal/static/portal.css", "/portal/nothing-here", "/portal"):
            async with http.get(harness.base + path, allow_redirects=False) as r:
                assert r.headers["Content-Security-Policy"] == CSP, path
                assert r.headers["X-Frame-Options"] == "DENY"
                assert r.headers["Referrer-Policy"] == "same-origin"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
        portal = Portal(harness, http)
        await portal.get("/portal/signin")
        status, _, r = await portal.post("/portal/signin", {"account_id": acc["account_id"],
                                                             "admin_token": acc["admin_token"]}, follow=False)
        assert status == 303 and r.headers["Location"] == "/portal/account"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # http PUBLIC_URL
        page = await portal.get("/portal/users")
        assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP forbids it


async def test_a_wrong_admin_token_is_refused(harness):
    acc = await harness.account()
    other = await harness.account(name="Other")
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.get("/portal/signin")
        for account_id, token in ((acc["account_id"], other["admin_token"]), (acc["account_id"], ""),
                                  ("acc_nope", acc["admin_token"])):
            status, text, _ = await portal.post("/portal/signin", {"account_id": account_id, "admin_token": token})
            assert status == 401 and "Account id or admin token is wrong." in text
        await portal.get("/portal/account")  # not signed in: back to the sign-in page
        assert "admin token" in (await portal.get("/portal/account")).lower()


async def test_every_post_needs_the_csrf_token(harness):
    acc = await harness.account()
    await harness.user(acc["account_id"], "w1")
    user_id = (await harness.admin.list_users(acc["account_id"]))["users"][0]["user_id"]
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        for path, data in (("/portal/account/crm", {"crm": "hubspot"}), ("/portal/account/rotate", {}),
                           ("/portal/account/webhooks", {}), ("/portal/account/delete", {"confirm": "Acme"}),
                           ("/portal/users/enable", {"sipgate_user": "w5"}),
                           (f"/portal/users/{user_id}/map", {"crm_user": "x"}),
                           (f"/portal/users/{user_id}/revoke", {}), (f"/portal/users/{user_id}/disable", {}),
                           ("/portal/users/crm-token", {"token": "abc"}), ("/portal/language", {"lang": "de"}),
                           ("/portal/signout", {})):
            for csrf in (None, "forged"):
                extra = {"csrf": csrf} if csrf else {}
                status, text, _ = await portal.post(path, {**data, **extra}, csrf=False)
                assert status == 403, (path, csrf, status)
                assert "The form has expired." in text
        assert (await harness.admin.list_users(acc["account_id"]))["users"][0]["crm_user"] is None
        assert (await harness.admin.show_account(acc["account_id"]))["crm"] == "directory"


async def test_an_admin_sees_only_their_own_account(harness):
    a = await harness.account(name="Acme")
    b = await harness.account(name="Bravo")
    await harness.user(b["account_id"], "w7", crm_user="bravo-crm-user")
    b_user = (await harness.admin.list_users(b["account_id"]))["users"][0]["user_id"]
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(a["account_id"], a["admin_token"])
        for path in (f"/portal/users/{b_user}/map", f"/portal/users/{b_user}/revoke",
                     f"/portal/users/{b_user}/disable"):
            status, text, _ = await portal.post(path, {"crm_user": "stolen"})
            assert status == 404, path
            assert "not part of your account" in text
        for path in (*PAGES, *(p + ".json" for p in PAGES), f"/portal/account?account={b['account_id']}",
                     f"/portal/users/{b_user}"):
            page = await portal.get(path, status=404 if path.endswith(b_user) else 200)
            assert b["account_id"] not in page and "bravo-crm-user" not in page, path
            assert not re.search(r"[(>\s\"]w7[)<\s\"]", page), path  # B's user as a page shows one, not inside a token
        twin = json.loads(await portal.get("/portal/account.json"))  # each page's machine-readable twin
        assert twin["account"]["account_id"] == a["account_id"] and twin["sipgate"]["connected"] is False
        assert json.loads(await portal.get("/portal/calls.json")) == {"page": 1, "pages": 1, "calls": []}
        assert json.loads(await portal.get("/portal/users.json")) == {"sipgate": "not_connected", "users": []}
    users = (await harness.admin.list_users(b["account_id"]))["users"]
    assert users[0]["crm_user"] == "bravo-crm-user"


async def test_the_forms_call_the_account_functions_and_no_token_shows(harness):
    acc = await harness.account(contacts=[("c1", "Erika Muster", "ACME", "+49 211 1234567", "", "")])
    token = await harness.user(acc["account_id"], "w0")
    ws = await harness.connect(token)
    with capture_logs() as logs:
        async with browser() as http:
            portal = Portal(harness, http)
            await portal.sign_in(acc["account_id"], acc["admin_token"])
            seen = {p: await portal.get(p) for p in PAGES}
            status, page, _ = await portal.post("/portal/account/crm", {"crm": "hubspot", "crm_instance": "ftp://x"})
            assert status == 400 and "The CRM settings were not saved" in page
            status, page, _ = await portal.post("/portal/account/crm", {"crm": "sugarcrm",
                                                                        "crm_instance": "https://crm.example.com",
                                                                        "log_calls": "on"})
            assert status == 200 and "The CRM settings were saved." in page
            shown = await harness.admin.show_account(acc["account_id"])
            assert (shown["crm"], shown["crm_instance"], shown["log_calls"]) == ("sugarcrm", "https://crm.example.com",
                                                                                 True)
            status, page, _ = await portal.post("/portal/users/crm-token", {"token": "crm-secret-token-123"})
            assert "The CRM access token is kept for this browser session." in page
            seen["/portal/users (token kept)"] = page
            status, page, _ = await portal.post("/portal/account/rotate")
            assert "The webhook URL was replaced." in page
            rotated = await harness.admin.show_account(acc["account_id"])
            assert rotated["webhook_url"] in page
            seen["/portal/account (rotated)"] = page
            async with http.get(harness.base + "/portal/account/export") as r:
                assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
                assert (await r.json())["account"]["id"] == acc["account_id"]
            status, page, _ = await portal.post("/portal/users/crm-token", {"action": "forget"})
            assert "The CRM access token was forgotten." in page
    webhooks = (acc["webhook_token"], rotated["webhook_url"].rsplit("/", 1)[1])
    secrets = (acc["admin_token"], token, "crm-secret-token-123")
    for path, page in seen.items():
        for secret in secrets:
            assert secret not in page, path
        if not path.startswith("/portal/account"):  # the webhook URL is on Konto alone
            assert not any(w in page for w in webhooks), path
    text = repr(logs)
    for secret in (*secrets, *webhooks):
        assert secret not in text
    assert not ws.of("__closed__")


async def test_the_calls_page_shows_a_call_with_its_pop_time(harness):
    acc = await harness.account(contacts=[("c1", "Erika Muster", "ACME", "+49 211 1234567", "", "")])
    ws = await harness.connect(await harness.user(acc["account_id"], "w0"))
    assert (await harness.post(acc["url"], new_call("CALLP1", frm="492111234567")))[0] == 200
    await ws.expect("call.ringing")
    assert (await harness.post(acc["url"], hangup("CALLP1")))[0] == 200
    async with browser("de") as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        for _ in range(50):
            page = await portal.get("/portal/calls")
            row = re.search(r"<tbody>(.*?)</tbody>", page, re.S)
            if row and re.search(r'<td class="num">\d+</td>', row.group(1)):
                break
            await __import__("asyncio").sleep(0.1)
        assert row is not None
        cells = row.group(1)
        assert "…567" in cells and "2111234567" not in cells  # masked
        assert "eingehend" in cells and "w0" in cells and "ja" in cells
        assert re.search(r'<td class="num">\d+</td>', cells)
        assert "nicht protokolliert" in cells  # a CSV directory logs no calls


async def test_the_language_switch_stays_on_the_portal(harness):
    acc = await harness.account()
    async with browser("de-DE,de;q=0.9") as http:
        portal = Portal(harness, http)
        assert "Anmelden" in await portal.get("/portal/signin")
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        for target, landed in (("/portal/calls", "/portal/calls"), ("https://evil.example/portal", "/portal"),
                               ("//evil.example/portal/x", "/portal"), ("/elsewhere", "/portal")):
            status, _, r = await portal.post("/portal/language", {"lang": "en", "next": target}, follow=False)
            assert status == 303 and r.headers["Location"] == landed, target
        page = await portal.get("/portal/users")
        assert "<h1>Users</h1>" in page  # the choice outlives the browser's Accept-Language
        await portal.post("/portal/language", {"lang": "de", "next": "/portal/users"})
        assert "<h1>Benutzer</h1>" in await portal.get("/portal/users")
        status, _, _ = await portal.post("/portal/language", {"lang": "fr"})
        assert status == 400


async def test_the_language_switch_takes_no_control_character_or_non_ascii_path(harness, caplog):
    acc = await harness.account()
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        with capture_logs() as logs:
            for target in ("/portal/calls\x00", "/portal/\x7f", "/portal/calls\r\nSet-Cookie: a=b", "/portal/\t",
                           "/portal/caf\u00e9", "/portal/users\u2028", "/portal/a b", "/portal\\..\\x"):
                status, _, r = await portal.post("/portal/language", {"lang": "de", "next": target}, follow=False)
                assert status == 303 and r.headers["Location"] == "/portal", repr(target)
        status, _, r = await portal.post("/portal/language", {"lang": "en", "next": "/portal/users"}, follow=False)
        assert status == 303 and r.headers["Location"] == "/portal/users"
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_enable_disable_and_end_sessions_from_the_users_page(harness):
    acc = await harness.account()
    token = await harness.user(acc["account_id"], "w1")
    user_id = (await harness.admin.list_users(acc["account_id"]))["users"][0]["user_id"]
    ws = await harness.connect(token)
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        page = await portal.get("/portal/users")
        assert "not connected to sipgate" in page
        status, page, _ = await portal.post("/portal/users/enable", {"sipgate_user": "w5"})
        assert status == 200 and "The user was enabled." in page
        assert {u["sipgate_user"] for u in (await harness.admin.list_users(acc["account_id"]))["users"]} == {"w1", "w5"}
        status, page, _ = await portal.post("/portal/users/enable", {"sipgate_user": "not an id!"})
        assert status == 400 and "could not be enabled" in page
        status, page, _ = await portal.post(f"/portal/users/{user_id}/revoke")
        assert "The user's sessions were ended." in page
        assert (await ws.expect("__closed__", timeout=10))["code"] == 4502
        ws = await harness.connect((await harness.admin.new_user_token(user_id))["token"])
        status, page, _ = await portal.post(f"/portal/users/{user_id}/disable")
        assert "The user was disabled" in page
        assert (await ws.expect("__closed__", timeout=10))["code"] == 4502
        assert [u["sipgate_user"] for u in (await harness.admin.list_users(acc["account_id"]))["users"]] == ["w5"]


async def test_deleting_the_account_needs_its_name_and_ends_everything(harness):
    acc = await harness.account(name="Acme")
    ws = await harness.connect(await harness.user(acc["account_id"], "w1"))
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        status, page, _ = await portal.post("/portal/account/delete", {"confirm": "acme"})
        assert status == 400 and "the name you typed is not the account's name" in page
        assert (await harness.admin.show_account(acc["account_id"]))["name"] == "Acme"
        status, page, _ = await portal.post("/portal/account/delete", {"confirm": "Acme"})
        assert status == 200 and "The account was deleted, and you are signed out." in page
        assert (await harness.admin.list_accounts())["accounts"] == []
        assert (await ws.expect("__closed__", timeout=10))["code"] == 4503
        assert "Sign in" in await portal.get("/portal/account")  # the session ended with it


async def test_with_sign_in_with_sipgate_the_token_form_is_gone(make_harness):
    h = await make_harness(sipgate_client_id="client", sipgate_client_secret="secret")
    acc = await h.account()
    async with browser() as http:
        portal = Portal(h, http)
        page = await portal.get("/portal/signin")
        assert 'href="/auth/sipgate?for=portal"' in page and "admin_token" not in page
        status, _, _ = await portal.post("/portal/signin", {"account_id": acc["account_id"],
                                                             "admin_token": acc["admin_token"]})
        assert status == 404


async def test_a_session_of_an_account_deleted_meanwhile_ends(harness):
    acc = await harness.account()
    async with browser() as http:
        portal = Portal(harness, http)
        await portal.sign_in(acc["account_id"], acc["admin_token"])
        await harness.admin.delete_account(acc["account_id"])  # as `hejcti account delete` does
        page = await portal.get("/portal/users")
        assert "The account was deleted, and you are signed out." in page and "<h1>Sign in</h1>" in page
        assert "<h1>Sign in</h1>" in await portal.get("/portal/account")


async def test_a_nul_in_the_input_is_a_400_page_not_a_500(harness, caplog):
    acc = await harness.account()
    await harness.user(acc["account_id"], "w1")
    async with browser("de") as http:
        portal = Portal(harness, http)
        await portal.get("/portal/signin")
        with capture_logs() as logs:
            status, text, _ = await portal.post("/portal/signin", {"account_id": "\x00", "admin_token": "x"})
            assert status == 400, text[:300]
            assert "Die Anfrage konnte nicht gelesen werden." in text and "Zurück zum Portal" in text
            await portal.sign_in(acc["account_id"], acc["admin_token"])
            async with http.post(harness.base + "/portal/users/%00/map",
                                 data={"csrf": portal.csrf, "crm_user": "x"}) as r:
                text = await r.text()
                assert r.status == 400, text[:300]
                assert "Die Anfrage konnte nicht gelesen werden." in text
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
