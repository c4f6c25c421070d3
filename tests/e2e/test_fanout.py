"""Fan-out and call state: who a call rings for, voicemail legs, timeouts, the listener's recovery."""

import asyncio

from hejcti.app import LISTENER, REAPER
from tests.conftest import sipgate_fixture

CONTACT = ("c1", "Julia Schmidt", "ACME GmbH", "+49 (0)157 9123-4567", "j@acme.de", "https://crm.example/c1")


def new_call(call_id: str, *, frm: str = "4915791234567", users: tuple[str, ...] = ("w0",), direction: str = "in",
             to: str = "492111234567", extra: str = "") -> str:
    ids = "".join(f"&user%5B%5D=User+{u}&userId%5B%5D={u}&fullUserId%5B%5D=1234567{u}" for u in users)
    return (f"event=newCall&direction={direction}&from={frm}&to={to}&callId={call_id}&origCallId={call_id}"
            f"{ids}&xcid=x{call_id[-8:].lower()}{extra}")


def hangup(call_id: str, cause: str = "normalClearing") -> str:
    return f"event=hangup&callId={call_id}&cause={cause}&from=4915791234567&to=492111234567&direction=in"


async def setup(h, users=("w0",), contacts=(CONTACT,)):
    acc = await h.account(contacts=list(contacts))
    tokens = {u: await h.user(acc["account_id"], u) for u in users}
    return acc, tokens


async def test_group_call_rings_only_the_named_users(harness):
    acc, tokens = await setup(harness, users=("w0", "w1", "w2"))
    w0, w1, w2 = [await harness.connect(tokens[u]) for u in ("w0", "w1", "w2")]
    status, _ = await harness.post(acc["url"], new_call("CALLA1", users=("w0", "w1", "w9")))
    assert status == 200
    r0 = await w0.expect("call.ringing")
    r1 = await w1.expect("call.ringing")
    assert r0["users"] == r1["users"] == ["w0", "w1"]  # w9 is not a user of this account
    await harness.post(acc["url"], new_call("CALLA2", users=("w2",)))
    await w2.expect("call.ringing", call_id="CALLA2")
    assert not [m for m in w2.seen if m.get("call_id") == "CALLA1"]


async def test_without_user_ids_a_call_rings_every_user(harness):
    acc, tokens = await setup(harness, users=("w0", "w1"))
    clients = [await harness.connect(tokens[u]) for u in ("w0", "w1")]
    body = sipgate_fixture("newCall_in_signed_real.txt")  # real push: empty user[], no userId[]
    assert (await harness.post(acc["url"], body))[0] == 200
    for c in clients:
        ringing = await c.expect("call.ringing")
        assert ringing["users"] == ["w0", "w1"]
        assert ringing["number"] == "+491776249000"


async def test_anonymous_caller_pops_without_lookup(harness):
    acc, tokens = await setup(harness)
    rep = await harness.connect(tokens["w0"])
    await harness.post(acc["url"], sipgate_fixture("newCall_in_anonymous.txt"))
    ringing = await rep.expect("call.ringing")
    assert ringing["anonymous"] is True
    assert ringing["number"] is None and ringing["display"] is None
    assert ringing["contacts"] == [] and ringing["resolved"] is True


async def test_outgoing_call_pops_the_callee(harness):
    acc, tokens = await setup(harness, contacts=[("c9", "Callee", "", "015799912345", "", "")])
    rep = await harness.connect(tokens["w0"])
    await harness.post(acc["url"], sipgate_fixture("newCall_out.txt"))
    ringing = await rep.expect("call.ringing")
    assert ringing["direction"] == "out"
    assert ringing["number"] == "+4915799912345"
    assert [c["id"] for c in ringing["contacts"]] == ["c9"]


async def test_numbers_written_any_way_match(harness):
    rows = [("n1", "National", "", "0157 91234567", "", ""), ("n2", "Zeros", "", "0049 157 91234567", "", ""),
            ("n3", "Plus", "", "+49-157-9123-4567", "", ""), ("n4", "Other", "", "0157 91234568", "", "")]
    acc, tokens = await setup(harness, contacts=rows)
    rep = await harness.connect(tokens["w0"])
    await harness.post(acc["url"], new_call("CALLNUM"))
    ringing = await rep.expect("call.ringing")
    assert sorted(c["id"] for c in ringing["contacts"]) == ["n1", "n2", "n3"]


async def test_forward_to_voicemail_makes_no_second_pop(harness):
    acc, tokens = await setup(harness)
    rep = await harness.connect(tokens["w0"])
    for name in ("newCall_in.txt",):
        await harness.post(acc["url"], sipgate_fixture(name))
    first = await rep.expect("call.ringing")
    forwarded = sipgate_fixture("hangup_causes.txt").splitlines()[-1]  # cause=forwarded, same call
    await harness.post(acc["url"], forwarded)
    assert (await rep.expect("call.ended"))["cause"] == "forwarded"
    await harness.post(acc["url"], sipgate_fixture("newCall_in_forwarded_voicemail.txt"))
    await harness.post(acc["url"], sipgate_fixture("answer_in_voicemail.txt"))
    answered = await rep.expect("call.answered")
    assert answered["voicemail"] is True and answered["by"] is None
    assert answered["call_id"] != first["call_id"]
    assert len(rep.of("call.ringing")) == 1  # the voicemail leg did not pop


async def test_talk_time_from_answer_to_hangup(harness):
    acc, tokens = await setup(harness)
    rep = await harness.connect(tokens["w0"])
    cid = "CALLTALK"
    await harness.post(acc["url"], new_call(cid))
    await harness.post(acc["url"], f"event=answer&callId={cid}&user=A&userId=w0&fullUserId=1234567w0"
                                   "&from=4915791234567&to=492111234567&direction=in")
    await rep.expect("call.answered")
    await asyncio.sleep(1.1)
    await harness.post(acc["url"], hangup(cid))
    ended = await rep.expect("call.ended")
    assert ended["duration_s"] >= 1


async def test_unanswered_call_has_no_talk_time(harness):
    acc, tokens = await setup(harness)
    rep = await harness.connect(tokens["w0"])
    await harness.post(acc["url"], new_call("CALLMISS"))
    await harness.post(acc["url"], hangup("CALLMISS", "cancel"))
    ended = await rep.expect("call.ended")
    assert ended["cause"] == "cancel" and ended["duration_s"] is None


async def test_unknown_hangup_cause_is_kept(harness):
    acc, tokens = await setup(harness)
    rep = await harness.connect(tokens["w0"])
    await harness.post(acc["url"], new_call("CALLODD"))
    assert (await harness.post(acc["url"], hangup("CALLODD", "chanunavail")))[0] == 200
    assert (await rep.expect("call.ended"))["cause"] == "chanunavail"


async def test_call_without_hangup_is_ended_with_timeout(make_harness):
    h = await make_harness(ring_timeout_s=1)
    acc, tokens = await setup(h)
    rep = await h.connect(tokens["w0"])
    await h.post(acc["url"], new_call("CALLLOST"))
    await rep.expect("call.ringing")
    await asyncio.sleep(1.2)
    done = await h.app[REAPER].once()
    assert done["ended"] == 1
    ended = await rep.expect("call.ended")
    assert ended["cause"] == "timeout" and ended["duration_s"] is None
    # the real hangup, late, changes nothing
    assert (await h.post(acc["url"], hangup("CALLLOST")))[0] == 200
    assert (await h.app[REAPER].once())["ended"] == 0
    await asyncio.sleep(0.3)
    assert len(rep.of("call.ended")) == 1


async def test_call_talking_past_the_limit_is_ended_with_timeout(make_harness):
    h = await make_harness(talk_timeout_s=1)  # 12 hours by default (CONTRACT §4)
    acc, tokens = await setup(h)
    rep = await h.connect(tokens["w0"])
    await h.post(acc["url"], new_call("CALLTALK"))
    await h.post(acc["url"], "event=answer&callId=CALLTALK&user=A&userId=w0&fullUserId=1234567w0"
                             "&from=4915791234567&to=492111234567&direction=in")
    await rep.expect("call.answered")
    await asyncio.sleep(1.3)
    assert (await h.app[REAPER].once())["ended"] == 1
    ended = await rep.expect("call.ended")
    assert ended["cause"] == "timeout" and ended["duration_s"] is not None and ended["duration_s"] >= 1


def test_the_default_limits_are_ten_minutes_ringing_and_twelve_hours_talking():
    from hejcti.config import Settings

    s = Settings(_env_file=None)
    assert (s.ring_timeout_s, s.talk_timeout_s) == (600, 12 * 3600)


async def test_listener_killed_then_next_event_still_pops(harness):
    acc, tokens = await setup(harness)
    rep = await harness.connect(tokens["w0"])
    listener = harness.app[LISTENER]
    pid = listener.backend_pid
    assert pid is not None
    assert await harness.pool.fetchval("SELECT pg_terminate_backend($1)", pid)
    # posted while the listener may still be down: caught up by event id after the reconnect
    await harness.post(acc["url"], new_call("CALLKILL1"))
    assert (await rep.expect("call.ringing", timeout=10))["call_id"] == "CALLKILL1"
    await asyncio.wait_for(listener.connected.wait(), 10)
    assert listener.backend_pid != pid
    await harness.post(acc["url"], new_call("CALLKILL2"))
    assert (await rep.expect("call.ringing", timeout=10))["call_id"] == "CALLKILL2"


async def test_cached_lookup_costs_one_read_per_process(harness):
    acc, tokens = await setup(harness, users=("w0", "w1"))
    clients = [await harness.connect(tokens[u]) for u in ("w0", "w1")]
    await harness.post(acc["url"], new_call("CALLC1", users=("w0", "w1")))
    for c in clients:
        await c.expect("call.ringing", call_id="CALLC1")
    await harness.post(acc["url"], new_call("CALLC2", users=("w0", "w1")))
    for c in clients:
        await c.expect("call.ringing", call_id="CALLC2")
    async with harness.http.get(f"{harness.base}/metrics") as r:
        text = await r.text()
    assert 'hejcti_lookup_cache_total{result="miss"} 1.0' in text
    assert 'hejcti_lookup_cache_total{result="hit"} 1.0' in text
