"""Browser tests: Playwright (async API) driving the system's Chromium headless against the real server.

One browser for the whole run, in a thread of its own with its own event loop (a test's loop is its own, and a
Playwright connection belongs to the loop that opened it): ``ui(coro)`` runs a Playwright call there and awaits
it from the test. Each test gets a fresh context. Without Chromium (``/usr/bin/chromium``, ``chromium`` on the PATH, or
``HEJCTI_CHROMIUM``) they are skipped with one line saying how to run them; with ``HEJCTI_BROWSER_TESTS=require``
(CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
HOW = "browser tests need Chromium: apt-get install chromium (or set HEJCTI_CHROMIUM to its path)"


def chromium_path() -> str | None:
    given = os.environ.get("HEJCTI_CHROMIUM")
    if given:
        return given if os.path.exists(given) else None
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")


REQUIRED = os.environ.get("HEJCTI_BROWSER_TESTS") == "require"
MISSING = chromium_path() is None
# without Chromium (and not required) the browser tests are not collected, and the run ends with one line on it
collect_ignore_glob = ["test_*.py"] if MISSING and not REQUIRED else []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MISSING and not REQUIRED:
        terminalreporter.write_line(f"tests/browser skipped: {HOW}")


class Browser:
    """The run's one Chromium, in its own thread and loop."""

    def __init__(self, executable: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="playwright", daemon=True)
        self.thread.start()
        self.executable = executable
        self.playwright: Any = None
        self.browser: Any = None

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    async def __call__(self, coro: Awaitable[T]) -> T:
        async def run() -> T:
            return await coro

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def start(self) -> None:
        from playwright.async_api import async_playwright

        async def launch() -> None:
            self.playwright = await async_playwright().start()
            self.browser = await self.playwright.chromium.launch(executable_path=self.executable, headless=True,
                                                                 args=ARGS)

        self.call(launch())

    def stop(self) -> None:
        async def close() -> None:
            if self.browser is not None:
                await self.browser.close()
            if self.playwright is not None:
                await self.playwright.stop()

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="session")
def chromium() -> Any:
    executable = chromium_path()
    if executable is None:
        if REQUIRED:
            pytest.fail(f"HEJCTI_BROWSER_TESTS=require, but there is no Chromium: {HOW}")
        pytest.skip(HOW)
    browser = Browser(executable)
    browser.start()
    yield browser
    browser.stop()


@pytest.fixture
async def ui(chromium: Browser) -> Any:
    """The run's browser; ``await ui(page.click(...))`` runs a Playwright call in its loop."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield chromium
