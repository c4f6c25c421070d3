"""sipgate partly failing, slow, or not usable from this process, against the real app and the fake sipgate:
a process without the OAuth client does not disconnect the account for everyone; a user's numbers or devices
that cannot be fetched leave that user without them, never the whole listing (no ExceptionGroup, no
internal_error); a listing costs two requests however many users; each action has sipgate_timeout_s in all."""

from __future__ import annotations

from hejcti.app import SIPGATE
from tests.e2e.test_sipgate_actions import connected, search
from tests.fakes.sipgate import PAT, PAT_ID
from tests.sipgate_kit import Browser, sipgate_settings


async def rejected_at(h, account_id: str):
    return await h.pool.fetchval("SELECT sipgate_rejected_at FROM accounts WHERE id = $1", account_id)


# -- a process without SIPGATE_CLIENT_ID -----------------------------------------------------------------


async def test_a_process_without_the_oauth_client_leaves_the_account_connected(make_harness, sipgate_fake):
    configured = await make_harness(**sipgate_settings(sipgate_fake))
    browser = Browser()
    try:
        assert (await browser.sign_in(configured.base, "portal", "w0")).location == "/portal"
    finally:
        await browser.close()
    aid = await configured.pool.fetchval("SELECT id FROM accounts")
    other = await make_harness(sipgate_api_url=sipgate_fake.api_url)  # a shell or process without the OAuth env
    sipgate_fake.state.expire_access_tokens()

    listed = await other.admin.list_users_live(aid)  # what `hejcti user list` prints
    assert listed["sipgate"] == "not_connected"
    assert "OAuth client is not configured in this process" in listed["sipgate_error"]
    session = await other.connect(await other.user(aid, "w1"))
    reply = await session.request({"type": "me", "id": 1})
    assert reply["code"] == "sipgate_not_connected" and "not configured in this process" in reply["message"]
    assert await rejected_at(configured, aid) is None  # not sipgate's verdict: nobody else is disconnected

    assert len(await (await configured.app[SIPGATE].client(aid)).users()) == 3  # refreshes, and works
    assert await rejected_at(configured, aid) is None


# -- numbers or devices of one user failing ------------------------------------------------------------------


async def test_one_users_devices_failing_fails_nothing_else(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    acc, s = await connected(h, users=("w0", "w2"))
    sipgate_fake.state.fail_at("GET", "/w2/devices", 503, "down", n=3)
    assert [u["id"] for u in await search(s["w0"], "muller")] == ["w2"]
    me = await s["w0"].request({"type": "me", "id": 1})
    assert me["type"] == "me" and [d["id"] for d in me["user"]["devices"]] == ["e0"]
    own = await s["w2"].request({"type": "me", "id": 2})  # their own devices are what me asks: said so
    assert own["type"] == "error" and own["code"] == "sipgate_unavailable"
    assert (await s["w2"].request({"type": "me", "id": 3}))["type"] == "me"  # and asked again next time


async def test_numbers_failing_lists_the_users_without_them_and_asks_again_soon(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    acc, s = await connected(h, users=("w0",))
    now = [1000.0]
    h.app[SIPGATE].cache.clock = lambda: now[0]
    sipgate_fake.state.fail_at("GET", "/numbers", 503, "down", n=3)
    users = await search(s["w0"], "")
    assert [(u["id"], u["numbers"]) for u in users] == [("w0", []), ("w1", []), ("w2", [])]
    assert sipgate_fake.state.count("GET", "/numbers") == 3  # three attempts
    await search(s["w0"], "")
    assert sipgate_fake.state.count("GET", "/numbers") == 3  # the listing was kept (for a short while)
    now[0] += 10  # past a partial listing's keeping, well within a whole one's
    assert [u["numbers"] for u in await search(s["w0"], "")] == [["+4921155500100"], ["+4921155500101"],
                                                               ["+4921155500102"]]
    now[0] += 10
    await search(s["w0"], "")
    assert sipgate_fake.state.count("GET", "/numbers") == 4 and sipgate_fake.state.count("GET", "/users") == 3  # connect's, 2

    sipgate_fake.state.fail_at("GET", "/numbers", 503, "down", n=3)  # `hejcti user list`, the portal's Users page
    listed = await h.admin.list_users_live(acc["account_id"])
    assert listed["sipgate"] == "connected" and listed["users"][0]["name"] == "Ada Lovelace"
    assert (await h.admin.users_overview(acc["account_id"]))["sipgate"] == "connected"


async def test_a_401_on_a_sub_request_is_not_connected(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    acc, s = await connected(h, users=("w0",))
    sipgate_fake.state.fail_at("GET", "/numbers", 401, "Unauthorized")
    reply = await s["w0"].request({"type": "directory.search", "q": "ada", "id": 1})
    assert reply["type"] == "error" and reply["code"] == "sipgate_not_connected"
    assert await rejected_at(h, acc["account_id"]) is not None

    await h.admin.connect_sipgate(acc["account_id"], token_id=PAT_ID, token=PAT)  # connected again
    sipgate_fake.state.fail_at("GET", "/w0/devices", 401, "Unauthorized")
    reply = await s["w0"].request({"type": "me", "id": 2})
    assert reply["type"] == "error" and reply["code"] == "sipgate_not_connected"
    assert await rejected_at(h, acc["account_id"]) is not None


async def test_numbers_without_their_user_are_asked_per_user(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    _, s = await connected(h, users=("w0",))
    for numbers in sipgate_fake.state.numbers.values():
        for n in numbers:
            n.pop("endpointUrl")  # /numbers does not say whose phoneline: each user's own /numbers then
    sipgate_fake.state.fail_at("GET", "/w1/numbers", 503, "down", n=3)
    users = {u["id"]: u["numbers"] for u in await search(s["w0"], "")}
    assert users == {"w0": ["+4921155500100"], "w1": [], "w2": ["+4921155500102"]}


# -- load -------------------------------------------------------------------------------------------------


async def test_a_directory_of_fifty_users_costs_two_requests(make_harness, sipgate_fake):
    sipgate_fake.state.add_users(47)
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url)
    _, s = await connected(h, users=("w0", "w49"))
    before = len(sipgate_fake.state.requests)
    found = await search(s["w0"], "number49")
    assert [(u["id"], u["numbers"]) for u in found] == [("w49", ["+4921155500049"])]
    assert sipgate_fake.state.requests[before:] == [("GET", "/v2/users"), ("GET", "/v2/numbers")]
    me = await s["w49"].request({"type": "me", "id": 1})  # the listing is cached: one user's devices only
    assert me["user"]["devices"][0]["id"] == "e49" and me["user"]["numbers"] == ["+4921155500049"]
    assert sipgate_fake.state.requests[before + 2:] == [("GET", "/v2/w49/devices")]


# -- a hung sipgate ------------------------------------------------------------------------------------------


async def test_an_action_has_the_timeout_in_all_however_many_requests(make_harness, sipgate_fake):
    h = await make_harness(sipgate_api_url=sipgate_fake.api_url, sipgate_timeout_s=0.5)
    _, s = await connected(h, users=("w0",))
    sipgate_fake.state.fail_next(2, 503)  # the first two attempts fail at once, the third hangs
    sipgate_fake.state.delay = 3.0
    reply = await s["w0"].request({"type": "me", "id": 1}, timeout=10)
    assert reply["type"] == "error" and reply["code"] == "sipgate_unavailable"
    assert reply["message"] == "sipgate did not answer within 0.5 s"
    assert (await s["w0"].request({"type": "ping", "id": 2})) == {"type": "pong", "id": 2}
