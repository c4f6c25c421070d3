"""The sipgate client against the fake sipgate on a real local server: shapes, both kinds of auth, and every
error path (401 refreshed once then disconnected, 429 with Retry-After, 5xx retried on reads only, timeouts,
Neo's 403 on phoneline endpoints, absent fields, the rotated refresh token handed on)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from hejcti.sipgate import (
    Credential,
    OAuthClient,
    SipgateAuthError,
    SipgateClient,
    SipgateRefusedError,
    SipgateUnavailableError,
    oauth_refresher,
)
from hejcti.sipgate_live import LiveCache
from tests.fakes.sipgate import PAT, PAT_ID


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


def pat_client(sipgate_fake, http, **kw):
    return SipgateClient(http, Credential.pat(PAT_ID, PAT), base_url=sipgate_fake.api_url, **kw)


def oauth_setup(sipgate_fake, http, user="w0"):
    """An OAuth credential issued by the fake, a refresher, and the list the rotated credentials go to."""
    s = sipgate_fake.state
    cred = Credential.oauth(s.issue(user), owner=user)
    stored: list[Credential] = []

    async def keep(new):
        stored.append(new)

    oauth = OAuthClient(sipgate_fake.login_url, s.client_id, s.client_secret)
    return cred, oauth_refresher(http, oauth, keep), stored


async def test_shapes_with_a_personal_access_token(sipgate_fake, http):
    client = pat_client(sipgate_fake, http)
    info = await client.userinfo()
    assert (info.sub, info.master_sip_id) == ("w0", "1234567")
    users = await client.users()
    assert [u.id for u in users] == ["w0", "w1", "w2"]
    assert users[2].name == "Jürgen Müller" and users[0].admin and users[0].default_device == "e0"
    assert users[1].direct_dial_ids == ["11"]
    assert (await client.user("w1")).email == "grace.hopper@example.org"
    devices = await client.devices("w1")
    assert [(d.id, d.type, d.online) for d in devices] == [("e1", "REGISTER", True), ("y1", "MOBILE", False)]
    numbers = await client.user_numbers("w0")
    assert numbers[0].e164 == "+4921155500100" and numbers[0].endpoint_id == "p0"
    assert len(await client.numbers()) == 3
    header = sipgate_fake.state.requests[-1]
    assert header == ("GET", "/v2/numbers")


async def test_a_wrong_personal_access_token_is_an_auth_error_without_retry(sipgate_fake, http):
    client = SipgateClient(http, Credential.pat(PAT_ID, "wrong"), base_url=sipgate_fake.api_url)
    with pytest.raises(SipgateAuthError) as e:
        await client.users()
    assert e.value.code == "sipgate_not_connected"
    assert sipgate_fake.state.count("GET", "/users") == 1


async def test_user_not_found_is_refused_with_status_and_message(sipgate_fake, http):
    with pytest.raises(SipgateRefusedError) as e:
        await pat_client(sipgate_fake, http).user("w9")
    assert (e.value.status, e.value.message) == (404, "User not found")
    assert e.value.reply() == {"type": "error", "code": "sipgate_refused", "status": 404, "message": "User not found"}


async def test_absent_fields_are_tolerated_and_broken_items_skipped(sipgate_fake, http):
    sipgate_fake.state.users = [{"id": "w5"}, {"id": "w6", "firstname": None, "lastname": "Solo", "admin": None,
                                        "directDialIds": None, "somethingNew": {"x": 1}},
                        {"firstname": "no id"}]
    sipgate_fake.state.devices["w5"] = [{"id": "e5"}]
    sipgate_fake.state.numbers["w5"] = [{"number": "4921155500105"}]
    client = pat_client(sipgate_fake, http)
    users = await client.users()
    assert [u.id for u in users] == ["w5", "w6"]
    assert users[0].name == "" and users[0].email is None and users[0].admin is False
    assert users[1].name == "Solo" and users[1].direct_dial_ids == []
    assert [(d.id, d.online, d.alias) for d in await client.devices("w5")] == [("e5", False, None)]
    assert [n.e164 for n in await client.user_numbers("w5")] == ["+4921155500105"]


async def test_neo_403_on_phoneline_endpoints_reads_as_none(sipgate_fake, http):
    sipgate_fake.state.neo = True
    client = pat_client(sipgate_fake, http)
    assert await client.devices("w0") == []
    assert await client.user_numbers("w0") == []
    assert await client.numbers() == []
    assert [u.id for u in await client.users()] == ["w0", "w1", "w2"]  # other endpoints still work


async def test_403_elsewhere_is_a_refusal(sipgate_fake, http):
    sipgate_fake.state.fail_next(1, 403)
    with pytest.raises(SipgateRefusedError) as e:
        await pat_client(sipgate_fake, http).webhook_settings()
    assert e.value.status == 403


async def test_429_waits_for_retry_after_then_succeeds(sipgate_fake, http):
    sipgate_fake.state.fail_next(1, 429, retry_after=1)
    started = time.monotonic()
    assert len(await pat_client(sipgate_fake, http).users()) == 3
    assert time.monotonic() - started >= 1.0  # Retry-After honoured (a lower bound, never flaky)
    assert sipgate_fake.state.count("GET", "/users") == 2


async def test_429_on_a_click_to_call_is_retried_too(sipgate_fake, http):
    sipgate_fake.state.fail_next(1, 429, retry_after=0)  # refused before acting: safe to send again
    session = await pat_client(sipgate_fake, http).dial("e0", "+4915799912345")
    assert session and sipgate_fake.state.count("POST", "/sessions/calls") == 2 and len(sipgate_fake.state.placed) == 1


async def test_retry_after_longer_than_allowed_fails_at_once(sipgate_fake, http):
    sipgate_fake.state.fail_next(1, 429, retry_after=120)
    with pytest.raises(SipgateUnavailableError) as e:
        await pat_client(sipgate_fake, http, max_wait=5).users()
    assert e.value.status == 429 and e.value.retry_after == 120
    assert sipgate_fake.state.count("GET", "/users") == 1


async def test_5xx_is_retried_on_reads(sipgate_fake, http):
    sipgate_fake.state.fail_next(2, 500)
    assert len(await pat_client(sipgate_fake, http).users()) == 3
    assert sipgate_fake.state.count("GET", "/users") == 3


async def test_5xx_on_reads_gives_up_as_unavailable(sipgate_fake, http):
    sipgate_fake.state.fail_next(5, 502)
    with pytest.raises(SipgateUnavailableError) as e:
        await pat_client(sipgate_fake, http).users()
    assert e.value.code == "sipgate_unavailable" and e.value.reply() == {"type": "error",
                                                                         "code": "sipgate_unavailable"}
    assert sipgate_fake.state.count("GET", "/users") == SipgateClient.max_attempts


@pytest.mark.parametrize("call", ["dial", "transfer", "hangup"])
async def test_5xx_on_a_post_is_not_retried(sipgate_fake, http, call):
    sipgate_fake.state.fail_next(1, 500)
    client = pat_client(sipgate_fake, http)
    with pytest.raises(SipgateUnavailableError):
        if call == "dial":
            await client.dial("e0", "+4915799912345")
        elif call == "transfer":
            await client.transfer("CALL1", "+4915799912345")
        else:
            await client.hangup("CALL1")
    assert len(sipgate_fake.state.requests) == 1  # the one request; a click-to-call that may have rung is not repeated


async def test_timeout_is_unavailable(sipgate_fake, http):
    sipgate_fake.state.delay = 1.0
    with pytest.raises(SipgateUnavailableError) as e:
        await pat_client(sipgate_fake, http, timeout=0.2).dial("e0", "+4915799912345")
    assert "did not answer" in str(e.value)
    assert sipgate_fake.state.count("POST", "/sessions/calls") == 1


async def test_unreachable_is_unavailable(http):
    client = SipgateClient(http, Credential.pat(PAT_ID, PAT), base_url="http://127.0.0.1:9/v2")
    with pytest.raises(SipgateUnavailableError):
        await client.userinfo()


async def test_oauth_401_refreshes_once_and_hands_on_the_rotated_refresh_token(sipgate_fake, http):
    cred, refresh, stored = oauth_setup(sipgate_fake, http)
    client = SipgateClient(http, cred, base_url=sipgate_fake.api_url, refresh=refresh)
    sipgate_fake.state.expire_access_tokens()
    assert len(await client.users()) == 3
    assert len(stored) == 1
    new = stored[0]
    assert new.refresh_token != cred.refresh_token and new.access_token != cred.access_token
    assert client.credential == new
    assert cred.refresh_token not in sipgate_fake.state.refresh_tokens  # the old one is void: it had to be kept
    assert new.refresh_token in sipgate_fake.state.refresh_tokens


async def test_oauth_401_twice_is_disconnected(sipgate_fake, http):
    cred, refresh, stored = oauth_setup(sipgate_fake, http)
    rejected = []

    async def on_rejected():
        rejected.append(True)

    client = SipgateClient(http, cred, base_url=sipgate_fake.api_url, refresh=refresh, on_rejected=on_rejected)
    sipgate_fake.state.fail_next(2, 401)  # the refreshed token is refused as well
    with pytest.raises(SipgateAuthError):
        await client.users()
    assert len(stored) == 1 and rejected == [True]
    assert sipgate_fake.state.count("GET", "/users") == 2


async def test_spent_refresh_token_is_disconnected(sipgate_fake, http):
    cred, refresh, stored = oauth_setup(sipgate_fake, http)
    sipgate_fake.state.refresh_tokens.clear()  # revoked, or used by someone else
    sipgate_fake.state.expire_access_tokens()
    client = SipgateClient(http, cred, base_url=sipgate_fake.api_url, refresh=refresh)
    with pytest.raises(SipgateAuthError):
        await client.userinfo()
    assert stored == []


async def test_expired_access_token_is_refreshed_before_asking(sipgate_fake, http):
    cred, refresh, stored = oauth_setup(sipgate_fake, http)
    from dataclasses import replace

    client = SipgateClient(http, replace(cred, expires_at=time.time() - 1), base_url=sipgate_fake.api_url, refresh=refresh)
    await client.userinfo()
    assert len(stored) == 1 and sipgate_fake.state.count("GET", "/authorization/userinfo") == 1


async def test_configure_webhooks_keeps_the_other_settings(sipgate_fake, http):
    before, after = await pat_client(sipgate_fake, http).configure_webhooks("https://hej.example.org/webhooks/sipgate/T")
    assert before.incoming_url == "https://old.example.org/in"
    assert sipgate_fake.state.settings == {"incomingUrl": "https://hej.example.org/webhooks/sipgate/T",
                                   "outgoingUrl": "https://hej.example.org/webhooks/sipgate/T", "log": True,
                                   "whitelist": ["p0", "g1"]}
    assert after.raw() == sipgate_fake.state.settings


async def test_configure_webhooks_keeps_fields_it_does_not_know(sipgate_fake, http):
    sipgate_fake.state.settings["futureFlag"] = {"a": 1}
    await pat_client(sipgate_fake, http).configure_webhooks("https://hej.example.org/w")
    assert sipgate_fake.state.settings["futureFlag"] == {"a": 1}


async def test_dial_transfer_hangup(sipgate_fake, http):
    sipgate_fake.state.manual = True  # the call stays as placed: ringing, never answered
    client = pat_client(sipgate_fake, http)
    session = await client.dial("e0", "+4915799912345", device_id="e0")
    assert sipgate_fake.state.placed == [{"caller": "e0", "callee": "+4915799912345", "deviceId": "e0"}]
    with pytest.raises(SipgateRefusedError) as e:  # not answered: sipgate says 404
        await client.transfer(session, "+4915799912345")
    assert e.value.status == 404
    await client.hangup(session)
    assert sipgate_fake.state.hangups == [session]
    with pytest.raises(SipgateRefusedError):
        await client.hangup(session)


async def test_dial_from_a_device_of_another_account_is_refused(sipgate_fake, http):
    with pytest.raises(SipgateRefusedError) as e:
        await pat_client(sipgate_fake, http).dial("e77", "+4915799912345")
    assert e.value.status == 403


async def test_credential_hides_its_secrets_and_round_trips():
    cred = Credential.oauth({"access_token": "AT-secret", "refresh_token": "RT-secret", "expires_in": 300}, "w0")
    assert "secret" not in repr(cred)
    assert Credential.loads(cred.dumps()) == cred
    pat = Credential.pat(PAT_ID, PAT)
    assert PAT not in repr(pat) and Credential.loads(pat.dumps()) == pat and pat.kind == "pat"


# -- the cache of live user data -------------------------------------------------------------------------


async def test_cache_one_request_for_ten_concurrent_askers(sipgate_fake, http):
    sipgate_fake.state.delay = 0.1
    cache: LiveCache[list] = LiveCache(60)
    client = pat_client(sipgate_fake, http)
    results = await asyncio.gather(*(cache.get("acc_1", client.users) for _ in range(10)))
    assert all(len(r) == 3 for r in results)
    assert sipgate_fake.state.count("GET", "/users") == 1
    await cache.get("acc_1", client.users)  # still fresh
    assert sipgate_fake.state.count("GET", "/users") == 1
    await cache.get("acc_2", client.users)  # another account: its own entry
    assert sipgate_fake.state.count("GET", "/users") == 2


async def test_cache_expires_and_keeps_no_error(sipgate_fake, http):
    now = [1000.0]
    cache: LiveCache[list] = LiveCache(60, clock=lambda: now[0])
    client = pat_client(sipgate_fake, http)
    await cache.get("acc_1", client.users)
    now[0] += 59.0
    await cache.get("acc_1", client.users)
    assert sipgate_fake.state.count("GET", "/users") == 1
    now[0] += 2.0
    sipgate_fake.state.fail_next(SipgateClient.max_attempts, 503)
    with pytest.raises(SipgateUnavailableError):
        await cache.get("acc_1", client.users)
    await cache.get("acc_1", client.users)  # the failure was not kept
    assert sipgate_fake.state.count("GET", "/users") == 2 + SipgateClient.max_attempts


def test_cache_never_keeps_longer_than_60_s():
    assert LiveCache(3600).ttl == 60


async def test_cache_one_asker_cancelled_does_not_cancel_the_others(sipgate_fake, http):
    sipgate_fake.state.delay = 0.2
    cache: LiveCache[list] = LiveCache(60)
    client = pat_client(sipgate_fake, http)
    first = asyncio.ensure_future(cache.get("acc_1", client.users))
    second = asyncio.ensure_future(cache.get("acc_1", client.users))
    await asyncio.sleep(0.05)
    first.cancel()
    assert len(await second) == 3
    assert sipgate_fake.state.count("GET", "/users") == 1


# -- the OAuth side (the sign-in routes build on it) -------------------------------------------------------


def pkce() -> tuple[str, str]:
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def sign_in(sipgate_fake, http, oauth: OAuthClient, challenge: str, redirect: str = "https://hej.example.org/cb"):
    """The browser's part: open the authorize page, press its button, read code and state off the redirect."""
    from urllib.parse import parse_qs, urlsplit

    url = oauth.authorize_url(redirect_uri=redirect, state="st-1", code_challenge=challenge, scope="users:read")
    async with http.get(url) as page:
        assert page.status == 200 and "<button" in await page.text()
    form = dict(parse_qs(urlsplit(url).query, keep_blank_values=True))
    async with http.post(url.split("?")[0], data={k: v[0] for k, v in form.items()}, allow_redirects=False) as r:
        assert r.status == 302
        query = parse_qs(urlsplit(r.headers["Location"]).query)
    assert r.headers["Location"].startswith(redirect + "?") and query["state"] == ["st-1"]
    return query["code"][0]


async def test_authorization_code_with_pkce_then_rotating_refresh(sipgate_fake, http):
    oauth = OAuthClient(sipgate_fake.login_url, sipgate_fake.state.client_id, sipgate_fake.state.client_secret)
    verifier, challenge = pkce()
    code = await sign_in(sipgate_fake, http, oauth, challenge)
    tokens = await oauth.exchange(http, code=code, redirect_uri="https://hej.example.org/cb", code_verifier=verifier)
    assert tokens["expires_in"] == 300 and tokens["token_type"] == "bearer"
    cred = Credential.oauth(tokens, owner="w0")
    assert (await SipgateClient(http, cred, base_url=sipgate_fake.api_url).userinfo()).sub == "w0"
    with pytest.raises(SipgateAuthError):  # a code is single-use
        await oauth.exchange(http, code=code, redirect_uri="https://hej.example.org/cb", code_verifier=verifier)
    new = await oauth.refresh(http, cred)
    assert new.refresh_token != cred.refresh_token
    with pytest.raises(SipgateAuthError):  # rotated: the old refresh token is void
        await oauth.refresh(http, cred)
    assert (await oauth.refresh(http, new)).access_token


async def test_a_wrong_code_verifier_or_client_secret_is_refused(sipgate_fake, http):
    oauth = OAuthClient(sipgate_fake.login_url, sipgate_fake.state.client_id, sipgate_fake.state.client_secret)
    _, challenge = pkce()
    code = await sign_in(sipgate_fake, http, oauth, challenge)
    with pytest.raises(SipgateAuthError):
        await oauth.exchange(http, code=code, redirect_uri="https://hej.example.org/cb", code_verifier="guessed")
    wrong = OAuthClient(sipgate_fake.login_url, sipgate_fake.state.client_id, "not-the-secret")
    with pytest.raises(SipgateAuthError):
        await wrong.refresh(http, Credential.oauth(sipgate_fake.state.issue("w0")))
