"""Ring-to-pop for the portal's calls page: the fan-out notes each call's first pop (milliseconds since the
newCall's receipt, and whether it found the caller) and writes them in one batch; a resumed session's replay
is no pop, and a batch the database refused is kept for the next write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hejcti.errors import DatabaseUnavailableError
from hejcti.models import Event, iso
from hejcti.sessions import REPLAYING
from tests.unit.fanout_kit import fanout_with_sessions
from tests.unit.test_fanout_ranking import Accounts, CachedLookups


def ringing(call_id: str, ago_ms: int) -> Event:
    at = iso(datetime.now(UTC) - timedelta(milliseconds=ago_ms))
    return Event(id=1, account_id="acc_1", call_id=call_id, event="newCall", at=at or "",
                 data={"direction": "in", "number": "+4915791234567", "users": ["w0"]})


async def test_the_first_pop_of_each_call_is_written_once_in_a_batch():
    fanout, _ = fanout_with_sessions(Accounts(), lookups=CachedLookups())
    await fanout.handle(ringing("C1", 250))
    await fanout.handle(ringing("C1", 900))  # a repeat of the same call: the first pop stands
    await fanout.handle(ringing("C2", 40))
    await fanout._write_pops()
    await fanout._write_pops()  # nothing new: no second write
    assert len(fanout.store.written) == 1
    accounts, calls, ms, resolved = fanout.store.written[0]
    assert accounts == ["acc_1", "acc_1"] and calls == ["C1", "C2"] and resolved == [True, True]
    assert 250 <= ms[0] < 250 + 5000 and 40 <= ms[1] < ms[0]


async def test_a_replay_is_no_pop_and_a_refused_batch_waits_for_the_next_write():
    fanout, (session,) = fanout_with_sessions(Accounts(), lookups=CachedLookups())
    mark = REPLAYING.set(session)
    try:
        await fanout.handle(ringing("OLD", 60_000))
    finally:
        REPLAYING.reset(mark)
    await fanout.handle(ringing("C3", 10))

    async def down(*_args: object) -> None:
        raise DatabaseUnavailableError("down")

    write, fanout.store.execute = fanout.store.execute, down
    with pytest.raises(DatabaseUnavailableError):
        await fanout._write_pops()
    fanout.store.execute = write
    await fanout._write_pops()
    assert [w[1] for w in fanout.store.written] == [["C3"]]
