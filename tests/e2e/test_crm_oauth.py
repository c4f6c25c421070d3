"""The extension's CRM sign-in through the server (CONTRACT §10, hejcti/crm_oauth.py), against a fake CRM OAuth
server: the code exchange and the refresh pass through for Salesforce, HubSpot, Pipedrive and Zendesk, each
client authenticated as its vendor wants; afterwards no table and no log line holds a token, code or secret."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.db import dump_tables
from tests.fakes.base import Running, redirector
from tests.fakes.crm_oauth import CLIENT_ID, CLIENT_SECRET, FakeOAuth

EXT = "hnnlhefhhmhfapdfppcpbjkplolijhoc"
REDIRECT = f"https://{EXT}.chromiumapp.org/crm"
KINDS = ("salesforce", "hubspot", "pipedrive", "zendesk")


@pytest.fixture
async def fake():
    oauth = FakeOAuth()
    async with Running(oauth.app()) as base:
        oauth.base = base
        yield oauth


@pytest.fixture
async def h(make_harness, fake):
    settings = {}
    for kind in KINDS:
        prefix = f"{fake.base}/{{subdomain}}" if kind == "zendesk" else fake.base
        settings |= {f"{kind}_client_id": CLIENT_ID, f"{kind}_client_secret": CLIENT_SECRET,
                     f"{kind}_authorize_url": f"{prefix}/oauth/authorize", f"{kind}_token_url": f"{prefix}/oauth/token"}
    return await make_harness(**settings)


async def sign_in(http: aiohttp.ClientSession, base: str, kind: str, **extra: str) -> dict[str, str]:
    """The browser's part: start → the CRM's authorize page → the callback → the extension's redirect URI."""
    query = {"redirect_uri": REDIRECT, "state": "ext-state-123", **extra}
    async with http.get(f"{base}/crm/oauth/{kind}/start", params=query, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        authorize = r.headers["Location"]
    async with http.get(authorize, allow_redirects=False) as r:
        callback = r.headers["Location"]
    assert callback.startswith(f"{base}/crm/oauth/{kind}/callback?")
    async with http.get(callback, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        landed = r.headers["Location"]
    assert landed.startswith(REDIRECT + "#")
    return {k: v[0] for k, v in parse_qs(urlsplit(landed).fragment).items()}


async def refresh(http: aiohttp.ClientSession, base: str, kind: str, body: object, token: str | None) -> tuple[int, dict]:
    """The extension's refresh: the CRM's refresh token, and the user's Hej CTI token as the bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.post(f"{base}/crm/oauth/{kind}/refresh", json=body, headers=headers) as r:
        return r.status, await r.json()


async def user_token(h) -> str:
    acc = await h.account()
    return (await h.admin.add_user(account_id=acc["account_id"], sipgate_user="w0"))["token"]


async def test_sign_in_and_refresh_pass_through_and_nothing_is_kept(h, fake):
    fake.state.instance_url = "https://acme.my.salesforce.com"
    token = await user_token(h)
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as http:
            got = {}
            for kind in KINDS:
                extra = {"subdomain": "acme"} if kind == "zendesk" else {}
                tokens = await sign_in(http, h.base, kind, **extra)
                assert tokens["state"] == "ext-state-123"
                assert tokens["access_token"] in fake.state.valid and tokens["expires_in"] == "1800"
                assert tokens["instance_url"] == "https://acme.my.salesforce.com"
                status, renewed = await refresh(http, h.base, kind, {"refresh_token": tokens["refresh_token"], **extra},
                                                token)
                assert status == 200, renewed
                assert renewed["access_token"] in fake.state.valid and renewed["access_token"] != tokens["access_token"]
                assert renewed["refresh_token"] in fake.state.refresh_tokens  # rotated, and handed on
                got[kind] = renewed
    # each client authenticated as its vendor wants; Zendesk on the tenant's own URL
    clients = [(r["client"], r["sub"]) for r in fake.state.token_requests]
    assert clients == [("form", None)] * 4 + [("basic", None)] * 2 + [("json", "acme")] * 2
    authorize = {q["redirect_uri"] for q in fake.state.authorized}
    assert authorize == {f"{h.base}/crm/oauth/{k}/callback" for k in KINDS}
    events = [e["event"] for e in logs if e["event"].startswith("crm_oauth.")]
    assert events.count("crm_oauth.signed_in") == 4 and events.count("crm_oauth.refreshed") == 4
    stored, logged = await dump_tables(h.pool), repr(logs)
    assert stored  # the dump reads the tables (an account-less harness still has its schema's rows)
    for secret in [*fake.state.issued, CLIENT_SECRET, *[q["state"] for q in fake.state.authorized]]:
        assert secret not in stored and secret not in logged


async def test_refusals_are_plain_and_never_hand_a_token_elsewhere(h, fake):
    token = await user_token(h)
    async with aiohttp.ClientSession() as http:
        async def start(kind: str, **query: str) -> tuple[int, str]:
            params = {"redirect_uri": REDIRECT, "state": "ext-state-123", **query}
            async with http.get(f"{h.base}/crm/oauth/{kind}/start", params=params, allow_redirects=False) as r:
                return r.status, await r.text()

        assert (await start("hubspot", redirect_uri="https://otherextensionid.chromiumapp.org/x"))[0] == 400
        assert (await start("hubspot", redirect_uri="https://evil.example/x"))[0] == 400
        assert (await start("hubspot", state="x"))[0] == 400
        assert (await start("zendesk"))[0] == 400  # no subdomain
        assert (await start("zendesk", subdomain="acme.evil.example/"))[0] == 400
        assert (await start("sugarcrm"))[0] == 404  # name and password, at the instance
        async with http.get(f"{h.base}/crm/oauth/hubspot/callback", params={"code": "c", "state": "forged.x"},
                            allow_redirects=False) as r:
            assert r.status == 400 and "Location" not in r.headers
        # the user says no at the CRM: the extension hears it, with its state
        async with http.get(f"{h.base}/crm/oauth/hubspot/start", params={"redirect_uri": REDIRECT, "state": "ext-state-123"},
                            allow_redirects=False) as r:
            state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
        async with http.get(f"{h.base}/crm/oauth/hubspot/callback", params={"error": "access_denied", "state": state},
                            allow_redirects=False) as r:
            assert r.headers["Location"] == f"{REDIRECT}#error=access_denied&state=ext-state-123"
        # a state of one CRM is no good at another's callback
        async with http.get(f"{h.base}/crm/oauth/pipedrive/callback", params={"code": "c", "state": state},
                            allow_redirects=False) as r:
            assert r.status == 400
        assert await refresh(http, h.base, "hubspot", {"refresh_token": "dead"}, token) == (400, {"error": "invalid_grant"})
        assert (await refresh(http, h.base, "hubspot", {}, token))[0] == 400
        assert (await refresh(http, h.base, "hubspot", ["x"], token))[0] == 400
        async with http.post(f"{h.base}/crm/oauth/hubspot/refresh", data=b"{",
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}) as r:
            assert r.status == 400


async def test_a_refresh_needs_the_users_hej_cti_token(h, fake):
    """A CRM refresh token alone (leaked from a browser profile) cannot use this server's client secret."""
    token = await user_token(h)
    async with aiohttp.ClientSession() as http:
        tokens = await sign_in(http, h.base, "hubspot")
        body = {"refresh_token": tokens["refresh_token"]}
        for bearer in (None, "", "hct_unknown", token + "x", "x" * 600):
            assert await refresh(http, h.base, "hubspot", body, bearer) == (401, {"error": "unauthorized"}), bearer
        async with http.post(f"{h.base}/crm/oauth/hubspot/refresh", json=body,
                             headers={"Authorization": f"Basic {token}"}) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert [q["grant_type"] for q in fake.state.token_requests] == ["authorization_code"]  # none went out
        status, renewed = await refresh(http, h.base, "hubspot", body, token)
        assert status == 200 and renewed["access_token"] in fake.state.valid
        await h.admin.new_user_token(await h.pool.fetchval("SELECT id FROM users"))  # the token is revoked
        assert (await refresh(http, h.base, "hubspot", {"refresh_token": renewed["refresh_token"]}, token))[0] == 401


async def test_a_crm_that_does_not_answer_is_a_502(make_harness, fake):
    h = await make_harness(hubspot_client_id=CLIENT_ID, hubspot_client_secret=CLIENT_SECRET,
                           hubspot_token_url="http://127.0.0.1:9/oauth/token")
    token = await user_token(h)
    async with aiohttp.ClientSession() as http:
        assert await refresh(http, h.base, "hubspot", {"refresh_token": "r"}, token) == (502, {"error": "crm_unavailable"})
        async with http.post(f"{h.base}/crm/oauth/pipedrive/refresh", json={"refresh_token": "r"}) as r:
            assert r.status == 404  # no client for it on this server


async def test_a_token_endpoint_answering_with_a_redirect_is_not_followed(make_harness, fake):
    """A 307 would send the form again, client secret and refresh token included, to wherever it points."""
    seen: list[str] = []
    async with Running(redirector(fake.base, 307, seen)) as front:
        h = await make_harness(hubspot_client_id=CLIENT_ID, hubspot_client_secret=CLIENT_SECRET,
                               hubspot_token_url=f"{front}/oauth/token")
        token = await user_token(h)
        async with aiohttp.ClientSession() as http:
            assert await refresh(http, h.base, "hubspot", {"refresh_token": "r"}, token) == (
                502, {"error": "crm_unavailable"})
    assert seen == ["/oauth/token"] and fake.state.token_requests == []
