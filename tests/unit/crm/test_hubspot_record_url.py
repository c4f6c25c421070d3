"""HubSpot call records: building the deep link after a successful create never fails the job (which would
create the call a second time on its retry)."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aioresponses import aioresponses

from hejcti.crm.base import CrmAuthError
from hejcti.crm.hubspot import Adapter
from tests.conftest import FIXTURES
from tests.unit.crm.test_hubspot import API, CREDS, DETAILS, record

CALLS = f"{API}/crm/v3/objects/calls"
EXPIRED = {"status": "error", "category": "EXPIRED_AUTHENTICATION", "message": "The OAuth token used to make this "
           "call expired 1 second(s) ago."}


def created() -> dict:
    return json.loads((FIXTURES / "crm" / "hubspot" / "call_log_created.json").read_text())


@pytest.fixture
async def adapter():
    async with aiohttp.ClientSession() as http:
        yield Adapter(instance=None, region="DE", http=http, budget=30)


def creates(m) -> int:
    return sum(len(v) for (method, u), v in m.requests.items() if method == "POST" and str(u) == CALLS)


async def test_expired_token_on_the_portal_lookup_does_not_create_twice(adapter):
    """The job's retry after an expired token (the session sends a new one) must not create a second call."""
    with aioresponses() as m:
        m.get(DETAILS, status=401, payload=EXPIRED)
        m.get(DETAILS, payload=json.loads((FIXTURES / "crm" / "hubspot" / "account_details.json").read_text()))
        m.post(CALLS, status=201, payload=created(), repeat=True)
        attempts = 0
        logged = None
        while logged is None and attempts < 3:  # what the record job does: ask for a token, try again
            attempts += 1
            try:
                logged = await adapter.log_call(record(), CREDS)
            except CrmAuthError:
                pass
        assert creates(m) == 1
        assert logged is not None and logged.url.endswith("/record/0-48/46203421009")


async def test_portal_failure_after_the_create_costs_only_the_link(adapter):
    adapter.max_attempts = 1
    with aioresponses() as m:
        m.get(DETAILS, status=502, body="bad gateway")  # before the create: no link yet, not cached
        m.post(CALLS, status=201, payload=created())
        m.get(DETAILS, status=401, payload=EXPIRED)  # after the create: the token expired meanwhile
        logged = await adapter.log_call(record(), CREDS)
        assert logged.record_id == "46203421009" and logged.url is None
        assert creates(m) == 1
