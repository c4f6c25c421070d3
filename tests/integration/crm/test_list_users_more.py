"""The CRM's users for the portal's mapping (CONTRACT §9) beyond SugarCRM's: ``list_users`` of HubSpot (its
owners, paged), Pipedrive (its users), Zendesk (its agents and admins, paged), Salesforce (a SOQL query of User)
and SuiteCRM (V8's Users module) against the fakes, in the vendors' answer shapes; active users only,
a rejected token an auth error."""

from __future__ import annotations

import aiohttp
import pytest

from hejcti.crm.base import Credentials, CrmAuthError
from hejcti.crm.hubspot import Adapter as HubSpot
from hejcti.crm.pipedrive import Adapter as Pipedrive
from hejcti.crm.salesforce import Adapter as Salesforce
from hejcti.crm.suitecrm import Adapter as SuiteCRM
from hejcti.crm.zendesk import Adapter as Zendesk
from tests.fakes import hubspot, pipedrive, salesforce, suitecrm, zendesk
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


async def test_zendesk_lists_its_active_agents_and_admins_across_pages():
    state = zendesk.State()
    state.add_contact("9001", "Erika", "Muster", "+49 211 1234567")  # an end-user: not one to map
    for i in range(100):
        state.add_agent(8000 + i, f"Agent {i}", f"agent{i}@example.org")
    state.add_agent(7000, "Grace Hopper", "grace.hopper@example.org", role="admin")
    state.add_agent(7001, "Old Timer", "old@example.org", active=False)
    async with Running(zendesk.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = Zendesk(instance=base, region="DE", http=http)
        users = await adapter.list_users(GOOD)
        assert len(users) == 101 and users[0] == {"id": "8000", "name": "Agent 0", "email": "agent0@example.org"}
        assert users[-1] == {"id": "7000", "name": "Grace Hopper", "email": "grace.hopper@example.org"}
        state.expire_token()
        with pytest.raises(CrmAuthError):
            await adapter.list_users(GOOD)


async def test_salesforce_lists_its_active_users_by_name():
    state = salesforce.State()
    state.add_user("005Hp00000AbCdEf", "Grace Hopper", "grace.hopper@example.org")
    state.add_user("005Hp00000AbCdEg", "Old Timer", "old@example.org", active=False)
    state.add_user("005Hp00000AbCdEh", "Ada Lovelace", "")
    async with Running(salesforce.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = Salesforce(instance=base, region="DE", http=http)
        assert await adapter.list_users(GOOD) == [
            {"id": "005Hp00000AbCdEh", "name": "Ada Lovelace", "email": None},
            {"id": "005Hp00000AbCdEf", "name": "Grace Hopper", "email": "grace.hopper@example.org"}]
        state.expire_token()
        with pytest.raises(CrmAuthError):
            await adapter.list_users(GOOD)


async def test_suitecrm_lists_its_active_users():
    state = suitecrm.State()
    state.add_user("1b2c3d4e-0000-4000-8000-000000000001", "Grace", "Hopper", "grace.hopper@example.org")
    state.add_user("1b2c3d4e-0000-4000-8000-000000000002", "Old", "Timer", "old@example.org", status="Inactive")
    async with Running(suitecrm.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = SuiteCRM(instance=base, region="DE", http=http)
        assert await adapter.list_users(GOOD) == [
            {"id": "1b2c3d4e-0000-4000-8000-000000000001", "name": "Grace Hopper", "email": "grace.hopper@example.org"}]
        state.expire_token()
        with pytest.raises(CrmAuthError):
            await adapter.list_users(GOOD)
