"""The portal in a real browser (issue 11, point 5): an admin signs in with sipgate (the fake's authorize page),
sets the CRM, points sipgate's webhooks here, enables and maps two users (one by the email proposal from the
CRM's users), reads a simulated call on the calls page, ends a user's sessions (the extension's socket closes
with 4502) and switches the language. Every step leaves a screenshot in tests/artifacts/."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from structlog.testing import capture_logs

from hejcti.app import SIPGATE
from tests.browser.conftest import ARTIFACTS
from tests.e2e.test_fanout import hangup, new_call
from tests.fakes import sugarcrm
from tests.fakes.base import Running
from tests.fakes.sipgate import FakeSipgate
from tests.integration.crm.test_sugar_list_users import sugar_user


@pytest.fixture
async def sipgate():
    async with FakeSipgate().running() as fake:
        yield fake


@pytest.fixture
async def sugar():
    state = sugarcrm.State()
    state.records += [sugar_user("su-grace", "Grace", "Hopper", "grace.hopper@example.org"),
                      sugar_user("su-juergen", "Jürgen", "Müller", "j.mueller@crm.example.org"),
                      sugar_user("su-ada", "Ada", "Lovelace", "ada@crm.example.org")]
    async with Running(sugarcrm.make_app(state)) as base:
        yield base


#: the selects (of a CSS selector) whose chosen option's text is wider than the box that shows it
UNCLIPPED = """(selector) => [...document.querySelectorAll(selector)].filter((s) => {
  const c = document.createElement("canvas").getContext("2d"), st = getComputedStyle(s);
  c.font = st.font;
  const text = c.measureText(s.selectedOptions[0].textContent).width;
  const room = s.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight) - 16;  // 16: the arrow
  return text > room;
}).map((s) => s.selectedOptions[0].textContent)"""


async def fits_a_phone(s: Steps) -> None:
    """Konto on a 390 px screen: nothing wider than the screen, and the facts' values have room to read."""
    assert await s(s.page.evaluate("document.documentElement.scrollWidth")) <= 390
    box = await s(s.page.locator("#webhooks-state").bounding_box())
    assert box["width"] > 100, box


class Steps:
    """One page of the browser, with a screenshot per step."""

    def __init__(self, ui: Any, page: Any, name: str) -> None:
        self.ui, self.page, self.name, self.n = ui, page, name, 0
        self.seen: list[str] = []  # every page's URL and HTML at each screenshot

    async def __call__(self, coro: Any) -> Any:
        return await self.ui(coro)

    async def shot(self, step: str) -> None:
        self.n += 1
        path = ARTIFACTS / f"{self.name}-{self.n:02d}-{step}.png"
        await self.ui(self.page.screenshot(path=str(path), full_page=True))
        self.seen += [self.page.url, await self.ui(self.page.content())]

    async def text(self, where: Any = "main") -> str:
        locator = self.page.locator(where) if isinstance(where, str) else where
        return await self.ui(locator.inner_text())

    async def click(self, name: str, role: str = "button") -> None:
        await self.ui(self.page.get_by_role(role, name=name, exact=True).click())

    async def row(self, who: str) -> Any:
        return self.page.locator("#users tbody tr", has=self.page.locator("th", has_text=who))


async def test_an_admin_runs_the_portal_in_a_browser(ui, make_harness, sipgate, sugar):
    h = await make_harness(sipgate_api_url=sipgate.api_url, sipgate_login_url=sipgate.login_url,
                           sipgate_client_id=sipgate.state.client_id,
                           sipgate_client_secret=sipgate.state.client_secret,
                           crm_allow_private_hosts=True)  # the fake CRM is on 127.0.0.1
    context = await ui(ui.browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US"))
    page = await ui(context.new_page())
    s = Steps(ui, page, "portal")
    capturing = capture_logs()
    events = capturing.__enter__()  # the server runs in this process: its log lines, as it writes them
    try:
        # sign in with sipgate: the portal's button, then the fake's authorize page and its button
        await s(page.goto(h.base + "/portal"))
        assert "Sign in with sipgate" in await s.text()
        await s.shot("signin")
        for _ in range(6):  # by keyboard alone: Tab to the button, Enter
            await s(page.keyboard.press("Tab"))
            if await s(page.evaluate("document.activeElement.textContent")) == "Sign in with sipgate":
                break
        await s(page.keyboard.press("Enter"))
        await s(page.wait_for_selector("#kc-login"))
        await s(page.click("#kc-login"))
        await s(page.wait_for_url(re.compile(r".*/portal/account$")))
        account_id = (await h.pool.fetchval("SELECT id FROM accounts"))
        assert "point elsewhere" in await s.text()
        await s.shot("account")

        # the CRM
        await s(page.get_by_role("combobox", name="CRM", exact=True).select_option("sugarcrm"))
        await s(page.get_by_label("Instance (URL or Zendesk subdomain)").fill(sugar))
        await s(page.get_by_label("Write a call record into the CRM after each call").check())
        await s.click("Save")
        assert "The CRM settings were saved." in await s.text()
        shown = await h.admin.show_account(account_id)
        assert (shown["crm"], shown["crm_instance"], shown["log_calls"]) == ("sugarcrm", sugar, True)

        # sipgate's webhooks
        await s.click("Set sipgate webhooks")
        assert "now point here" in await s.text() and "point here" in await s.text("#webhooks-state")
        assert sipgate.state.settings["incomingUrl"] == shown["webhook_url"] == sipgate.state.settings["outgoingUrl"]
        assert sipgate.state.settings["whitelist"] == ["p0", "g1"]  # the rest kept
        await s.shot("webhooks-set")

        # users: enable two, map one by id, the other from the CRM's list by its email proposal
        await s.click("Users", role="link")
        assert "Grace Hopper" in await s.text() and "juergen.mueller@example.org" in await s.text()
        await s(page.get_by_label("Filter").fill("muller"))  # the script's filter: accents and case ignored
        visible = page.locator("#users tbody tr:visible")
        assert await s(visible.count()) == 1 and "Jürgen Müller" in await s.text(visible.first)
        await s(page.get_by_label("Filter").fill(""))
        await s.click("Enable: Grace Hopper")
        await s.click("Enable: Jürgen Müller")
        assert "They sign in to the extension with sipgate." in await s.text()  # no token to hand out here
        assert await s(page.get_by_role("button", name="New token: Grace Hopper").count()) == 0
        assert (await s.text((await s.row("Grace Hopper")).locator("td").nth(2))).strip() == "enabled"
        await s(page.get_by_label("CRM user id: Jürgen Müller").fill("su-juergen"))
        await s((await s.row("Jürgen Müller")).get_by_role("button", name="Map").click())
        assert "The CRM user was saved." in await s.text()
        await s.shot("users-enabled")
        await s(page.get_by_label("CRM access token").fill("good-token"))
        await s.click("Use this token")
        picker = page.get_by_label("CRM user: Grace Hopper")
        chosen = await s(picker.locator("option:checked").inner_text())
        assert "Grace Hopper" in chosen
        assert (await s(picker.get_attribute("aria-describedby"))).startswith("proposal-usr")  # the proposal's note
        assert "proposed (same email)" in await s.text((await s.row("Grace Hopper")).locator(".proposal"))
        await s.shot("users-proposal")
        assert await s(page.evaluate(UNCLIPPED, "#users select")) == []  # each picker shows its choice whole
        await s((await s.row("Grace Hopper")).get_by_role("button", name="Map").click())
        users = {u["sipgate_user"]: u for u in (await h.admin.list_users(account_id))["users"]}
        assert users["w1"]["crm_user"] == "su-grace" and users["w2"]["crm_user"] == "su-juergen"
        assert "good-token" not in await s(page.content())

        # a call for Grace, whose extension is connected: it shows on the calls page with its pop time
        grace_tokens = [(await h.admin.new_user_token(users["w1"]["user_id"]))["token"]]
        grace = await h.connect(grace_tokens[0])
        status, _ = await h.post(shown["webhook_url"], new_call("CALLBROWSER1", frm="4915791234567", users=("w1",)))
        assert status == 200
        await grace.expect("call.ringing")
        await h.post(shown["webhook_url"], hangup("CALLBROWSER1"))
        await s.click("Calls", role="link")
        for _ in range(50):
            cells = await s.text("main")
            if "…567" in cells and re.search(r"\t\d+\t", cells):
                break
            await asyncio.sleep(0.1)
            await s(page.reload())
        assert "…567" in cells and "4915791234567" not in cells and "incoming" in cells
        assert re.search(r"\t\d+\t", cells), cells  # ring-to-pop in ms
        rang, answered = await s(page.locator("#calls tbody tr").first.locator("td").evaluate_all(
            "(tds) => [tds[3].innerText, tds[4].innerText]"))
        assert rang == "Grace Hopper (w1)", rang  # the name fetched from sipgate, its id beside it
        await s.shot("calls")

        # end Grace's sessions: her socket closes with 4502
        await s.click("Users", role="link")
        await s.click("End sessions: Grace Hopper")
        assert (await grace.expect("__closed__", timeout=10))["code"] == 4502
        assert "The user's sessions were ended." in await s.text()
        await s.shot("revoked")

        # German, and the choice stays
        await s.click("Deutsch")
        assert (await s.text("h1")) == "Benutzer"
        assert "Sitzungen beenden" in await s.text()
        await s.click("Konto", role="link")
        assert (await s.text("h1")) == "Konto"
        await s.shot("german")
        await s(page.set_viewport_size({"width": 390, "height": 800}))  # a phone
        await s.click("Benutzer", role="link")
        await s.shot("phone")
        wide = await s(page.evaluate("document.documentElement.scrollWidth"))
        assert wide <= 390  # the table scrolls inside its box; the page does not
        await s.click("Konto", role="link")
        await s.shot("phone-account")
        await fits_a_phone(s)
        # no token of anyone's in a page, a URL or a log line
        assert any(e["event"] == "portal.crm_token" for e in events)  # the capture sees the server's lines
        logged = repr(events)
        secrets = ["good-token", *sipgate.state.access_tokens, *sipgate.state.refresh_tokens, *grace_tokens]
        credential = await h.app[SIPGATE].credential(account_id)
        secrets += [credential.access_token, credential.refresh_token]
        for secret in secrets:
            assert all(secret not in seen for seen in s.seen) and secret not in logged
    finally:
        capturing.__exit__(None, None, None)
        await ui(context.close())


async def test_konto_of_a_csv_account_fits_a_phone(ui, harness):
    acc = await harness.account()  # a CSV file on the server: the CRM select's longest option
    context = await ui(ui.browser.new_context(viewport={"width": 390, "height": 800}, locale="de-DE"))
    page = await ui(context.new_page())
    s = Steps(ui, page, "portal-csv")
    try:
        await s(page.goto(harness.base + "/portal/signin"))
        await s(page.get_by_label("Kontokennung").fill(acc["account_id"]))
        await s(page.get_by_label("Admin-Token").fill(acc["admin_token"]))
        await s(page.get_by_role("button", name="Anmelden", exact=True).click())
        await s(page.wait_for_url(re.compile(r".*/portal/account$")))
        await s.shot("phone-account")
        await fits_a_phone(s)
    finally:
        await ui(context.close())
