"""A Zendesk call record through the whole product when the create's answer is lost: Zendesk (the fake, with
its idempotency rules) makes the ticket and every answer to the create is lost, the agent types a note while
the job waits for its retry, and in the end there is one ticket, the note its own comment, the job done with no
note text left on the server, and call.logged at the session."""

from __future__ import annotations

import asyncio

from tests.e2e.test_fanout import hangup, new_call
from tests.fakes import zendesk as zd_fake
from tests.fakes.base import Running

AGENT = "9873843"


async def until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.1)


async def test_note_typed_while_the_create_is_retried_is_its_own_comment(harness):
    state = zd_fake.State()
    state.add_contact("35436", "Julia", "Schmidt", "+49 (0)157 9123 4567", company_id="57542", company="Acme GmbH")
    async with Running(zd_fake.make_app(state)) as base:
        acc = await harness.account(crm="zendesk", crm_instance=base)
        rep = await harness.connect(await harness.user(acc["account_id"], "w0", crm_user=AGENT))
        assert (await rep.request({"type": "crm.credentials", "access_token": "good-token", "id": 1}))["ok"]
        await harness.post(acc["url"], new_call("CZDLOST"))
        assert [c["id"] for c in (await rep.expect("call.ringing"))["contacts"]] == ["35436"]
        await harness.post(acc["url"], "event=answer&callId=CZDLOST&user=A&userId=w0&direction=in")
        state.lose_next_create(4, "500")  # the ticket is made; its answer, and every repeat's, lost
        await harness.post(acc["url"], hangup("CZDLOST"))
        pool = harness.pool

        async def first_attempt_failed() -> bool:
            return bool(await pool.fetchval("SELECT last_error IS NOT NULL FROM call_records"))

        await until(first_attempt_failed)
        assert len(state.tickets) == 1 and rep.of("call.logged") == []
        reply = await rep.request({"type": "call.note", "call_id": "CZDLOST", "text": "Send the offer by Friday.",
                                   "id": "n"})
        assert reply == {"type": "result", "ok": True, "id": "n"}
        await pool.execute("UPDATE call_records SET run_after = now()")  # not the backoff's seconds
        logged = await rep.expect("call.logged", timeout=15)

        async def note_appended() -> bool:
            return len(next(iter(state.tickets.values()))["comments"]) == 2

        await until(note_appended)
        (ticket_id, ticket), = state.tickets.items()
        assert logged["crm"] == "zendesk" and logged["record_id"] == str(ticket_id)
        assert ticket["requester_id"] == 35436 and ticket["assignee_id"] == int(AGENT)
        created, appended = ticket["comments"]
        assert "Send the offer" not in created["body"] and appended == {"body": "Send the offer by Friday.",
                                                                         "public": False}
        row = await pool.fetchrow("SELECT r.*, r::text AS whole FROM call_records r")
        assert row["state"] == "done" and row["crm_record_id"] == str(ticket_id) and row["note"] is None
        assert "offer" not in row["whole"]  # the note text is gone from the server
        assert len(rep.of("call.logged")) == 1
