"""The fan-out's writer of ring-to-pop times outlives an unexpected error: it logs it and writes the next batch."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from tests.unit.fanout_kit import fanout_with_sessions


class Flaky:
    """A store whose first write fails with an error nobody expected."""

    def __init__(self) -> None:
        self.written: list[tuple[Any, ...]] = []
        self.calls = 0

    async def execute(self, name: str, *args: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        self.written.append(args)


async def test_the_pop_writer_carries_on_after_an_unexpected_error():
    fanout, _ = fanout_with_sessions(accounts=None)
    fanout.store = store = Flaky()  # type: ignore[assignment]
    fanout.pop_flush_s = 0.01
    fanout._popped[("acc_1", "CALL1")] = (120, True)
    with capture_logs() as logs:
        task = asyncio.create_task(fanout._flush_pops())
        for _ in range(200):
            if store.calls >= 1 and not fanout._popped:
                break
            await asyncio.sleep(0.01)
        fanout._popped[("acc_1", "CALL2")] = (80, False)  # the next batch after the failure
        for _ in range(200):
            if store.written:
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert store.written == [(["acc_1"], ["CALL2"], [80], [False])]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["pop.times_failed"]
