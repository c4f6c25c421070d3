"""The CRM's users for the portal's mapping (CONTRACT §9) beyond SugarCRM's: ``list_users`` of HubSpot (its
owners, paged) and Pipedrive (its users) against the fakes, in the vendors' answer shapes; active users only,
a rejected token an auth error."""

from __future__ import annotations

import aiohttp
import pytest

from hejcti.crm.base import Credentials, CrmAuthError
from hejcti.crm.hubspot import Adapter as HubSpot
from hejcti.crm.pipedrive import Adapter as Pipedrive
from tests.fakes import hubspot, pipedrive
from tests.fakes.base import Running

GOOD = Credentials(access_token="good-token")


async def test_hubspot_lists_its_active_owners_across_pages():
    state = hubspot.State()
    for i in range(501):  # two pages of 500
        state.add_owner(str(41629000 + i), "Owner", f"N{i}", f"owner{i}@example.org")
    state.add_owner("41630000", "Grace", "Hopper", "grace.hopper@example.org")
    state.add_owner("41630001", "Old", "Timer", "old@example.org", archived=True)
    async with Running(hubspot.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = HubSpot(instance=base, region="DE", http=http)
        users = await adapter.list_users(GOOD)
        assert len(users) == 502 and users[0] == {"id": "41629000", "name": "Owner N0", "email": "owner0@example.org"}
        assert users[-1] == {"id": "41630000", "name": "Grace Hopper", "email": "grace.hopper@example.org"}
        assert "41630001" not in {u["id"] for u in users}
        state.expire_token()
        with pytest.raises(CrmAuthError):
            await adapter.list_users(GOOD)


async def test_pipedrive_lists_its_active_users():
    state = pipedrive.State()
    state.add_user(pipedrive.ME, "Grace Hopper", "grace.hopper@example.org")
    state.add_user(1234568, "Old Timer", "old@example.org", active=False)
    state.add_user(1234569, "Ada Lovelace", "")
    async with Running(pipedrive.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = Pipedrive(instance=base, region="DE", http=http)
        assert await adapter.list_users(GOOD) == [
            {"id": str(pipedrive.ME), "name": "Grace Hopper", "email": "grace.hopper@example.org"},
            {"id": "1234569", "name": "Ada Lovelace", "email": None}]
        state.expire_token()
        with pytest.raises(CrmAuthError):
            await adapter.list_users(GOOD)
