"""Pushed fields as the database sees them: what cannot be stored as sent is a 400 (never a 503), and
sipgate's `answeringNumber`, the user's own number, is stored nowhere (CONTRACT §4, §6)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.e2e.test_fanout import hangup, new_call
from tests.fakes.base import Running
from tests.fakes.hubspot import State, make_app

OWN = "4930999888777"  # the answering user's own number: in no table afterwards


TABLES = {t: f"SELECT row_to_json(x)::text AS t FROM {t} x" for t in ("call_events", "calls", "call_records")}  # noqa: S608


async def table_text(pool, table: str) -> str:
    return "\n".join(r["t"] for r in await pool.fetch(TABLES[table]))


@pytest.mark.parametrize("field, value, reason", [
    ("xcid", "x" * 20_000, "xcid is over 250 characters"),
    ("origCallId", "O" * 251, "origCallId is over 250 characters"),
    ("userId[]", "w" * 3_000, "userId[] is over 250 characters"),
    ("xcid", "a\u2028b", "xcid holds a character that is not printable"),
    ("from", "٤٩١٥٧٩١٢٣٤٥٦٧", "from holds digits other than ASCII 0-9"),
    ("to", "⁴⁹²¹¹¹²³⁴⁵⁶⁷", "to holds digits other than ASCII 0-9"),
])
async def test_a_field_that_cannot_be_stored_is_a_400_not_a_503(harness, field, value, reason):
    acc = await harness.account()
    form = {"event": "newCall", "direction": "in", "from": "4915791234567", "to": "492111234567",
            "callId": "CALLBAD", field: value}
    for _ in range(2):  # a retry gets the same answer: nothing was half-stored
        assert await harness.post(acc["url"], urlencode(form)) == (400, reason + "\n")
    assert await harness.post(acc["url"], new_call("CALLGOOD")) == (200, xml(acc["url"]))
    rows = await harness.pool.fetch("SELECT call_id FROM calls WHERE account_id = $1", acc["account_id"])
    assert [r["call_id"] for r in rows] == ["CALLGOOD"]


def xml(url: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="{url}" onHangup="{url}"/>'


async def test_answering_number_is_stored_nowhere(harness):
    async with Running(make_app(State())) as crm:  # an account that logs calls: the hangup makes a record job
        await answered_call(harness, await harness.account(crm="hubspot", crm_instance=crm))
    assert await harness.pool.fetchval("SELECT count(*) FROM call_events WHERE call_id = 'CALLOWN'") == 3
    assert await harness.pool.fetchval("SELECT count(*) FROM call_records WHERE 'CALLOWN' = ANY(call_ids)") == 1
    assert "492111234567" in await table_text(harness.pool, "call_events")  # `to`, the pop's and record's, stays
    for table in ("call_events", "calls", "call_records"):
        text = await table_text(harness.pool, table)
        assert OWN not in text and OWN[2:] not in text, table
        assert "answering" not in text.lower(), table


async def answered_call(harness, acc) -> None:
    await harness.user(acc["account_id"], "w0")
    answer = ("event=answer&direction=in&from=4915791234567&to=492111234567&user=User+w0&userId=w0"
              f"&fullUserId=1234567w0&callId=CALLOWN&origCallId=CALLOWN&answeringNumber={OWN}")
    for body in (new_call("CALLOWN"), answer, hangup("CALLOWN") + f"&answeringNumber={OWN}"):
        assert (await harness.post(acc["url"], body))[0] == 200
