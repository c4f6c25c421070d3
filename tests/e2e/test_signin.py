"""Sign in with sipgate (CONTRACT §8), end to end: the real app and the fake sipgate on 127.0.0.1, the OAuth dance
driven as a browser drives it (start → sipgate's authorize page → its button → the callback, cookies kept per
browser, redirects followed by hand)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from structlog.testing import capture_logs

from hejcti.app import SIPGATE, WEB_SESSIONS
from hejcti.signin import challenge
from hejcti.websession import COOKIE, WebSession
from tests.db import dump_tables
from tests.e2e.test_fanout import new_call
from tests.fakes.sipgate import FakeSipgate
from tests.sipgate_kit import EXT, REDIRECT, Browser, sipgate_settings


@pytest.fixture
async def h(make_harness, sipgate_fake):
    return await make_harness(**sipgate_settings(sipgate_fake))


@pytest.fixture
async def browsers():
    made: list[Browser] = []

    def make(lang: str = "en") -> Browser:
        made.append(Browser(lang=lang))
        return made[-1]

    yield make
    for b in made:
        await b.close()


def admin_of(sipgate_fake: FakeSipgate, user: str) -> None:
    for u in sipgate_fake.state.users:
        if u["id"] == user:
            u["admin"] = True


async def portal_session(h, set_cookie: str) -> WebSession | None:
    """What the server reads from the portal cookie a browser sends back."""
    value = set_cookie.split(";", 1)[0].split("=", 1)[1].strip('"')
    return await h.app[WEB_SESSIONS].load(make_mocked_request("GET", "/portal", headers={"Cookie": f"{COOKIE}={value}"}))


async def account_row(h) -> Any:
    return await h.pool.fetchrow("SELECT * FROM accounts WHERE sipgate_account_id = $1", "1234567")


# -- portal ---------------------------------------------------------------------------------------------------


async def test_admin_portal_sign_in_makes_the_account_and_stores_the_credential_sealed(h, sipgate_fake, browsers):
    browser = browsers()
    done = await browser.sign_in(h.base, "portal", "w0")
    assert done.status == 302 and done.location == "/portal"
    cookie = next(v for k, v in done.headers.items() if k == "Set-Cookie" and v.startswith("hejcti_portal="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # PUBLIC_URL is http here

    row = await account_row(h)
    assert (row["crm_kind"], row["log_calls"], row["sipgate_rejected_at"]) == ("none", False, None)
    credential = await h.app[SIPGATE].credential(row["id"])
    assert credential.kind == "oauth" and credential.owner == "w0"
    assert credential.refresh_token in sipgate_fake.state.refresh_tokens  # the live one, sipgate's latest

    session = await portal_session(h, cookie)
    assert session is not None and (session.account_id, session.sipgate_user, session.admin) == (row["id"], "w0", True)
    # the cookie is sealed: nothing of the session reads in it (a two-letter id like "w0" turns up in random
    # base64 now and then, so the session's own words are looked for, not the id alone)
    for plain in (credential.refresh_token, session.csrf, row["id"], '"w0"', "sipgate_user"):
        assert plain not in cookie
    assert len(session.csrf) >= 43

    everything = await dump_tables(h.pool)
    for secret in [credential.refresh_token, credential.access_token, *sipgate_fake.state.access_tokens]:
        assert secret not in everything
    for personal in ["Ada", "Lovelace", "ada.lovelace@example.org", "4921155500100"]:
        assert personal not in everything
    assert await h.pool.fetchval("SELECT count(*) FROM signin_states") == 0  # used up

    # the CLI's functions see the account; it has no CRM yet
    listed = await h.admin.show_account(row["id"])
    assert listed["crm"] == "none" and listed["log_calls"] is False


async def test_another_admin_replaces_the_credential_and_a_non_admin_changes_nothing(h, sipgate_fake, browsers):
    await browsers().sign_in(h.base, "portal", "w0")
    first = await account_row(h)

    refused = await browsers().sign_in(h.base, "portal", "w1")  # Grace is no admin
    assert refused.status == 403 and "Only sipgate administrators" in refused.text
    assert "hejcti_portal" not in refused.headers.get("Set-Cookie", "")
    assert bytes((await account_row(h))["sipgate_credential"]) == bytes(first["sipgate_credential"])
    german = await browsers("de-DE,de;q=0.9,en;q=0.5").sign_in(h.base, "portal", "w2")
    assert german.status == 403 and "Nur sipgate-Administratoren" in german.text

    admin_of(sipgate_fake, "w1")
    again = await browsers().sign_in(h.base, "portal", "w1")
    assert again.status == 302 and again.location == "/portal"
    row = await account_row(h)
    assert row["id"] == first["id"] and await h.pool.fetchval("SELECT count(*) FROM accounts") == 1
    assert (await h.app[SIPGATE].credential(row["id"])).owner == "w1"


# -- extension ------------------------------------------------------------------------------------------------


async def test_extension_sign_in_hands_a_token_that_opens_a_session(h, sipgate_fake, browsers):
    await browsers().sign_in(h.base, "portal", "w0")
    aid = (await account_row(h))["id"]
    admin_credential = bytes((await account_row(h))["sipgate_credential"])

    done = await browsers().sign_in(h.base, "extension", "w2", REDIRECT)
    assert done.status == 302 and done.location.startswith(REDIRECT + "#token=")
    token = done.location.split("#token=", 1)[1]
    session = await h.connect(token)
    assert session.seen[0]["account_id"] == aid
    assert await h.pool.fetchval("SELECT sipgate_user FROM users WHERE id = $1", session.seen[0]["user_id"]) == "w2"
    # Jürgen's own sipgate tokens were dropped: the account's credential is still Ada's
    assert bytes((await account_row(h))["sipgate_credential"]) == admin_credential

    # the account has no CRM yet: a call pops with nobody found, and no call record is kept
    url = f"{h.base}/webhooks/sipgate/{await h.admin.webhook_token(aid)}"
    assert (await h.post(url, new_call("CALLNOCRM0001", users=("w2",))))[0] == 200
    ringing = await session.expect("call.ringing")
    assert ringing["contacts"] == [] and ringing["resolved"] is True

    # one sign-in per user: a new one ends the old token's session
    again = await browsers().sign_in(h.base, "extension", "w2", REDIRECT)
    assert again.location.startswith(REDIRECT + "#token=") and again.location != done.location
    assert (await session.expect("__closed__", 10))["code"] == 4502
    assert await h.pool.fetchval("SELECT count(*) FROM users WHERE account_id = $1", aid) == 1
    assert await h.pool.fetchval("SELECT count(*) FROM call_records") == 0


async def test_extension_sign_in_for_an_unconnected_account_says_to_ask_an_admin(h, sipgate_fake, browsers):
    page = await browsers().sign_in(h.base, "extension", "w2", REDIRECT)
    assert page.status == 403 and "ask a sipgate administrator" in page.text and "portal" in page.text
    assert "#token" not in page.text and "Location" not in page.headers
    german = await browsers("de").sign_in(h.base, "extension", "w2", REDIRECT)
    assert german.status == 403 and "Administrator" in german.text and "Portal zu verbinden" in german.text
    assert await h.pool.fetchval("SELECT count(*) FROM users") == 0
    assert await h.pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_a_rejected_account_still_signs_users_in_and_an_admins_sign_in_reconnects_it(h, sipgate_fake, browsers):
    await browsers().sign_in(h.base, "portal", "w0")
    aid = (await account_row(h))["id"]
    await h.pool.execute("UPDATE accounts SET sipgate_rejected_at = now() WHERE id = $1", aid)

    done = await browsers().sign_in(h.base, "extension", "w2", REDIRECT)  # their pops need no sipgate
    assert done.status == 302 and done.location.startswith(REDIRECT + "#token=")
    session = await h.connect(done.location.split("#token=", 1)[1])
    for kind in ("me", "directory.search"):
        reply = await session.request({"type": kind, "q": "", "id": kind})
        assert reply["code"] == "sipgate_not_connected" and "sign in to the portal again" in reply["message"]
    assert (await account_row(h))["sipgate_rejected_at"] is not None  # a user's tokens are dropped

    admin_of(sipgate_fake, "w1")  # another admin than the one whose credential sipgate rejected
    again = await browsers().sign_in(h.base, "extension", "w1", REDIRECT)
    assert again.status == 302 and again.location.startswith(REDIRECT + "#token=")
    assert (await account_row(h))["sipgate_rejected_at"] is None
    assert (await h.app[SIPGATE].credential(aid)).owner == "w1"
    assert (await session.request({"type": "me", "id": 3}))["user"]["id"] == "w2"


@pytest.mark.parametrize("redirect_uri", [
    "https://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.chromiumapp.org/signin",  # a foreign extension
    f"https://{EXT}.chromiumapp.org.evil.com/signin",  # a lookalike host
    f"https://evil.com/{EXT}.chromiumapp.org/",
    f"https://evil.com/?next=https://{EXT}.chromiumapp.org/",  # an open redirect
    f"https://evil.com#https://{EXT}.chromiumapp.org/",
    f"https://user@{EXT}.chromiumapp.org/signin",  # userinfo
    f"https://{EXT}.chromiumapp.org@evil.com/signin",
    f"http://{EXT}.chromiumapp.org/signin",
    f"https://{EXT}.chromiumapp.org:8443/signin",
    f"https://{EXT}.chromiumapp.org/signin#x",
    f"https://{EXT}.chromiumapp.org/%2F%2Fevil.com",
    f"https://{EXT}.chromiumapp.org",
    f"https://{EXT.upper()}.chromiumapp.org/signin",
    "",
])
async def test_only_a_listed_extension_can_receive_a_token(h, browsers, redirect_uri):
    started = await browsers().start(h.base, "extension", redirect_uri)
    assert started.status == 400 and "Location" not in started.headers
    assert started.text.count("\n") == 1 and "redirect_uri" in started.text
    assert await h.pool.fetchval("SELECT count(*) FROM signin_states") == 0


async def test_bad_starts(h, make_harness, browsers, sipgate_fake):
    b = browsers()
    assert (await b.get(h.base + "/auth/sipgate?for=admin")).status == 400
    assert (await b.get(f"{h.base}/auth/sipgate?for=portal&redirect_uri={REDIRECT}")).status == 400
    twice = await b.get(f"{h.base}/auth/sipgate?for=extension&redirect_uri={REDIRECT}&redirect_uri=https://x.org/")
    assert twice.status == 400
    plain = await make_harness()  # no SIPGATE_CLIENT_ID
    off = await b.get(plain.base + "/auth/sipgate?for=portal")
    assert off.status == 404 and off.text.count("\n") == 1 and "SIPGATE_CLIENT_ID" in off.text


# -- the state, the browser, PKCE, and sipgate's failures ------------------------------------------------------


async def test_the_authorize_request_and_pkce(h, sipgate_fake, browsers):
    b = browsers()
    started = await b.start(h.base, "portal")
    sent = {k: v[0] for k, v in parse_qs(urlsplit(started.location).query).items()}
    assert started.location.startswith(sipgate_fake.login_url + "/auth?")
    assert sent["client_id"] == sipgate_fake.state.client_id and sent["response_type"] == "code"
    assert sent["redirect_uri"] == h.base + "/auth/sipgate/callback"
    assert sent["scope"].split() == ["users:read", "devices:read", "numbers:read", "settings:sipgateio:read",
                                     "settings:sipgateio:write", "sessions:calls:write", "rtcm:read", "rtcm:write"]
    assert sent["code_challenge_method"] == "S256"
    verifier = await h.pool.fetchval("SELECT verifier FROM signin_states")
    assert sent["code_challenge"] == challenge(verifier) and len(sent["state"]) >= 43
    cookie = started.headers["Set-Cookie"]
    assert cookie.startswith("hejcti_signin=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/auth/sipgate" in cookie

    # a code redeemed with another verifier: the fake (as sipgate) refuses it
    callback = await b.at_sipgate(started.location, "w0")
    await h.pool.execute("UPDATE signin_states SET verifier = 'x' || verifier")
    refused = await b.get(callback)
    assert refused.status == 400 and "did not accept" in refused.text
    assert await account_row(h) is None


async def test_a_state_is_used_once_and_only_by_its_browser(h, sipgate_fake, browsers):
    b = browsers()
    started = await b.start(h.base, "portal")
    callback = await b.at_sipgate(started.location, "w0")
    assert (await b.get(callback)).status == 302
    reused = await b.get(callback)
    assert reused.status == 400 and "expired or was used already" in reused.text

    started = await b.start(h.base, "portal")
    callback = await b.at_sipgate(started.location, "w0")
    other = await browsers().get(callback)  # no sign-in cookie
    assert other.status == 400 and "another browser" in other.text
    assert (await b.get(callback)).status == 400  # and the state is spent

    started = await b.start(h.base, "portal")
    callback = await b.at_sipgate(started.location, "w0")
    stranger = browsers()
    await stranger.start(h.base, "portal")  # a sign-in cookie of its own
    assert (await stranger.get(callback)).status == 400

    started = await b.start(h.base, "portal")
    callback = await b.at_sipgate(started.location, "w0")
    async with b.http.head(callback, allow_redirects=False) as r:  # a link checker's HEAD spends nothing
        assert r.status == 405
    await h.pool.execute("UPDATE signin_states SET created_at = now() - interval '11 minutes'")
    expired = await b.get(callback)
    assert expired.status == 400 and "expired" in expired.text
    assert (await b.get(h.base + "/auth/sipgate/callback?code=abc&state=made-up")).status == 400
    assert (await b.get(h.base + "/auth/sipgate/callback")).status == 400


async def test_sipgate_says_no_or_cannot_be_reached(h, sipgate_fake, browsers):
    b = browsers()
    started = await b.start(h.base, "portal")
    state = parse_qs(urlsplit(started.location).query)["state"][0]
    denied = await b.get(f"{h.base}/auth/sipgate/callback?error=access_denied&state={state}")
    assert denied.status == 403 and "did not allow" in denied.text
    assert await h.pool.fetchval("SELECT count(*) FROM signin_states") == 0  # that state is gone too
    odd = await b.get(f"{h.base}/auth/sipgate/callback?error=server_error%3Cscript%3E")
    assert odd.status == 502 and "<script>" not in odd.text

    started = await b.start(h.base, "portal")
    callback = await b.at_sipgate(started.location, "w0")
    h.settings.sipgate_login_url = "http://127.0.0.1:9/auth"  # sipgate's login is down from here on
    down = await b.get(callback)
    assert down.status == 502 and "did not answer" in down.text

    h.settings.sipgate_login_url = sipgate_fake.login_url
    sipgate_fake.state.client_secret = "rotated-at-sipgate"  # our secret no longer works: the exchange is refused
    started = await b.start(h.base, "portal")
    refused = await b.get(await b.at_sipgate(started.location, "w0"))
    assert refused.status == 400 and await account_row(h) is None


# -- refresh-token rotation across processes -------------------------------------------------------------------


async def test_a_rotated_refresh_token_is_seen_by_the_other_process(make_harness, sipgate_fake, browsers):
    a = await make_harness(**sipgate_settings(sipgate_fake))
    b = await make_harness(**sipgate_settings(sipgate_fake))
    await browsers().sign_in(a.base, "portal", "w0")
    aid = (await account_row(a))["id"]
    first = await a.app[SIPGATE].credential(aid)

    sipgate_fake.state.expire_access_tokens()  # the next call gets a 401: process A refreshes, sipgate rotates
    assert len(await (await a.app[SIPGATE].client(aid)).users()) == 3
    rotated = await b.app[SIPGATE].credential(aid)
    assert rotated.refresh_token != first.refresh_token and first.refresh_token not in sipgate_fake.state.refresh_tokens

    sipgate_fake.state.expire_access_tokens()  # now process B must refresh, with the token A stored
    assert len(await (await b.app[SIPGATE].client(aid)).users()) == 3
    assert rotated.refresh_token not in sipgate_fake.state.refresh_tokens  # used by B, so void now
    assert (await a.app[SIPGATE].credential(aid)).refresh_token in sipgate_fake.state.refresh_tokens
    async with aiohttp.ClientSession() as http, http.post(sipgate_fake.login_url + "/token", data={
            "client_id": sipgate_fake.state.client_id, "client_secret": sipgate_fake.state.client_secret,
            "grant_type": "refresh_token", "refresh_token": first.refresh_token}) as r:
        assert r.status == 400  # the old one is refused
    assert (await account_row(a))["sipgate_rejected_at"] is None


async def test_the_log_says_what_happened_and_holds_no_token(h, sipgate_fake, browsers):
    b = browsers()
    with capture_logs() as logs:
        await b.sign_in(h.base, "portal", "w0")
        started = await b.start(h.base, "extension", REDIRECT)
        callback = await b.at_sipgate(started.location, "w2")
        done = await b.get(callback)
        await browsers().sign_in(h.base, "portal", "w1")  # no admin
    events = [e["event"] for e in logs]
    assert {"signin.started", "signin.portal", "signin.extension", "signin.refused"} <= set(events)
    refused = next(e for e in logs if e["event"] == "signin.refused")
    assert (refused["reason"], refused["status"], refused["user"]) == ("not_admin", 403, "w1")
    query = parse_qs(urlsplit(callback).query)
    aid = (await account_row(h))["id"]
    credential = await h.app[SIPGATE].credential(aid)
    secrets = [done.location.split("#token=")[1], query["code"][0], query["state"][0], credential.refresh_token,
               credential.access_token, *sipgate_fake.state.access_tokens, *sipgate_fake.state.refresh_tokens]
    text = repr(logs)
    for secret in secrets:
        assert secret not in text


async def test_the_callback_may_reach_another_process(make_harness, sipgate_fake, browsers):
    """Behind a load balancer without sticky sessions: A starts the sign-in, B takes sipgate's answer."""
    a = await make_harness(**sipgate_settings(sipgate_fake))
    b = await make_harness(**sipgate_settings(sipgate_fake))
    b.settings.public_url = a.base  # one PUBLIC_URL for the installation
    browser = browsers()
    started = await browser.start(a.base, "portal")
    callback = await browser.at_sipgate(started.location, "w0")
    assert callback.startswith(a.base + "/auth/sipgate/callback?")
    done = await browser.get(b.base + callback.removeprefix(a.base))  # the balancer picked B
    assert done.status == 302 and done.location == "/portal"
    assert (await b.app[SIPGATE].credential((await account_row(a))["id"])).owner == "w0"
