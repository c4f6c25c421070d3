"""What sets the pause before a retry: ``Retry-After`` always; the rate-limit window headers
(``ratelimit-reset``, ``X-RateLimit-Reset``: Zendesk and Pipedrive send them with every answer) only on a 429.
A 500 that carries them is retried after the backoff, not after the window's 20 s."""

from __future__ import annotations

import time

import aiohttp
import pytest
from aioresponses import aioresponses

from hejcti.crm import adapter_class
from hejcti.crm.base import Credentials, CrmAdapter, CrmRateLimitError, CrmTransientError

URL = "https://crm.example/api/records"
CREDS = Credentials("tok")
#: as Zendesk sends them on every answer (the zenpy cassette's values), and Pipedrive's own name for the reset
WINDOW = {"X-Rate-Limit": "700", "ratelimit-limit": "700", "ratelimit-remaining": "697", "ratelimit-reset": "20",
          "X-RateLimit-Reset": "20"}


class Plain(CrmAdapter):
    kind = "plain"


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def mocked():
    with aioresponses() as m:
        yield m


async def test_a_500_with_window_headers_is_retried_after_the_backoff(http, mocked):
    adapter = Plain(instance="https://crm.example", region="DE", http=http, budget=1)
    mocked.get(URL, status=500, body="oops", headers=WINDOW)
    mocked.get(URL, payload={"ok": 1}, headers=WINDOW)
    assert await adapter.request("GET", URL, creds=CREDS) == {"ok": 1}  # 20 s would not fit the budget of 1 s


async def test_a_500_with_window_headers_gives_the_job_no_hint(http, mocked):
    adapter = Plain(instance="https://crm.example", region="DE", http=http, budget=1)
    adapter.max_attempts = 1
    mocked.post(URL, status=500, body="oops", headers=WINDOW)
    with pytest.raises(CrmTransientError) as e:
        await adapter.request("POST", URL, creds=CREDS, json={})
    assert e.value.retry_after is None  # the job waits its own backoff


async def test_a_503_with_retry_after_still_counts(http, mocked):
    adapter = Plain(instance="https://crm.example", region="DE", http=http, budget=1)
    mocked.get(URL, status=503, body="maintenance", headers={**WINDOW, "Retry-After": "30"})
    with pytest.raises(CrmTransientError) as e:
        await adapter.request("GET", URL, creds=CREDS)
    assert e.value.retry_after == 30.0


@pytest.mark.parametrize("reset", ["ratelimit-reset", "X-RateLimit-Reset"])
async def test_a_429_with_window_headers_waits_for_the_window(http, mocked, reset):
    adapter = Plain(instance="https://crm.example", region="DE", http=http, budget=1)
    mocked.get(URL, status=429, body="slow down", headers={reset: "20"})
    with pytest.raises(CrmRateLimitError) as e:
        await adapter.request("GET", URL, creds=CREDS)
    assert e.value.retry_after == 20.0


async def test_a_reset_given_as_a_time_is_read_as_the_time_left(http, mocked):
    adapter = Plain(instance="https://crm.example", region="DE", http=http, budget=1)
    mocked.get(URL, status=429, body="slow down", headers={"X-RateLimit-Reset": str(int(time.time()) + 5)})
    with pytest.raises(CrmRateLimitError) as e:
        await adapter.request("GET", URL, creds=CREDS)
    assert e.value.retry_after is not None and 0 < e.value.retry_after <= 6


async def test_zendesk_500_then_answer_within_the_lookup_budget(http, mocked):
    adapter = adapter_class("zendesk")(instance="acme", region="DE", http=http, budget=1)
    search = "https://acme.zendesk.com/api/v2/search.json?query=type:user+phone:*15791234567"
    mocked.get(search, status=500, body="oops", headers=WINDOW)
    mocked.get(search, payload={"results": [], "facets": None, "next_page": None, "previous_page": None,
                                "count": 0}, headers=WINDOW)
    assert await adapter.lookup("+4915791234567", CREDS) == []


async def test_zendesk_429_with_retry_after_and_window(http, mocked):
    adapter = adapter_class("zendesk")(instance="acme", region="DE", http=http, budget=1)
    search = "https://acme.zendesk.com/api/v2/search.json?query=type:user+phone:*15791234567"
    mocked.get(search, status=429, body="Number of allowed API requests per minute exceeded",
               headers={**WINDOW, "Retry-After": "7"})
    with pytest.raises(CrmRateLimitError) as e:
        await adapter.lookup("+4915791234567", CREDS)
    assert e.value.retry_after == 7.0  # Retry-After first
