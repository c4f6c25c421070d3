"""CRM calls never follow a redirect: an instance an admin set (checked against the server's own networks when
it was saved) that answers 307 to 169.254.169.254 or 10.x would otherwise have the server call there. A 3xx is a
permanent error naming it, and the redirect's target never hears from us."""

from __future__ import annotations

import aiohttp
import pytest

from hejcti.crm import adapter_class
from hejcti.crm.base import Credentials, CrmPermanentError
from tests.fakes import hubspot, pipedrive, salesforce
from tests.fakes.base import Running, redirector
from tests.integration.crm.test_sf_hs_pd import call

GOOD = Credentials(access_token="good-token")
FAKES = {"salesforce": salesforce, "hubspot": hubspot, "pipedrive": pipedrive}


@pytest.mark.parametrize("kind", list(FAKES))
@pytest.mark.parametrize("status", [307, 302])
async def test_a_redirect_is_a_permanent_error_and_its_target_gets_no_request(kind, status):
    state = FAKES[kind].State()  # the second host: a CRM that would answer, standing in for 169.254.169.254
    seen: list[str] = []
    async with Running(FAKES[kind].make_app(state)) as target, aiohttp.ClientSession() as http:
        async with Running(redirector(target, status, seen)) as base:
            adapter = adapter_class(kind)(instance=base, region="DE", http=http, budget=5)
            with pytest.raises(CrmPermanentError, match="the CRM answered with a redirect") as lookup:
                await adapter.lookup("+4921112345678", GOOD)
            assert lookup.value.status == status and f"HTTP {status}" in str(lookup.value)
            with pytest.raises(CrmPermanentError, match="the CRM answered with a redirect"):
                await adapter.log_call(call(None), GOOD)
            lister = getattr(adapter, "list_users", None)
            if lister is not None:
                with pytest.raises(CrmPermanentError, match="the CRM answered with a redirect"):
                    await lister(GOOD)
    assert seen, "the instance was asked"
    assert state.requests == [] and state.created == []
