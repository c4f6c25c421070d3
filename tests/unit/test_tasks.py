"""A background loop must stop when it is stopped, whatever it was doing at that moment: a stop that is lost
leaves SIGTERM waiting for ever."""

from __future__ import annotations

import asyncio

import pytest

from hejcti.tasks import Periodic, cancel_and_wait


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


async def test_a_stop_that_is_itself_cut_short_says_so():
    async def slow_to_stop():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # a clean-up that takes its time
            raise

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):  # was swallowed: the caller went on as if the task had stopped
        async with asyncio.timeout(0.05):
            await cancel_and_wait(task)
    assert task.done()  # the second cancel, from the timeout, reached the task's clean-up
