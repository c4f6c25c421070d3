"""SugarCRM's users for the portal's mapping (CONTRACT §9): ``list_users`` against the fake, active users only,
a rejected token an auth error."""

from __future__ import annotations

import aiohttp
import pytest

from hejcti.crm.base import Credentials, CrmAuthError
from hejcti.crm.sugarcrm import Adapter
from tests.fakes import sugarcrm as fake
from tests.fakes.base import Running


def sugar_user(uid: str, first: str, last: str, email: str, status: str = "Active") -> dict[str, str]:
    return {"_module": "Users", "id": uid, "full_name": f"{first} {last}", "first_name": first, "last_name": last,
            "user_name": first.lower(), "email1": email, "status": status, "date_modified": "2025-10-30T16:41:12+00:00"}


async def test_list_users_names_the_active_users_with_their_email():
    state = fake.State()
    state.records += [sugar_user("su-1", "Grace", "Hopper", "grace.hopper@example.org"),
                      sugar_user("su-2", "Old", "Timer", "old@example.org", status="Inactive"),
                      {**sugar_user("su-3", "Ada", "Lovelace", ""), "email1": None}]
    async with Running(fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = Adapter(instance=base, region="DE", http=http)
        users = await adapter.list_users(Credentials(access_token="good-token"))
        assert users == [{"id": "su-1", "name": "Grace Hopper", "email": "grace.hopper@example.org"},
                         {"id": "su-3", "name": "Ada Lovelace", "email": None}]
        with pytest.raises(CrmAuthError):
            await adapter.list_users(Credentials(access_token="stale"))
