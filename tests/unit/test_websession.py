"""The portal's session cookie (websession.py): sealed under a key of its own, ended 8 hours after the sign-in,
its CSRF token compared in constant time; the page language from Accept-Language."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from hejcti import crypto
from hejcti.config import Settings
from hejcti.websession import COOKIE, WebSessions, language, session_key


def settings(public_url: str = "http://127.0.0.1:8080") -> Settings:
    return Settings(secret_key="k" * 32, public_url=public_url, database_url="postgresql://x/y")


def cookie_of(response: web.Response) -> str:
    return response.cookies[COOKIE].value


async def signed_in(sessions: WebSessions) -> tuple[str, web.Response]:
    response = web.Response()
    await sessions.start(make_mocked_request("GET", "/"), response, account_id="acc_1", sipgate_user="w0", admin=True)
    return cookie_of(response), response


async def test_round_trip_flags_and_a_key_of_its_own():
    sessions = WebSessions(settings("https://hej.example.org"))
    value, response = await signed_in(sessions)
    morsel = response.cookies[COOKIE]
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Lax" and morsel["max-age"] == "28800"
    # sealed, not signed (the session's words, not the bare "w0": random base64 holds two letters now and then)
    assert "acc_1" not in value and '"w0"' not in value and "sipgate_user" not in value
    loaded = await sessions.load(make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={value}"}))
    assert loaded is not None and (loaded.account_id, loaded.sipgate_user, loaded.admin) == ("acc_1", "w0", True)
    assert loaded.csrf_ok(loaded.csrf) and not loaded.csrf_ok(loaded.csrf[:-1] + "x") and not loaded.csrf_ok(None)
    assert session_key(b"k" * 32) != crypto._key(b"k" * 32)  # noqa: SLF001
    assert not (await signed_in(WebSessions(settings())))[1].cookies[COOKIE]["secure"]


async def test_another_key_a_tampered_cookie_and_an_old_sign_in_are_no_session(monkeypatch):
    sessions = WebSessions(settings())
    value, _ = await signed_in(sessions)
    other = WebSessions(Settings(secret_key="z" * 32, database_url="postgresql://x/y"))
    assert await other.load(make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={value}"})) is None
    tampered = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    assert await sessions.load(make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={tampered}"})) is None
    assert await sessions.load(make_mocked_request("GET", "/")) is None
    later = time.time() + 8 * 3600 + 5
    monkeypatch.setattr(time, "time", lambda: later)
    assert await sessions.load(make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={value}"})) is None


def test_language():
    def of(header: str) -> str:
        return language(make_mocked_request("GET", "/", headers={"Accept-Language": header}))

    assert of("de-DE,de;q=0.9,en;q=0.8") == "de"
    assert of("en-US,en;q=0.9,de;q=0.8") == "en"
    assert of("fr-FR,de;q=0.5") == "de"
    assert of("fr") == "en" and of("") == "en" and of("de;q=bogus,en;q=0.1") == "en"
