"""The browser extension (issue 12) in a real Chromium with extension/ loaded unpacked, against the real server,
a fake HubSpot with OAuth endpoints, and sipgate-format webhooks: sign in with a pasted token, sign in to the
CRM through the server's OAuth routes, a call pops a notification and a side-panel card with the caller's name,
a note reaches the CRM's record once, an expired CRM token is renewed without the user, a revoked token shows
"signed out"; and the service worker stopped (DevTools protocol) during a call resumes with no event lost and
none shown twice. What is asserted is what a person sees: the side panel's text and roles, and the
notifications. Each step leaves a screenshot of the side panel in tests/artifacts/."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from aiohttp import web

from hejcti.app import HUB
from hejcti.sipgate import Credential, SipgateClient
from tests.browser.conftest import ARGS, ARTIFACTS
from tests.conftest import sipgate_fixture
from tests.e2e.test_crm_flow import answer
from tests.e2e.test_fanout import hangup, new_call
from tests.fakes import sugarcrm, suitecrm
from tests.fakes.base import Running
from tests.fakes.crm_oauth import CLIENT_ID, CLIENT_SECRET, FakeOAuth, OAuthState, password_grant
from tests.fakes.hubspot import State, make_app
from tests.fakes.sipgate import PAT, PAT_ID, FakeSipgate

EXTENSION = Path(__file__).resolve().parents[2] / "extension"
EXT_ID = "hnnlhefhhmhfapdfppcpbjkplolijhoc"
CALLER = "4915791234567"
DISPLAY = phonenumbers.format_number(phonenumbers.parse("+" + CALLER), phonenumbers.PhoneNumberFormat.NATIONAL)
#: records each notification the service worker shows (title, message), as the user would read them
SPY = """() => {
  self.__pops = [];
  const create = chrome.notifications.create;
  chrome.notifications.create = (id, options) => { self.__pops.push({ id, ...options }); return create.call(chrome.notifications, id, options); };
  const update = chrome.notifications.update;
  chrome.notifications.update = (id, options) => { self.__pops.push({ id, update: true, ...options }); return update.call(chrome.notifications, id, options); };
}"""


class Extension:
    """A persistent Chromium context with the unpacked extension, its service worker and its side panel page."""

    def __init__(self, ui: Any, tmp: Path, name: str) -> None:
        self.ui, self.tmp, self.name, self.n = ui, tmp, name, 0
        self.context: Any = None
        self.panel: Any = None

    async def start(self) -> Extension:
        # a copy whose manifest grants 127.0.0.1 up front: what a user grants on the options page's prompt
        # (chrome.permissions.request), which a headless browser cannot click
        copy = self.tmp / "extension"
        shutil.copytree(EXTENSION, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["host_permissions"] = ["http://127.0.0.1/*"]
        (copy / "manifest.json").write_text(json.dumps(manifest))
        pw = self.ui.playwright
        self.context = await self.ui(pw.chromium.launch_persistent_context(
            str(self.tmp / "profile"), executable_path=self.ui.executable, headless=False,
            viewport={"width": 400, "height": 860}, locale="en-US",
            args=["--headless=new", *ARGS, f"--disable-extensions-except={copy}", f"--load-extension={copy}"]))
        await self.worker()
        self.panel = await self.open("ui/sidepanel.html")
        return self

    async def worker(self) -> Any:
        """The extension's service worker (waiting for it when it is starting)."""
        async def find() -> Any:
            for _ in range(100):
                for w in self.context.service_workers:
                    if w.url.startswith(f"chrome-extension://{EXT_ID}/"):
                        return w
                await asyncio.sleep(0.1)
            raise AssertionError("the extension's service worker did not start")
        return await self.ui(find())

    async def open(self, path: str) -> Any:
        page = await self.ui(self.context.new_page())
        await self.ui(page.goto(f"chrome-extension://{EXT_ID}/{path}"))
        return page

    async def stop(self) -> None:
        if self.context is not None:
            await self.ui(self.context.close())

    async def shot(self, step: str, page: Any = None) -> None:
        self.n += 1
        path = ARTIFACTS / f"extension-{self.name}-{self.n:02d}-{step}.png"
        await self.ui((page or self.panel).screenshot(path=str(path), full_page=True))

    async def see(self, text: str, page: Any = None, timeout: float = 30.0) -> None:
        """Wait until the page shows this text (a person reading it)."""
        locator = (page or self.panel).get_by_text(text, exact=False).first
        await self.ui(locator.wait_for(state="visible", timeout=timeout * 1000))

    async def card(self, name: str) -> str:
        """The text of the one call card with this name (fails if there is none or more than one)."""
        cards = self.panel.get_by_role("article", name=name)
        await self.ui(cards.first.wait_for(state="visible", timeout=30000))
        assert await self.ui(cards.count()) == 1
        return await self.ui(cards.first.inner_text())

    async def sign_in_with_token(self, server: str, token: str) -> None:
        await self.ui(self.panel.get_by_label("Hej CTI server").fill(server))
        await self.ui(self.panel.get_by_label("User token (from your administrator)").fill(token))
        await self.ui(self.panel.get_by_role("button", name="Sign in with token").click())
        await self.see("Online")

    async def sign_in_to_hubspot(self) -> None:
        """The CRM: chosen on the options page, signed in through the server (the fake approves at once)."""
        options = await self.open("ui/options.html")
        await self.ui(options.get_by_label("Your company's CRM").select_option("hubspot"))
        await self.ui(options.locator("#crm-form").get_by_role("button", name="Save").click())
        await self.ui(options.get_by_role("button", name="Sign in to the CRM").click())
        await self.see("Signed in to HubSpot.", page=options)
        await self.shot("crm-signed-in", page=options)
        await self.ui(options.close())

    async def pops(self, count: int | None = None) -> list[dict[str, Any]]:
        """The notifications shown so far (SPY), waiting for ``count`` of them when given."""
        for _ in range(100):
            shown = await self.ui((await self.worker()).evaluate("self.__pops"))
            if count is None or len(shown) >= count:
                return shown
            await asyncio.sleep(0.1)
        return shown


@pytest.fixture
async def extension(ui, tmp_path, request):
    ext = Extension(ui, tmp_path, request.node.name.removeprefix("test_")[:40])
    await ext.start()
    yield ext
    await ext.stop()


@pytest.fixture
async def hubspot():
    crm = State()
    crm.add_contact("51", "Julia", "Schmidt", phone="0157 91234567", owner="83210754", company_id="9001",
                    company="Acme GmbH")
    crm.add_contact("52", "Max", "Mustermann", phone="0211 5550100", company="Beispiel AG")
    crm.add_contact("53", "Erika", "Musterfrau", phone="0211 5550199", company="Beispiel AG")
    crm.tokens.clear()  # only what the OAuth fake issues is good
    oauth = FakeOAuth(OAuthState(valid=crm.tokens))
    async with Running(make_app(crm)) as crm_base, Running(oauth.app()) as oauth_base:
        crm.base, oauth.base = crm_base, oauth_base
        yield crm, oauth


async def wait_for(check: Any, timeout: float = 15.0) -> None:
    for _ in range(int(timeout * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_sign_in_pop_note_renewal_and_revocation(make_harness, extension, hubspot):
    crm, oauth = hubspot
    h = await make_harness(hubspot_client_id=CLIENT_ID, hubspot_client_secret=CLIENT_SECRET,
                           hubspot_authorize_url=f"{oauth.base}/oauth/authorize",
                           hubspot_token_url=f"{oauth.base}/oauth/token")
    acc = await h.account(crm="hubspot", crm_instance=crm.base)
    user = await h.admin.add_user(account_id=acc["account_id"], sipgate_user="w0", crm_user="83210754")

    await extension.shot("signed-out")
    await extension.sign_in_with_token(h.base, user["token"])
    await extension.shot("signed-in")

    await extension.sign_in_to_hubspot()
    assert [r["grant_type"] for r in oauth.state.token_requests] == ["authorization_code"]

    await extension.ui((await extension.worker()).evaluate(SPY))
    await h.post(acc["url"], new_call("CX1"))
    card = await extension.card("Julia Schmidt")
    assert "Acme GmbH" in card and DISPLAY in card and "Ringing" in card and "Open in HubSpot" in card
    [pop] = await extension.pops()
    assert (pop["title"], pop["message"]) == ("Julia Schmidt", f"Acme GmbH · {DISPLAY}")
    await extension.shot("ringing")
    await extension.ui(extension.panel.get_by_role("article", name="Julia Schmidt").screenshot(
        path=str(ARTIFACTS / "extension-pop-card.png")))  # the README's picture (docs/extension-pop.png)

    await h.post(acc["url"], answer("CX1"))
    await extension.see("Answered ·")
    await h.post(acc["url"], hangup("CX1"))
    await extension.see("Ended · talk time")
    await extension.see("Logged in HubSpot")
    note = extension.panel.get_by_label("Note for the call record")
    await extension.ui(note.fill("Wants the offer by Friday."))
    await extension.ui(extension.panel.get_by_role("button", name="Save note").click())
    await extension.see("Saved")
    await extension.shot("note-saved")
    # the rep adds a line to the note and saves again: the record gets the new line, not the first one twice
    await extension.ui(note.click())
    await extension.ui(note.press("Control+End"))
    await extension.ui(note.press_sequentially(" Call back Monday."))
    await extension.ui(extension.panel.get_by_role("button", name="Save note").click())
    await extension.see("Call back Monday.")  # in the card's saved notes
    await extension.ui(extension.panel.locator(".note-status[data-status=saved]").wait_for())
    await extension.shot("note-saved-twice")
    [record] = crm.created
    await wait_for(lambda: "Call back Monday." in crm.calls[record["id"]]["properties"].get("hs_call_body", ""))
    assert crm.calls[record["id"]]["properties"]["hs_call_body"].count("Wants the offer by Friday.") == 1
    assert len(crm.created) == 1

    # the CRM's access token expires: the next call is renewed through the server, nobody asked
    oauth.state.expire_all()
    await h.post(acc["url"], new_call("CX2", frm="492115550100"))
    assert "Beispiel AG" in await extension.card("Max Mustermann")
    assert [r["grant_type"] for r in oauth.state.token_requests] == ["authorization_code", "refresh_token"]
    assert not await extension.ui(extension.panel.get_by_text("Sign in to your CRM").is_visible())
    await extension.shot("renewed")

    # the CRM refuses the refresh token too: only then is the user asked to sign in to the CRM again
    oauth.state.expire_all()
    oauth.state.refresh_tokens.clear()
    await h.post(acc["url"], new_call("CX3", frm="492115550199"))
    await extension.see("Your CRM sign-in has expired. Please sign in to the CRM again.")
    assert "Looking the caller up in the CRM" in await extension.card("Unknown caller")  # popped unresolved
    await h.post(acc["url"], hangup("CX3"))  # no call.resolved comes: the card stops waiting for one
    await extension.see("Sign in to your CRM to see who calls.")  # why it has no name: not "did not answer"
    assert "The CRM did not answer" not in await extension.card("Unknown caller")
    assert "Looking the caller up" not in await extension.card("Unknown caller")
    assert [r["grant_type"] for r in oauth.state.token_requests][-1] == "refresh_token"
    await extension.shot("crm-sign-in-again")

    # an administrator revokes the token: the panel says so and offers the sign-in again
    await h.admin.new_user_token(user["user_id"])
    await extension.see("Signed out: your token was revoked")
    await extension.ui(extension.panel.get_by_role("button", name="Sign in with token").wait_for())
    await extension.shot("revoked")


async def test_a_late_lookup_fills_the_card_and_an_anonymous_call_pops(make_harness, extension, hubspot):
    crm, oauth = hubspot
    h = await make_harness(hubspot_client_id=CLIENT_ID, hubspot_client_secret=CLIENT_SECRET,
                           hubspot_authorize_url=f"{oauth.base}/oauth/authorize",
                           hubspot_token_url=f"{oauth.base}/oauth/token", lookup_deadline_ms=300)
    acc = await h.account(crm="hubspot", crm_instance=crm.base)
    user = await h.admin.add_user(account_id=acc["account_id"], sipgate_user="w0", crm_user="83210754")
    await extension.sign_in_with_token(h.base, user["token"])
    await extension.ui((await extension.worker()).evaluate(SPY))

    await h.post(acc["url"], sipgate_fixture("newCall_in_anonymous.txt"))
    card = await extension.card("Anonymous")
    assert "Ringing" in card and "Looking the caller up" not in card and "Not found" not in card

    # a call while the extension has no CRM token yet: it pops unresolved, and the server asks for a token
    await h.post(acc["url"], new_call("CR1"))
    assert "Looking the caller up in the CRM" in await extension.card("Unknown caller")
    await extension.see("Sign in to your CRM so that callers get names.")
    await extension.shot("unresolved")
    await extension.sign_in_to_hubspot()  # the token goes to the server, whose lookup answers: call.resolved
    card = await extension.card("Julia Schmidt")
    assert "Acme GmbH" in card and "Open in HubSpot" in card and "Looking the caller up" not in card
    assert await extension.ui(extension.panel.get_by_role("article").count()) == 2
    pops = await extension.pops(count=3)
    assert [p["title"] for p in pops] == ["Anonymous", "Unknown caller", "Julia Schmidt"]
    assert pops[1]["id"] == pops[2]["id"] == "call:CR1"  # the same notification, now with the name
    await extension.shot("resolved")


async def test_a_stopped_service_worker_resumes_without_losing_or_repeating(make_harness, extension):
    h = await make_harness()
    acc = await h.account(contacts=[("c1", "Julia Schmidt", "ACME GmbH", "+49 157 91234567", "", "https://crm.example/c1"),
                                    ("c2", "Max Mustermann", "Beispiel AG", "+49 211 5550100", "", "")])
    user = await h.admin.add_user(account_id=acc["account_id"], sipgate_user="w0")
    await extension.sign_in_with_token(h.base, user["token"])
    await h.app[HUB].close_all(1001)  # as a server does when it shuts down: the extension comes back
    await h.post(acc["url"], new_call("CS1"))
    assert "Ringing" in await extension.card("Julia Schmidt")
    await extension.ui(extension.panel.close())
    watcher = await h.connect(user["token"])  # a second session of the user: tells when the server has sent

    worker = await extension.worker()
    await extension.ui(worker.evaluate("self.__before = true"))
    blank = await extension.ui(extension.context.new_page())
    cdp = await extension.ui(extension.context.new_cdp_session(blank))
    await extension.ui(cdp.send("ServiceWorker.enable"))
    await extension.ui(cdp.send("ServiceWorker.stopAllWorkers"))

    # while it is stopped: the first call is answered and ends, a second one rings
    await h.post(acc["url"], answer("CS1"))
    await h.post(acc["url"], hangup("CS1"))
    await h.post(acc["url"], new_call("CS2", frm="492115550100"))
    await watcher.expect("call.ended", call_id="CS1")
    await watcher.expect("call.ringing", call_id="CS2")

    extension.panel = await extension.open("ui/sidepanel.html")  # wakes the worker, which resumes
    assert await extension.ui((await extension.worker()).evaluate("self.__before === undefined"))  # a new one
    await extension.see("Max Mustermann")
    first = await extension.card("Julia Schmidt")
    assert "Ended" in first and "Ringing" not in first
    assert "Ringing" in await extension.card("Max Mustermann")
    assert await extension.ui(extension.panel.get_by_role("article").count()) == 2
    shown = await extension.ui((await extension.worker()).evaluate("chrome.notifications.getAll()"))
    assert list(shown) == ["call:CS2"]  # the ended call's pop is gone, the new one shows once
    await extension.shot("resumed")


@pytest.fixture
async def sipgate():
    async with FakeSipgate().running() as fake:
        yield fake


def transferred(call_id: str, orig: str, user: str) -> str:
    """The newCall of a leg that another leg (``orig``) was transferred into, as sipgate posts it."""
    return (f"event=newCall&direction=in&from={CALLER}&to=492111234567&callId={call_id}&origCallId={orig}"
            f"&user%5B%5D=User+{user}&userId%5B%5D={user}&fullUserId%5B%5D=1234567{user}&xcid=x{orig.lower()}")


async def test_sign_in_with_sipgate_colleagues_dial_and_a_transfer_on_one_card(make_harness, extension, sipgate):
    h = await make_harness(sipgate_api_url=sipgate.api_url, sipgate_login_url=sipgate.login_url,
                           sipgate_client_id=sipgate.state.client_id, sipgate_client_secret=sipgate.state.client_secret,
                           sipgate_cache_ttl_s=0)
    acc = await h.account(contacts=[("c1", "Julia Schmidt", "ACME GmbH", "+49 157 91234567", "", "")])
    await h.admin.connect_sipgate(acc["account_id"], token_id=PAT_ID, token=PAT)
    await h.admin.configure_webhooks(acc["account_id"])

    await extension.ui(extension.panel.get_by_label("Hej CTI server").fill(h.base))
    await extension.ui(extension.panel.get_by_role("button", name="Sign in with sipgate").click())
    login = await extension.ui(extension.context.wait_for_event(
        "page", predicate=lambda p: p.url.startswith(sipgate.login_url), timeout=30000))
    await extension.ui(login.get_by_role("button", name="Anmelden").click())
    await extension.see("Ada Lovelace · Online")  # the name from `me`
    await extension.shot("signed-in-with-sipgate")

    await extension.ui(extension.panel.get_by_label("Search colleagues").fill("hopp"))
    await extension.see("Grace Hopper")
    await extension.shot("colleagues")
    await extension.ui(extension.panel.get_by_role("button", name="Call Grace Hopper").click())
    await extension.see("Calling: your phone rings first.")
    await wait_for(lambda: sipgate.state.placed)
    assert sipgate.state.placed[0]["caller"] == "e0" and sipgate.state.placed[0]["callee"] in ("+4921155500101", "11")

    # tel: links on a site the user listed call through sipgate too
    async def page_with_a_phone_link(_: web.Request) -> web.Response:
        return web.Response(text='<a href="tel:+49%20211%2055500101">Grace</a>', content_type="text/html")

    site = web.Application()
    site.router.add_get("/", page_with_a_phone_link)
    async with Running(site) as site_base:
        options = await extension.open("ui/options.html")
        await extension.ui(options.get_by_label("Sites, one a line").fill(site_base))
        await extension.ui(options.locator("#tel-form").get_by_role("button", name="Save").click())
        await extension.see("Saved.", page=options)
        page = await extension.ui(extension.context.new_page())
        await extension.ui(page.goto(site_base))
        await extension.ui(page.get_by_role("link", name="Grace").click())
        await wait_for(lambda: len(sipgate.state.placed) == 2)
        assert sipgate.state.placed[1]["callee"] in ("+4921155500101", "+49 211 55500101")
        await extension.ui(page.close())
        await extension.ui(options.close())

    # her desk phone (the default device) is offline, her mobile is not: the call cannot ring, and she is told
    sipgate.state.devices["w0"].append(dict(sipgate.state.devices["w1"][1], id="y0", alias="Handy von Ada", online=True))
    sipgate.state.set_online("e0", False)
    await extension.ui(extension.panel.get_by_role("button", name="Call Grace Hopper").click())
    await extension.see("Your sipgate phone is offline")

    # a call rings for Ada and Grace; Grace answers and transfers it to Ada: one card, one notification
    await extension.ui((await extension.worker()).evaluate(SPY))
    grace = await h.connect(await h.user(acc["account_id"], "w1"))
    await h.post(acc["url"], new_call("CT1", users=("w0", "w1")))
    await extension.card("Julia Schmidt")
    await h.post(acc["url"], answer("CT1", by="w1"))
    await extension.see("Answered by Grace Hopper")  # her name from the directory; hers to end or transfer
    card = extension.panel.get_by_role("article", name="Julia Schmidt")
    assert not await extension.ui(card.get_by_role("button", name="Hang up").is_visible())
    assert not await extension.ui(extension.panel.get_by_role("button", name="Transfer the call to Grace Hopper").count())
    assert await extension.ui((await extension.worker()).evaluate("chrome.notifications.getAll()")) == {}
    await extension.shot("answered-by-grace")
    await h.post(acc["url"], transferred("CT2", "CT1", "w0"))
    await h.post(acc["url"], hangup("CT1"))
    await grace.expect("call.ended", call_id="CT1")
    pops = await extension.pops(count=2)  # the transferred leg pops again, on the same notification
    assert [p["id"] for p in pops] == ["call:CT1", "call:CT1"]
    await extension.see("Ringing")
    assert "Ringing" in await extension.card("Julia Schmidt")  # one card, ringing again for Ada
    await extension.shot("transferred")


async def test_sugarcrm_sign_in_with_name_and_password(make_harness, extension):
    crm = sugarcrm.State()
    crm.tokens.clear()
    crm.add_contact("s1", "Julia", "Schmidt", "+49 157 91234567", company="ACME GmbH")
    app = sugarcrm.make_app(crm)
    grants = password_grant(app, crm.tokens, "/rest/v11/oauth2/token")
    async with Running(app) as base:
        h = await make_harness()
        acc = await h.account(crm="sugarcrm", crm_instance=base)
        user = await h.admin.add_user(account_id=acc["account_id"], sipgate_user="w0")
        await extension.sign_in_with_token(h.base, user["token"])
        options = await extension.open("ui/options.html")
        await extension.ui(options.get_by_label("Your company's CRM").select_option("sugarcrm"))
        await extension.ui(options.get_by_label("Address of your CRM").fill(base))
        await extension.ui(options.locator("#crm-form").get_by_role("button", name="Save").click())
        for password in ("wrong", "pw"):
            await extension.ui(options.get_by_label("CRM user name").fill("rep"))
            await extension.ui(options.get_by_label("CRM password (not kept)").fill(password))
            await extension.ui(options.locator("#crm-password").get_by_role("button", name="Sign in to the CRM").click())
            await extension.see("CRM sign-in failed." if password == "wrong" else "Signed in to SugarCRM.", page=options)
            if password == "wrong":  # in the user's words only (the CRM's English reason goes to the console)
                assert await extension.ui(options.get_by_role("alert").inner_text()) == "CRM sign-in failed."
        await extension.shot("sugar-signed-in", page=options)
        assert grants == ["password", "password"]
        stored = await extension.ui((await extension.worker()).evaluate("chrome.storage.local.get(null)"))
        assert "pw" not in json.dumps(stored)  # the tokens are kept, the password is not

        await h.post(acc["url"], new_call("CG1"))
        assert "ACME GmbH" in await extension.card("Julia Schmidt")

        # sign-out forgets every token, Hej CTI's and the CRM's
        assert {"token", "crmTokens"} <= set(stored)
        await extension.ui(extension.panel.get_by_role("button", name="Sign out").click())
        await extension.see("Signed out. Every token is forgotten.")
        stored = await extension.ui((await extension.worker()).evaluate("chrome.storage.local.get(null)"))
        assert not {"token", "crmTokens"} & set(stored) and stored["crm"] == {"kind": "sugarcrm", "url": base,
                                                                             "platform": "hejcti"}
        assert await extension.ui(extension.panel.get_by_role("article").count()) == 0


async def test_suitecrm_sign_in_kept_when_the_settings_are_saved_again(make_harness, extension):
    crm = suitecrm.State()
    crm.tokens.clear()
    crm.add_contact("u1", "Julia", "Schmidt", "+49 157 91234567", company="ACME GmbH")
    app = suitecrm.make_app(crm)
    grants = password_grant(app, crm.tokens, "/Api/access_token", json_body=False)
    secrets_sent: list[str] = []

    @web.middleware
    async def client_secret(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/Api/access_token":
            secrets_sent.append((await request.post()).get("client_secret"))
        return await handler(request)

    app.middlewares.insert(0, client_secret)
    async with Running(app) as base:
        h = await make_harness()
        acc = await h.account(crm="suitecrm", crm_instance=base)
        await extension.sign_in_with_token(h.base, await h.user(acc["account_id"], "w0"))
        options = await extension.open("ui/options.html")
        await extension.ui(options.get_by_label("Your company's CRM").select_option("suitecrm"))
        await extension.ui(options.get_by_label("Address of your CRM").fill(base))
        await extension.ui(options.get_by_label("SuiteCRM client id (Password Client)").fill("hejcti-client"))
        await extension.ui(options.get_by_label("SuiteCRM client secret").fill("s3cret"))
        await extension.ui(options.locator("#crm-form").get_by_role("button", name="Save").click())
        await extension.ui(options.get_by_label("CRM user name").fill("rep"))
        await extension.ui(options.get_by_label("CRM password (not kept)").fill("pw"))
        await extension.ui(options.locator("#crm-password").get_by_role("button", name="Sign in to the CRM").click())
        await extension.see("Signed in to SuiteCRM.", page=options)
        assert (grants, secrets_sent) == (["password"], ["s3cret"])
        await extension.ui(options.close())

        # the settings page again, saved as it is: the secret field is empty and means "unchanged"
        options = await extension.open("ui/options.html")
        secret = options.get_by_label("SuiteCRM client secret")
        await extension.ui(options.get_by_label("Address of your CRM").wait_for())
        assert await extension.ui(secret.input_value()) == ""
        assert await extension.ui(secret.get_attribute("placeholder")) == "Stored. Leave empty to keep it."
        await extension.ui(options.locator("#crm-form").get_by_role("button", name="Save").click())
        await extension.see("Saved.", page=options)
        assert await extension.ui(options.locator("#crm-state").inner_text()) == "Signed in to SuiteCRM."
        await extension.shot("suite-saved-again", page=options)
        stored = await extension.ui((await extension.worker()).evaluate("chrome.storage.local.get(null)"))
        assert stored["crm"]["clientSecret"] == "s3cret" and stored["crmTokens"]["access_token"] in crm.tokens

        await h.post(acc["url"], new_call("CU1"))
        assert "ACME GmbH" in await extension.card("Julia Schmidt")  # the CRM token still works


async def test_transfer_and_hang_up_from_the_side_panel(make_harness, extension, sipgate):
    h = await make_harness(sipgate_api_url=sipgate.api_url, sipgate_cache_ttl_s=0)
    acc = await h.account()
    await h.admin.connect_sipgate(acc["account_id"], token_id=PAT_ID, token=PAT)
    await h.admin.configure_webhooks(acc["account_id"])
    await extension.sign_in_with_token(h.base, await h.user(acc["account_id"], "w0"))
    grace = SipgateClient(h.http, Credential.pat(PAT_ID, PAT), base_url=sipgate.api_url)
    sipgate.state.manual = True

    await extension.ui((await extension.worker()).evaluate(SPY))
    await grace.dial("e1", sipgate.state.number_of("w0"))  # Grace calls Ada, who hangs up while it rings
    sipgate.release(2)  # the two newCalls
    card = await extension.card("Grace Hopper")  # no CRM contact: a colleague, by her sipgate number
    assert "internal" in card and "Ringing" in card
    # the pop does not wait for the directory: it shows at once, and says who it is once the directory answered
    pops = await extension.pops(count=2)
    assert [(p["title"], p.get("update", False)) for p in pops] == [("Unknown caller", False), ("Grace Hopper", True)]
    await extension.ui(extension.panel.get_by_role("button", name="Hang up").click())
    await wait_for(lambda: sipgate.state.hangups)
    sipgate.release(2)  # both legs' hangups
    await extension.see("Missed")
    await extension.ui(extension.panel.get_by_role("button", name="Remove").click())

    out_leg = await grace.dial("e1", sipgate.state.number_of("w0"))  # she calls again; Ada answers
    ada_leg = sipgate.state.sessions[out_leg][1].call_id
    sipgate.release(4)
    await extension.see("Answered ·")
    await extension.ui(extension.panel.get_by_label("Search colleagues").fill("jürgen"))
    await extension.ui(extension.panel.get_by_role("button", name="Transfer the call to Jürgen Müller").click())
    await extension.see("Transferring…")
    await wait_for(lambda: sipgate.state.transfers)
    assert sipgate.state.transfers == [(ada_leg, {"attended": False, "phoneNumber": "+" + sipgate.state.number_of("w2")})]
    sipgate.release(20)
    await sipgate.settled()
    await extension.see("Ended")
    await extension.shot("transferred-to-juergen")

    # signing out leaves nothing of the account on the panel: no calls, no colleagues found before
    await extension.ui(extension.panel.get_by_role("button", name="Sign out").click())
    notice = extension.panel.get_by_role("status").filter(has_text="Signed out. Every token is forgotten.")
    await extension.ui(notice.wait_for())  # information is a status, not an alert
    await extension.sign_in_with_token(h.base, await h.user(acc["account_id"], "w1"))  # the next user of it
    assert not await extension.ui(extension.panel.get_by_text("Jürgen Müller").count())
    assert await extension.ui(extension.panel.get_by_label("Search colleagues").input_value()) == ""
    assert await extension.ui(extension.panel.get_by_role("article").count()) == 0
    assert await extension.ui(extension.panel.evaluate("document.documentElement.lang")) == "en"
