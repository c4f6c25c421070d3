"""Two calls from one number at the same time, while the CRM is slow: one request, both pops resolved."""

from __future__ import annotations

import asyncio

from tests.e2e.test_crm_flow import creds, crm, hubspot_account  # noqa: F401  (crm is a fixture)
from tests.e2e.test_fanout import new_call


async def test_concurrent_calls_from_one_number_share_one_request(harness, crm):  # noqa: F811
    crm.delay = 0.5  # both calls arrive while the first lookup is still in flight: no cache to help yet
    acc, c = await hubspot_account(harness, crm, users=("w0", "w1"))
    for client in c.values():
        await creds(client)
    await asyncio.gather(harness.post(acc["url"], new_call("CSF1", users=("w0",))),
                         harness.post(acc["url"], new_call("CSF2", users=("w1",))))
    first = await c["w0"].expect("call.ringing", call_id="CSF1")
    second = await c["w1"].expect("call.ringing", call_id="CSF2")
    assert [x["id"] for x in first["contacts"]] == [x["id"] for x in second["contacts"]] == ["51"]
    assert crm.count("POST", "/contacts/search") == 1
