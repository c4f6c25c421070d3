"""The shared request helper's retry policy depends on idempotency: reads and updates are retried on any
transient error, a create only when the CRM provably did not act on it (so it is never sent twice)."""

from __future__ import annotations

import aiohttp
import pytest
from aioresponses import aioresponses
from multidict import CIMultiDict

from hejcti.crm.base import (
    Credentials,
    CrmAdapter,
    CrmRateLimitError,
    CrmTimeoutError,
    CrmTransientError,
    is_idempotent,
    retry_after_seconds,
)

URL = "https://crm.example/api/records"
CREDS = Credentials("tok")


class Plain(CrmAdapter):
    kind = "plain"


@pytest.fixture
async def adapter():
    async with aiohttp.ClientSession() as http:
        yield Plain(instance="https://crm.example", region="DE", http=http, budget=30)


@pytest.fixture
def mocked():
    with aioresponses() as m:
        yield m


def count(m, url: str = URL) -> int:
    return sum(len(v) for (_method, u), v in m.requests.items() if str(u).split("?")[0] == url)


def refused() -> aiohttp.ClientConnectorError:
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("crm.example", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.parametrize("answer", [
    {"exception": TimeoutError()},  # read timeout: the CRM may have created it
    {"exception": aiohttp.ServerDisconnectedError()},  # dropped after sending
    {"status": 500, "body": "oops"},
    {"status": 502, "body": "<html>bad gateway</html>"},
    {"status": 503, "body": "no Retry-After"},
])
async def test_create_is_not_repeated_when_it_may_have_been_applied(adapter, mocked, answer):
    mocked.post(URL, **answer)
    mocked.post(URL, status=201, payload={"id": "twice"})
    with pytest.raises(CrmTransientError) as e:
        await adapter.request("POST", URL, creds=CREDS, json={"a": 1})
    assert e.value.maybe_applied is True
    assert count(mocked) == 1


@pytest.mark.parametrize("answer", [
    {"status": 429, "body": "slow down", "headers": {"Retry-After": "0"}},
    {"status": 429, "body": "slow down"},
    {"status": 503, "body": "maintenance", "headers": {"Retry-After": "0"}},
    {"exception": aiohttp.ConnectionTimeoutError()},
    {"exception": refused()},
])
async def test_create_is_retried_when_the_crm_did_not_act(adapter, mocked, answer):
    mocked.post(URL, **answer)
    mocked.post(URL, status=201, payload={"id": "once"})
    adapter.budget = 5
    assert await adapter.request("POST", URL, creds=CREDS, json={"a": 1}) == {"id": "once"}
    assert count(mocked) == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("answer", [{"exception": TimeoutError()}, {"exception": aiohttp.ServerDisconnectedError()},
                                    {"status": 500, "body": "oops"}])
async def test_idempotent_methods_keep_retrying(adapter, mocked, method, answer):
    mocked.add(URL, method, **answer)
    mocked.add(URL, method, status=200, payload={"ok": 1})
    assert await adapter.request(method, URL, creds=CREDS) == {"ok": 1}
    assert count(mocked) == 2


async def test_a_post_that_only_reads_is_retried(adapter, mocked):
    search = "https://crm.example/crm/v3/objects/contacts/search"
    mocked.post(search, status=502, body="bad gateway")
    mocked.post(search, payload={"results": []})
    assert await adapter.request("POST", search, creds=CREDS, json={}) == {"results": []}
    assert count(mocked, search) == 2


async def test_explicit_idempotent_flag_wins(adapter, mocked):
    mocked.post(URL, status=500, body="oops")
    mocked.post(URL, payload={"ok": 1})
    assert await adapter.request("POST", URL, creds=CREDS, idempotent=True) == {"ok": 1}


def test_is_idempotent():
    assert is_idempotent("get", URL) and is_idempotent("PATCH", URL)
    assert not is_idempotent("POST", URL)
    assert is_idempotent("POST", "https://x/rest/v11/Contacts/filter")


def test_zendesk_ratelimit_reset_header():
    """The window's reset counts on a rate limit only: Zendesk and Pipedrive send it with every answer."""
    assert retry_after_seconds(CIMultiDict({"ratelimit-reset": "20"}), rate_limited=True) == 20.0
    assert retry_after_seconds(CIMultiDict({"ratelimit-reset": "20"})) is None
    assert retry_after_seconds(CIMultiDict({"X-RateLimit-Reset": "7"})) is None
    assert retry_after_seconds(CIMultiDict({"Retry-After": "3", "ratelimit-reset": "20"})) == 3.0
    assert retry_after_seconds(CIMultiDict({"Retry-After": "3", "ratelimit-reset": "20"}), rate_limited=True) == 3.0
    assert retry_after_seconds(CIMultiDict({"X-RateLimit-Reset": "7", "ratelimit-reset": "20"}),
                               rate_limited=True) == 7.0
    assert retry_after_seconds(CIMultiDict({}), rate_limited=True) is None


async def test_zendesk_style_429_waits_for_ratelimit_reset(adapter, mocked):
    mocked.get(URL, status=429, body="Number of allowed API requests per minute exceeded",
               headers={"ratelimit-reset": "0"})
    mocked.get(URL, payload={"ok": 1})
    assert await adapter.request("GET", URL, creds=CREDS) == {"ok": 1}
    mocked.get(URL, status=429, body="x", headers={"ratelimit-reset": "20"})
    with pytest.raises(CrmRateLimitError) as e:  # 20 s do not fit the budget of 1 s: fail now, with the hint
        await adapter.request("GET", URL, creds=CREDS, budget=1)
    assert e.value.retry_after == 20.0


async def test_timeout_kinds(adapter, mocked):
    mocked.get(URL, exception=aiohttp.ConnectionTimeoutError())
    adapter.max_attempts = 1
    with pytest.raises(CrmTimeoutError) as e:
        await adapter.request("GET", URL, creds=CREDS)
    assert e.value.maybe_applied is False
