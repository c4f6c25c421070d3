"""What the webhook answers when PostgreSQL refuses a push for its data (issue 8 point 4, CONTRACT §4): 400 for
that push alone, never 503; the pushes beside it are stored. The parser normally refuses such fields first; here
it is made to let one through, so that the ingest's own answer is what is seen."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.e2e.test_fanout import new_call
from webhooks import sipgate


async def test_a_push_the_database_refuses_answers_400_and_the_others_200(harness, monkeypatch):
    parse = sipgate.parse

    def let_through(body: bytes) -> sipgate.Push:
        push = parse(body)
        return replace(push, data={**push.data, "xcid": "x\x00"}) if push.call_id == "CPOISON" else push

    monkeypatch.setattr(sipgate, "parse", let_through)
    acc = await harness.account()
    calls = [f"CGOOD{i:03d}" for i in range(12)]
    calls.insert(6, "CPOISON")
    answers = await asyncio.gather(*(harness.post(acc["url"], new_call(c)) for c in calls))
    by_call = dict(zip(calls, answers, strict=True))
    status, text = by_call.pop("CPOISON")
    assert status == 400 and text.count("\n") == 1 and "cannot be stored" in text
    assert {s for s, _ in by_call.values()} == {200}
    stored = await harness.pool.fetch("SELECT call_id FROM call_events ORDER BY call_id")
    assert [r["call_id"] for r in stored] == sorted(by_call)
