"""Every CRM adapter against a fake of its CRM on a real local server, answering in the vendor's shapes:
hit, miss, several matches, odd formats, expiry and renewal, 429 with and without Retry-After, 5xx, a slow
CRM, malformed JSON, permanent errors, call record created, note appended."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest

from hejcti.crm import adapter_class
from hejcti.crm.base import (
    CallRecord,
    Credentials,
    CrmAuthError,
    CrmCredentialsMissingError,
    CrmPermanentError,
    CrmTimeoutError,
)
from tests.crm_specs import SPECS, Spec
from tests.fakes.base import Running

CALLER = "+4915791234567"
GOOD = Credentials("good-token")


@pytest.fixture(params=SPECS, ids=[s.kind for s in SPECS])
async def crm(request):
    spec: Spec = request.param
    state = spec.fake.State()
    state.add_contact(spec.ids[0], "Julia", "Schmidt", spec.stored, owner=spec.owner, company_id=spec.company_id,
                      company="Acme GmbH")
    state.add_contact(spec.ids[2], "Other", "Person", "+44 20 7946 0991")
    async with Running(spec.fake.make_app(state)) as base, aiohttp.ClientSession() as http:
        adapter = adapter_class(spec.kind)(instance=base, region="DE", http=http, budget=30)
        yield spec, state, adapter


async def test_hit(crm):
    spec, state, adapter = crm
    (c,) = await adapter.lookup(CALLER, GOOD)
    assert (c.crm, c.kind, c.id, c.name) == (spec.kind, spec.contact_kind, spec.ids[0], "Julia Schmidt")
    assert c.url and spec.url_part in c.url
    assert c.match == "exact"
    assert c.company == "Acme GmbH"  # Zendesk: the name of the user's organization (show_many)


async def test_miss(crm):
    _, _, adapter = crm
    assert await adapter.lookup("+4930555123456", GOOD) == []


async def test_several_matches_the_users_own_first(crm):
    spec, state, adapter = crm
    state.add_contact(spec.ids[1], "Max", "Mustermann", spec.stored, owner=spec.owner + "0")
    if spec.kind == "zendesk":  # end users belong to no agent: two matches, both verified
        assert sorted(c.id for c in await adapter.lookup(CALLER, GOOD)) == sorted(spec.ids[:2])
        return
    both = await adapter.lookup(CALLER, GOOD, crm_user=spec.owner + "0")
    assert [c.id for c in both] == [spec.ids[1], spec.ids[0]]
    assert [c.id for c in await adapter.lookup(CALLER, GOOD, crm_user=spec.owner)][0] == spec.ids[0]


async def test_expired_token_then_renewed(crm):
    _, state, adapter = crm
    with pytest.raises(CrmAuthError):
        await adapter.lookup(CALLER, Credentials("stale-token"))
    state.tokens.add("fresh-token")
    assert len(await adapter.lookup(CALLER, Credentials("fresh-token"))) == 1


@pytest.mark.parametrize("retry_after", [0, None])
async def test_rate_limit_is_retried(crm, retry_after):
    spec, state, adapter = crm
    if spec.kind == "salesforce":  # 403 REQUEST_LIMIT_EXCEEDED is not retried within a lookup: test_sf_hs_pd.py
        pytest.skip("Salesforce's daily API limit does not recover in seconds (reference §0.3)")
    state.rate_limit_next(1, retry_after=retry_after)
    assert len(await adapter.lookup(CALLER, GOOD)) == 1


async def test_5xx_then_success(crm):
    _, state, adapter = crm
    state.fail_next(2, 502)
    assert len(await adapter.lookup(CALLER, GOOD)) == 1


async def test_slow_crm_times_out(crm):
    _, state, adapter = crm
    state.delay = 2.0
    adapter.request_timeout = 0.2
    adapter.budget = 0.1
    with pytest.raises(CrmTimeoutError):
        await adapter.lookup(CALLER, GOOD)


async def test_malformed_json_is_not_retried(crm):
    _, state, adapter = crm
    await adapter.lookup(CALLER, GOOD)
    state.malformed_next(10)
    before = len(state.requests)
    with pytest.raises(CrmPermanentError):
        await adapter.lookup(CALLER, GOOD)
    assert state._malformed >= 10 - (len(state.requests) - before)  # one bad answer per request, none retried
    assert len(state.requests) - before <= 3  # the searches the adapter makes in parallel, once each


async def test_permanent_error_is_not_retried(crm):
    _, state, adapter = crm
    await adapter.lookup(CALLER, GOOD)  # warms what adapters cache (HubSpot's portal, Pipedrive's domain)
    state.fail_next(1, 404)
    before = len(state.requests)
    with pytest.raises(CrmPermanentError):
        await adapter.lookup(CALLER, GOOD)
    state._fail.clear()
    assert len(state.requests) - before <= 3


async def test_missing_credentials(crm):
    _, _, adapter = crm
    with pytest.raises(CrmCredentialsMissingError):
        await adapter.lookup(CALLER, None)


async def test_record_created_and_note_appended(crm):
    spec, state, adapter = crm
    (contact,) = await adapter.lookup(CALLER, GOOD)
    record = CallRecord(key="xc1", call_id="C1", direction="in", number=CALLER, own_number="+492111234567",
                        answered=True, voicemail=False, cause="normalClearing",
                        started_at=datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC),
                        ended_at=datetime(2025, 11, 24, 14, 5, 45, tzinfo=UTC), duration_s=154, contact=contact,
                        owner=spec.owner, sipgate_user="w0", note="First note")
    logged = await adapter.log_call(record, GOOD)
    (created,) = state.created
    assert str(created["id"]) == logged.record_id
    assert spec.owner_of(created) == spec.owner and spec.contact_of(created) == spec.ids[0]
    assert "First note" in spec.body_of(state, logged.record_id)
    assert "154" in spec.body_of(state, logged.record_id) or spec.kind in ("pipedrive", "salesforce", "hubspot")
    await adapter.append_note(logged.record_id, "Second note", GOOD)
    assert "Second note" in spec.body_of(state, logged.record_id)


async def test_missed_call_record_without_contact(crm):
    spec, state, adapter = crm
    record = CallRecord(key="xc2", call_id="C2", direction="in", number=None, own_number="+492111234567",
                        answered=False, voicemail=False, cause="cancel",
                        started_at=datetime(2025, 11, 24, 14, 3, 11, tzinfo=UTC),
                        ended_at=datetime(2025, 11, 24, 14, 3, 30, tzinfo=UTC), duration_s=None, contact=None,
                        owner=None, sipgate_user="w0")
    logged = await adapter.log_call(record, GOOD)
    assert logged.record_id and len(state.created) == 1
    assert "anonymous" in spec.body_of(state, logged.record_id).lower() or spec.kind != "zendesk"
