"""Background-task helpers shared by the long-running parts (listener, reaper, records, session writers)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task and wait until it has finished; nothing if there is none. The task's own cancellation
    ends here; a cancel of the caller (a shutdown cut short, a timeout around the stop) goes on up."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class Periodic:
    """A background loop that runs ``once()`` every ``interval`` seconds, or sooner when woken. A database
    outage is logged as a warning; anything else is logged with its traceback. Either way the loop goes on:
    a process whose record or housekeeping loop has died looks healthy and silently stops working."""

    name = "periodic"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def wake(self) -> None:
        self._wake.set()

    async def once(self) -> Any:
        raise NotImplementedError

    async def _run(self) -> None:
        import asyncpg

        from hejcti import logs
        from hejcti.errors import DatabaseUnavailableError
        from hejcti.store import UNAVAILABLE

        log = logs.get(f"workers.{self.name}")
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except (*UNAVAILABLE, asyncpg.PostgresError, DatabaseUnavailableError) as e:
                log.warning(f"{self.name}.failed", error=type(e).__name__)
            except Exception:
                log.exception(f"{self.name}.crashed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
