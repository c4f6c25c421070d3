"""Zendesk tickets written once when an answer is lost, against the Zendesk fake (which keeps Zendesk's
idempotency rules) and a real PostgreSQL: a retry sends exactly the first body, a note typed meanwhile follows
as a comment of its own, the same key with another body (400 ``IdempotentRequestError``) is read as "created
already" and the ticket found by its external_id; the rate-limit window headers Zendesk sends on every answer
are no retry hint; a user on the organization's shared number ranks after one reached directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from hejcti.crm import adapter_class
from hejcti.crm.base import CallRecord, Credentials, CrmTransientError
from tests.fakes import zendesk as zd_fake
from tests.fakes.base import Running
from tests.integration.crm.test_zd_sugar_suite import CALLER, call
from tests.integration.test_records_durability import hang_up, job, make_ready, note, records, ring, seed

GOOD = Credentials("good-token")


class Zendesk:
    def __init__(self, state: zd_fake.State, adapter: Any) -> None:
        self.state, self.adapter = state, adapter

    def posts(self) -> list[Any]:
        return self.state.create_bodies

    def comments(self) -> list[str]:
        (ticket,) = self.state.tickets.values()
        return [c["body"] for c in ticket["comments"]]


@pytest.fixture
async def zd() -> AsyncIterator[Zendesk]:
    state = zd_fake.State()
    state.tokens.add("tok")  # the token of the record tests' sessions
    async with Running(zd_fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        yield Zendesk(state, adapter_class("zendesk")(instance=base, region="DE", http=http, budget=1.5))


async def first_attempt_lost(pool: Any, zd: Zendesk, call_id: str, early_note: str | None) -> Any:
    """A call whose record's first attempt creates the ticket and loses every answer (the request's own
    retries get the first answer again, lost too): the job is back, to be tried again."""
    await seed(pool)
    r = records(pool, zd.adapter)
    await ring(pool, call_id)
    if early_note is not None:
        assert await note(r, call_id, early_note) is True
    await hang_up(pool, call_id)
    await make_ready(pool)
    zd.state.lose_next_create(4, "500")
    assert await r.once() == 1
    assert len(zd.state.tickets) == 1 and len(zd.posts()) == 4
    row = await job(pool)
    assert row["state"] == "ready" and "500" in row["last_error"]
    return r


async def again(pool: Any, r: Any) -> None:
    await pool.execute("UPDATE call_records SET run_after = now()")
    assert await r.once() == 1


# ------------------------------------------------------------- 9.1 a note typed while a create is retried


async def test_a_retry_sends_the_first_body_and_the_note_typed_meanwhile_follows_alone(pool, zd):
    """The search for the earlier ticket is refused, so the create is sent again: with the first body (the
    note as it was then), which Zendesk answers with the first ticket; the later note is its own comment."""
    r = await first_attempt_lost(pool, zd, "ZD1", "Caller wants a quote.")
    assert await note(r, "ZD1", "Call back on Friday.") is True  # while the create waits for its retry
    zd.state.refuse_lists = 1
    with capture_logs() as logs:
        await again(pool, r)
    assert zd.state.count("GET", "/api/v2/tickets.json?external_id=hejcti-ZD1-in") == 1
    assert len(zd.posts()) == 5 and all(body == zd.posts()[0] for body in zd.posts())  # the same request
    assert not [e for e in logs if e["event"] == "call.record.failed"]
    row = await job(pool)
    assert row["state"] == "done" and row["note_pending"] is True
    assert r._hub.published[-1]["type"] == "call.logged"  # noqa: SLF001
    assert r._hub.published[-1]["record_id"] == row["crm_record_id"]  # noqa: SLF001
    await again(pool, r)
    (ticket_id,) = zd.state.tickets
    assert row["crm_record_id"] == str(ticket_id)
    created, appended = zd.comments()
    assert created.endswith("\n\nCaller wants a quote.") and "Friday" not in created
    assert appended == "Call back on Friday."
    row = await job(pool)
    assert row["state"] == "done" and row["note"] is None and row["note_pending"] is False


async def test_a_retry_finds_the_ticket_by_its_external_id(pool, zd):
    r = await first_attempt_lost(pool, zd, "ZD2", None)
    assert await note(r, "ZD2", "Sent the offer.") is True
    with capture_logs() as logs:
        await again(pool, r)
    assert len(zd.posts()) == 4  # found, not created again
    (found,) = [e for e in logs if e["event"] == "call.record.found"]
    await again(pool, r)  # the note, appended
    assert zd.comments()[1:] == ["Sent the offer."]
    row = await job(pool)
    assert row["crm_record_id"] == found["crm_record"] and row["note"] is None


async def test_a_retry_keeps_the_first_creates_requester(pool, zd):
    """The caller was added to Zendesk after the first create went out without a requester: the retry is
    built as the first create was (the job kept its contact and owner), so it is the same request, answered
    with the first ticket, not a 400 IdempotentRequestError."""
    r = await first_attempt_lost(pool, zd, "ZD6", "First words.")
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 30 12345678")
    zd.state.refuse_lists = 1  # the job's own search for the ticket first: refused, so it creates
    await again(pool, r)
    assert len(zd.posts()) == 5 and all(body == zd.posts()[0] for body in zd.posts())
    assert "requester_id" not in zd.posts()[-1] and len(zd.state.tickets) == 1
    assert zd.state.count("GET", "/api/v2/search.json") == 1  # the first attempt's lookup; none asked again
    row = await job(pool)
    assert row["state"] == "done" and row["crm_record_id"] == str(next(iter(zd.state.tickets)))


async def test_the_same_key_with_another_body_is_read_as_created(pool, zd):
    """The retry's body differs (a job from before its first create's contact was kept, and the caller was
    added to Zendesk meanwhile, so it now has a requester): Zendesk's 400 IdempotentRequestError means the key
    made a ticket already, which is taken, not failed."""
    r = await first_attempt_lost(pool, zd, "ZD3", "First words.")
    await pool.execute("UPDATE call_records SET data = data - 'first_create'")  # as an older version left it
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 30 12345678")
    assert await note(r, "ZD3", "Second words.") is True
    zd.state.refuse_lists = 1  # the job's own search for the ticket first: refused, so it creates
    with capture_logs() as logs:
        await again(pool, r)
    assert zd.posts()[-1]["requester_id"] == 35436 and len(zd.state.tickets) == 1
    assert not [e for e in logs if e["event"] == "call.record.failed"]
    row = await job(pool)
    assert row["state"] == "done" and row["note_pending"] is True
    await again(pool, r)
    assert zd.comments()[1:] == ["Second words."]  # the first words are in the ticket already: not twice
    assert "First words." in zd.comments()[0]


async def test_adapter_reads_idempotent_request_error_as_created(zd):
    record = replace(call("in", True, None, "9873843"), note="a")
    first = await zd.adapter.log_call(record, GOOD)
    again = await zd.adapter.log_call(replace(record, note="a\nb"), GOOD)  # same key, another body
    assert again.record_id == first.record_id and len(zd.state.tickets) == 1
    assert again.body is not None and again.body.endswith("\n\na")  # what the ticket holds
    assert zd.state.count("POST", "/api/v2/tickets.json") == 2


async def test_adapter_key_in_use_but_no_ticket_listed_is_retried_later(zd):
    record = call("in", True, None, None)
    await zd.adapter.log_call(record, GOOD)
    zd.state.tickets.clear()  # listed nowhere (an index that lags, a ticket deleted)
    with pytest.raises(CrmTransientError, match="not listed yet"):
        await zd.adapter.log_call(replace(record, note="x"), GOOD)


async def test_find_logged_takes_only_a_ticket_with_this_key(zd):
    record: CallRecord = call("in", True, None, None)
    assert await zd.adapter.find_logged(record, GOOD) is None
    logged = await zd.adapter.log_call(record, GOOD)
    await zd.adapter.log_call(replace(record, key="xc-other"), GOOD)
    found = await zd.adapter.find_logged(record, GOOD)
    assert found is not None and found.record_id == logged.record_id and found.url == logged.url
    assert "Talk time: 154 s." in (found.body or "")
    zd.state.unfiltered_lists = True  # a list that ignored the filter offers every ticket: only ours is taken
    assert (await zd.adapter.find_logged(record, GOOD)).record_id == logged.record_id
    assert await zd.adapter.find_logged(replace(record, key="xc-none"), GOOD) is None


# -------------------------------------------------------------- 9.4 rate-limit windows are not retry hints


async def test_a_500_with_the_window_headers_is_retried_at_once(zd):
    zd.state.add_contact("35436", "Julia", "Schmidt", "+49 157 91234567")
    zd.state.fail_next(2, 500)  # with ratelimit-reset: 20 and X-Rate-Limit: 700, as every Zendesk answer
    assert [c.id for c in await zd.adapter.lookup(CALLER, GOOD)] == ["35436"]  # within the 1.5 s budget
    assert zd.state.count("GET", "/api/v2/search.json") == 3


async def test_a_record_after_a_500_waits_the_backoff_not_the_window(pool, zd):
    await seed(pool)
    r = records(pool, zd.adapter)
    await ring(pool, "ZD5")
    await hang_up(pool, "ZD5")
    await make_ready(pool)
    zd.state.fail_next(8, 500)  # the job's lookup and its create each get four
    with capture_logs() as logs:
        assert await r.once() == 1
    (retry,) = [e for e in logs if e["event"] == "call.record.retry"]
    assert retry["in_s"] <= 6.0  # the first backoff (5 s ± 20 %), not ratelimit-reset's 20 s
    assert zd.state.count("POST", "/api/v2/tickets.json") == 4 and zd.state._fail == []  # noqa: SLF001


# ------------------------------------------------------------------------ 9.5 a shared number ranks after


async def test_a_user_on_the_shared_number_ranks_after_a_direct_one(zd):
    s = zd.state
    s.add_contact("501", "Acme", "Switchboard", "+49 157 91234567")
    s.users[-1].update(shared_phone_number=True, updated_at="2025-12-01T08:00:00Z")  # the newer one
    s.add_contact("502", "Julia", "Schmidt", "+49 157 91234567")
    s.users[-1]["updated_at"] = "2025-01-01T08:00:00Z"
    got = await zd.adapter.lookup(CALLER, GOOD)
    assert [c.id for c in got] == ["502", "501"]
    assert [c.shared_phone for c in got] == [False, True]


# --------------------------------------------------------------- the key is the call's end: key and direction


async def test_the_two_ends_of_one_call_get_a_ticket_each(zd):
    """Two Hej CTI accounts sharing one Zendesk both see a call between them under the same xcid, one
    inbound, one outbound: each end's ticket is its own (another external_id and Idempotency-Key), and the
    search for one end's ticket never finds the other's."""
    inbound = replace(call("in", True, None, None), key="xc-shared")
    outbound = replace(inbound, direction="out")
    assert await zd.adapter.find_logged(inbound, GOOD) is None
    first = await zd.adapter.log_call(inbound, GOOD)
    assert await zd.adapter.find_logged(outbound, GOOD) is None
    second = await zd.adapter.log_call(outbound, GOOD)
    assert second.record_id != first.record_id and len(zd.state.tickets) == 2
    assert {t["external_id"] for t in zd.state.tickets.values()} == {"hejcti-xc-shared-in", "hejcti-xc-shared-out"}
    assert set(zd.state.keyed) == {"hejcti-xc-shared-in", "hejcti-xc-shared-out"}
    assert (await zd.adapter.find_logged(inbound, GOOD)).record_id == first.record_id
    assert (await zd.adapter.find_logged(outbound, GOOD)).record_id == second.record_id
