"""A call's note text stays on the server only until the record holding it is written (CONTRACT §6): the
call_records row, read after the write and after an appended note, holds none of it; a note typed during
the write stays alone until it is appended; a found earlier write takes away only what it holds; rows written
before this change lose their sent text when the schema is applied."""

from __future__ import annotations

import asyncio

import pytest

from hejcti import db
from tests.integration.test_records_durability import (
    FakeCrm,
    ended_calls,
    hang_up,
    job,
    make_ready,
    note,
    records,
    ring,
    seed,
)


async def ended_with_note(pool, crm: FakeCrm, call_id: str, text: str):  # type: ignore[no-untyped-def]
    """A call with a note typed during it, hung up, its record job due now; the Records that runs it."""
    await seed(pool)
    r = records(pool, crm)
    await ring(pool, call_id)
    assert await note(r, call_id, text) is True
    await hang_up(pool, call_id)
    await make_ready(pool)
    return r


async def kept(pool) -> str:  # type: ignore[no-untyped-def]
    """The whole call_records table as text: a note text anywhere in it is kept."""
    return await pool.fetchval("SELECT coalesce(string_agg(r::text, ' '), '') FROM call_records r")


async def test_no_note_text_after_the_write_nor_after_an_appended_note(pool):
    crm = FakeCrm()
    r = await ended_with_note(pool, crm, "P1", "Wants the premium plan")
    assert "premium" in await kept(pool)  # until the record is written
    assert await r.once() == 1
    assert "premium" in crm.bodies["R1"]
    assert "premium" not in await kept(pool)
    assert await note(r, "P1", "Budget approved") is True
    assert "Budget" in await kept(pool)
    assert await r.once() == 1
    assert crm.appended == ["Budget approved"]
    assert "Budget" not in await kept(pool)
    row = await job(pool)
    assert row["note"] is None and row["note_pending"] is False and row["state"] == "done"
    assert await r.once() == 0  # nothing left to append


async def test_a_note_typed_during_the_write_is_all_that_stays(pool):
    crm = FakeCrm()
    r = await ended_with_note(pool, crm, "P2", "EARLY words")
    crm.gate = asyncio.Event()
    round_ = asyncio.create_task(r.once())
    await crm.entered.wait()
    await note(r, "P2", "MID words")
    crm.gate.set()
    await round_
    row = await job(pool)
    assert row["note"] == "MID words" and row["note_pending"] is True  # EARLY is in the CRM, not here
    assert await r.once() == 1
    assert crm.appended == ["MID words"] and "words" not in await kept(pool)


async def test_a_found_earlier_write_takes_away_only_what_it_holds(pool):
    crm = FakeCrm()
    crm.lose.add("P3")
    r = await ended_with_note(pool, crm, "P3", "held by the lost write")
    await r.once()
    await note(r, "P3", "typed after it")
    await pool.execute("UPDATE call_records SET run_after = now()")
    assert await r.once() == 1
    row = await job(pool)
    assert row["state"] == "done" and row["note"] == "typed after it"
    assert await r.once() == 1
    assert crm.appended == ["typed after it"] and "typed" not in await kept(pool)


async def test_a_retried_create_carries_the_first_head_only(pool):
    """The first create carried the note as it was; the retry (its answer lost, nothing found) sends the same,
    and what came meanwhile is appended alone."""
    crm = FakeCrm()
    crm.lose.add("P4")
    crm.refuse_find = True
    r = await ended_with_note(pool, crm, "P4", "one")
    await r.once()
    assert (await job(pool))["note_head"] == len("one")
    await note(r, "P4", "two")
    await pool.execute("UPDATE call_records SET run_after = now()")
    await r.once()
    assert [c.note for c in crm.created] == ["one", "one"]
    assert await r.once() == 1
    assert crm.appended == ["two"]


@pytest.mark.parametrize("note_text, sent, rest", [
    ("abc", 3, None), ("abc\ndef", 3, "def"), ("abc\ndef", 0, "abc\ndef"), (None, 0, None), ("\nx", 0, "\nx"),
    ("abc", 5, None),
])
async def test_note_rest(pool, note_text, sent, rest):
    assert await pool.fetchval("SELECT hejcti_note_rest($1, $2)", note_text, sent) == rest


async def test_notes_written_before_are_erased_when_the_schema_is_applied(pool):
    await seed(pool)
    await ended_calls(pool, "OLD1", "OLD2", "OLD3")
    # as the previous version left them: `note` whole, `note_sent` how much of it the CRM has
    await pool.execute("UPDATE call_records SET state = 'done', note = 'all of it', note_sent = 9 "
                       "WHERE record_key = 'OLD1'")
    await pool.execute("UPDATE call_records SET state = 'done', note = 'sent\nnot yet', note_sent = 4, "
                       "note_pending = true WHERE record_key = 'OLD2'")
    await pool.execute("UPDATE call_records SET note = 'not written' WHERE record_key = 'OLD3'")
    await pool.execute("ALTER TABLE call_records DROP COLUMN note_head")
    await pool.execute(db.schema_sql())
    notes = dict(await pool.fetch("SELECT record_key, note FROM call_records"))
    assert notes == {"OLD1": None, "OLD2": "not yet", "OLD3": "not written"}
    await pool.execute("UPDATE call_records SET note = 'again', note_sent = 5 WHERE record_key = 'OLD1'")
    await pool.execute(db.schema_sql())  # once only: applying it again changes nothing
    assert await pool.fetchval("SELECT note FROM call_records WHERE record_key = 'OLD1'") == "again"
