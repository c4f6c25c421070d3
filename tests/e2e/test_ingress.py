"""POST /webhooks/sipgate/{token} as sipgate and an attacker see it (CONTRACT §4)."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import sipgate_fixture
from tests.db import with_database
from tests.e2e.test_fanout import new_call

EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SIGNED = sipgate_fixture("newCall_in_signed_real.txt")
SIGNATURE = sipgate_fixture("newCall_in_signed_real.signature").decode()
TAMPERED = SIGNED.replace(b"491776249000", b"491776249001")


async def post_full(h, url, body, headers=None):
    async with h.http.post(url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                    **(headers or {})}) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def metric(h, name: str) -> float:
    async with h.http.get(f"{h.base}/metrics") as r:
        text = await r.text()
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def test_all_four_events_answer_xml(harness):
    acc = await harness.account()
    url = acc["url"]
    status, ctype, text = await post_full(harness, url, sipgate_fixture("newCall_in.txt"))
    assert (status, ctype.split(";")[0]) == (200, "application/xml")
    assert text == f'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="{url}" onHangup="{url}"/>'
    assert urlsplit(url).netloc == urlsplit(harness.settings.base_url).netloc  # under PUBLIC_URL
    for name in ("answer_in.txt", "hangup_causes.txt", "dtmf.txt"):
        body = sipgate_fixture(name).split(b"\n")[0]
        status, ctype, text = await post_full(harness, url, body)
        assert (status, ctype.split(";")[0], text) == (200, "application/xml", EMPTY), name


async def test_public_url_shapes_the_follow_up_urls(make_harness):
    h = await make_harness()
    h.settings.public_url = "https://cti.example.com/base"
    acc = await h.account()
    status, _, text = await post_full(h, acc["url"], new_call("CALLPUB"))
    expected = f"https://cti.example.com/base/webhooks/sipgate/{acc['webhook_token']}"
    assert status == 200 and f'onAnswer="{expected}" onHangup="{expected}"' in text


@pytest.mark.parametrize("body, reason", [
    (b"callId=X&from=4930123456", "missing event"),
    (b"event=ring&callId=X", "unknown event"),
    (b"event=newCall&from=4930123456", "missing callId"),
    (b"\x00\xff\xfe garbage", "UTF-8"),
    (b"", "missing event"),
    (b"event=dtmf&callId=Z1&dtmf=1%002", "NUL"),  # PostgreSQL cannot store it: a 400, not a 503 for its batch
    (b"event=hangup&callId=Z1&cause=a\x00b", "NUL"),
])
async def test_malformed_pushes_get_400_with_one_line(harness, body, reason):
    acc = await harness.account()
    status, ctype, text = await post_full(harness, acc["url"], body)
    assert status == 400 and ctype.startswith("text/plain")
    assert reason in text and text.count("\n") == 1


async def test_unknown_and_rotated_tokens_get_404_with_empty_body(harness):
    acc = await harness.account()
    status, _, text = await post_full(harness, f"{harness.base}/webhooks/sipgate/nope", new_call("C404"))
    assert (status, text) == (404, "")
    rotated = await harness.admin.rotate_webhook(acc["account_id"])
    status, _, text = await post_full(harness, acc["url"], new_call("C405"))
    assert (status, text) == (404, "")
    assert (await post_full(harness, rotated["webhook_url"], new_call("C406")))[0] == 200


async def test_body_over_64_kib_gets_413(harness):
    acc = await harness.account()
    status, _, text = await post_full(harness, acc["url"], b"event=newCall&callId=X&pad=" + b"a" * 70_000)
    assert status == 413 and "65536" in text
    # exactly at the limit is still read (and refused only for what it says)
    at_limit = b"event=newCall&callId=X&pad=" + b"a" * (65536 - 27)
    assert (await post_full(harness, acc["url"], at_limit))[0] == 200


async def test_peer_outside_allowed_ips_gets_403(make_harness):
    h = await make_harness(sipgate_allowed_ips="217.116.118.254/32,212.9.46.32/32")
    acc = await h.account()
    status, _, text = await post_full(h, acc["url"], new_call("C403"))
    assert status == 403 and text.strip()
    # a forged X-Forwarded-For from an untrusted peer changes nothing
    assert (await post_full(h, acc["url"], new_call("C403"), {"X-Forwarded-For": "217.116.118.254"}))[0] == 403
    assert await h.pool.fetchval("SELECT count(*) FROM call_events") == 0


async def test_allowed_peer_passes(make_harness):
    h = await make_harness(sipgate_allowed_ips="127.0.0.0/8")
    acc = await h.account()
    assert (await post_full(h, acc["url"], new_call("C200")))[0] == 200


async def test_forwarded_for_counts_only_from_a_trusted_proxy(make_harness):
    h = await make_harness(sipgate_allowed_ips="217.116.118.254/32", trusted_proxies="127.0.0.1/32")
    acc = await h.account()
    ok = await post_full(h, acc["url"], new_call("CXFF1"), {"X-Forwarded-For": "217.116.118.254"})
    assert ok[0] == 200
    chain = await post_full(h, acc["url"], new_call("CXFF2"), {"X-Forwarded-For": "217.116.118.254, 127.0.0.1"})
    assert chain[0] == 200
    spoofed = await post_full(h, acc["url"], new_call("CXFF3"), {"X-Forwarded-For": "217.116.118.254, 10.9.9.9"})
    assert spoofed[0] == 403  # the right-most untrusted hop is the client, and it is not sipgate


async def test_repeated_delivery_has_no_second_effect(harness):
    acc = await harness.account(contacts=[("c1", "J", "", "+4915791234567", "", "")])
    rep = await harness.connect(await harness.user(acc["account_id"], "w0"))
    bodies = [sipgate_fixture("newCall_in.txt"),
              sipgate_fixture("hangup_causes.txt").split(b"\n")[-1]]
    for b in bodies:
        for _ in range(3):
            assert (await post_full(harness, acc["url"], b))[0] == 200
    await rep.expect("call.ended")
    await asyncio.sleep(0.3)
    assert len(rep.of("call.ringing")) == 1 and len(rep.of("call.ended")) == 1
    assert await harness.pool.fetchval("SELECT count(*) FROM call_events") == 2


async def test_dtmf_repeats_only_when_the_body_differs(harness):
    acc = await harness.account()
    a = b"event=dtmf&dtmf=1&callId=CDTMF"
    b = b"event=dtmf&dtmf=2&callId=CDTMF"
    for body in (a, a, b):
        assert (await post_full(harness, acc["url"], body))[0] == 200
    rows = await harness.pool.fetch("SELECT data->>'dtmf' AS d FROM call_events ORDER BY id")
    assert [r["d"] for r in rows] == ["1", "2"]


async def test_signature_enforce(make_harness):
    h = await make_harness(sipgate_signature="enforce")
    acc = await h.account()
    assert (await post_full(h, acc["url"], SIGNED, {"X-Sipgate-Signature": SIGNATURE}))[0] == 200
    assert (await post_full(h, acc["url"], TAMPERED, {"X-Sipgate-Signature": SIGNATURE}))[0] == 403
    assert (await post_full(h, acc["url"], SIGNED))[0] == 403  # no header at all
    assert await h.pool.fetchval("SELECT count(*) FROM call_events") == 1


async def test_signature_log(make_harness):
    h = await make_harness(sipgate_signature="log")
    acc = await h.account()
    before = await metric(h, "hejcti_webhook_signature_failures_total")
    assert (await post_full(h, acc["url"], TAMPERED, {"X-Sipgate-Signature": SIGNATURE}))[0] == 200
    assert await metric(h, "hejcti_webhook_signature_failures_total") == before + 1


async def test_signature_off(make_harness):
    h = await make_harness(sipgate_signature="off")
    acc = await h.account()
    assert (await post_full(h, acc["url"], TAMPERED, {"X-Sipgate-Signature": SIGNATURE}))[0] == 200
    assert await metric(h, "hejcti_webhook_signature_failures_total") == 0


async def test_database_unreachable_gives_503_and_nothing_half_stored(harness, database_url):
    acc = await harness.account()
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(with_database(database_url, "postgres"))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        body = sipgate_fixture("newCall_in.txt")
        status, _, text = await post_full(harness, acc["url"], body)
        assert status == 503 and text.strip()
        async with harness.http.get(f"{harness.base}/readyz") as r:
            assert r.status == 503
        async with harness.http.get(f"{harness.base}/healthz") as r:
            assert r.status == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    for _ in range(50):  # sipgate does not retry; a client that does gets 200 once the database is back
        status, _, _ = await post_full(harness, acc["url"], body)
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200
    assert (await post_full(harness, acc["url"], body))[0] == 200
    pool = await asyncpg.connect(database_url)
    try:
        assert await pool.fetchval("SELECT count(*) FROM call_events") == 1
        assert await pool.fetchval("SELECT count(*) FROM calls") == 1
    finally:
        await pool.close()


async def test_pushes_arriving_together_share_commits(harness):
    acc = await harness.account()
    results = await asyncio.gather(*(post_full(harness, acc["url"], new_call(f"CGRP{i:03d}")) for i in range(50)))
    assert [r[0] for r in results] == [200] * 50
    assert await harness.pool.fetchval("SELECT count(*) FROM call_events") == 50
    assert await metric(harness, "hejcti_webhook_batch_size_sum") == 50
    assert await metric(harness, "hejcti_webhook_batch_size_count") < 50  # at least one commit carried several


async def test_metrics_count_webhooks_by_event_and_status(harness):
    acc = await harness.account()
    await post_full(harness, acc["url"], new_call("CMET"))
    await post_full(harness, acc["url"], b"event=bogus&callId=X")
    async with harness.http.get(f"{harness.base}/metrics") as r:
        text = await r.text()
    assert 'hejcti_webhooks_total{event="newCall",status="200"} 1.0' in text
    assert 'hejcti_webhooks_total{event="unknown",status="400"} 1.0' in text
    for name in ("hejcti_sessions_open", "hejcti_queue_depth", "hejcti_lookup_seconds", "hejcti_crm_errors_total",
                 "hejcti_pops_total"):
        assert name in text
