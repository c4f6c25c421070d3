"""The fan-out when the account cannot be read (database down, account not cached): the pop still goes out."""

from __future__ import annotations

import asyncio
import json

from hejcti.errors import DatabaseUnavailableError
from hejcti.models import Event
from tests.unit.fanout_kit import fanout_with_sessions


class DownAccounts:
    async def get(self, account_id: str):
        raise DatabaseUnavailableError("connection refused")


async def test_a_ring_pops_unresolved_when_the_account_cannot_be_read():
    fanout, (s,) = fanout_with_sessions(DownAccounts())
    ev = Event(id=5, account_id="acc_1", call_id="C1", event="newCall", at="2026-12-02T01:00:00Z",
               data={"direction": "in", "number": "+4915791234567", "users": ["w0"], "anonymous": False})
    await fanout.handle(ev)
    pop = json.loads(s._queue[0])
    assert pop["type"] == "call.ringing" and pop["seq"] == 5 and pop["resolved"] is False
    assert pop["number"] == "+4915791234567" and pop["display"] == "+49 1579 1234567" and pop["contacts"] == []


class SlowAccounts:
    """The account's settings come from the database the first time: the newCall's worker awaits them."""

    async def get(self, account_id: str):
        from hejcti.lookup import Account

        await asyncio.sleep(0.05)
        return Account(id=account_id, crm_kind="directory", crm_instance=None, region="DE", log_calls=False)


async def test_a_calls_events_go_out_in_order_while_its_ringing_waits_for_the_account():
    fanout, (s,) = fanout_with_sessions(SlowAccounts(), workers=3)
    fanout.start()
    base = {"direction": "in", "number": None, "anonymous": True, "users": ["w0"]}
    for seq, event, extra in ((1, "newCall", {}), (2, "answer", {"by": "w0"}), (3, "hangup", {"cause": "normalClearing"})):
        fanout.submit(Event(id=seq, account_id="acc_1", call_id="C1", event=event, at="2026-12-02T01:00:00Z",
                            data={**base, **extra}))
    for _ in range(100):
        if s.pending == 3:
            break
        await asyncio.sleep(0.01)
    await fanout.drain(1.0)
    assert [json.loads(f)["type"] for f in s._queue] == ["call.ringing", "call.answered", "call.ended"]
