"""Shared test set-up. Database fixtures live in tests/db.py and are loaded as a plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import aioresponses_shim

aioresponses_shim.install()

pytest_plugins = ["tests.db"]

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
async def make_harness(database_url, tmp_path):
    """Start the real app (on a free port) with settings overridden as a test needs; stopped afterwards."""
    from tests.harness import Harness, make_settings

    started = []

    async def make(role="all", **overrides):
        h = Harness(make_settings(database_url, tmp_path / f"h{len(started)}", **overrides), database_url, role)
        await h.start()
        started.append(h)
        return h

    yield make
    for h in reversed(started):
        await h.stop()


@pytest.fixture
async def harness(make_harness):
    return await make_harness()


@pytest.fixture
async def sipgate_fake():
    """The fake sipgate API (tests/fakes/sipgate.py) on a free port; ``sipgate_fake.api_url`` and ``.state``."""
    from tests.fakes.sipgate import FakeSipgate

    async with FakeSipgate().running() as f:
        yield f


def sipgate_fixture(name: str) -> bytes:
    return (FIXTURES / "sipgate" / name).read_bytes()
