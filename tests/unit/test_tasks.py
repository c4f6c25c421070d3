"""A background loop must stop when it is stopped, whatever it was doing at that moment: a stop that is lost
leaves SIGTERM waiting for ever."""

from __future__ import annotations

import asyncio

from hejcti.tasks import Periodic


class Counting(Periodic):
    name = "counting"

    def __init__(self) -> None:
        super().__init__(interval=3600)
        self.runs = 0

    async def once(self) -> None:
        self.runs += 1


async def test_a_loop_woken_in_the_same_pass_as_its_stop_still_stops():
    # the wake lets the loop's wait finish in the very pass that delivers the cancel: Python 3.11's
    # wait_for returned the wait's result there and dropped the cancel, so the loop ran once more and
    # waited again, and this stop with it, for ever
    p = Counting()
    p.start()
    await asyncio.sleep(0.01)
    assert p.runs == 1
    async with asyncio.timeout(2):
        p.wake()
        await p.stop()
    assert p._task is not None and p._task.cancelled()
    assert p.runs == 1

