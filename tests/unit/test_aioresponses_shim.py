"""Guards the aioresponses shim in tests/aioresponses_shim.py."""

import pytest
from aiohttp import ClientSession
from aioresponses import aioresponses

from tests import aioresponses_shim


async def test_shim_makes_aioresponses_work_on_this_aiohttp():
    with aioresponses() as mocked:
        mocked.get("http://crm.invalid/x", payload={"ok": True})
        async with ClientSession() as s, s.get("http://crm.invalid/x") as r:
            assert await r.json() == {"ok": True}


async def test_unshimmed_aioresponses_still_breaks(monkeypatch):
    """When this fails, aioresponses was fixed upstream: delete tests/aioresponses_shim.py and this test."""
    import aioresponses.core as core

    monkeypatch.setattr(core, "ClientResponse", aioresponses_shim.ORIGINAL)
    with aioresponses() as mocked:
        mocked.get("http://crm.invalid/x", payload={"ok": True})
        async with ClientSession() as s:
            with pytest.raises(TypeError, match="stream_writer"):
                await s.get("http://crm.invalid/x")
