"""``GET /metrics`` answers only the peers in ``METRICS_ALLOWED_IPS`` (loopback by default), the peer read
through ``TRUSTED_PROXIES`` as for webhooks; anyone else gets 403."""

from __future__ import annotations

from hejcti.cli import build_parser, settings_from


async def metrics_status(h, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with h.http.get(f"{h.base}/metrics", headers=headers) as r:
        return r.status


async def test_metrics_answers_loopback_by_default(harness):
    assert await metrics_status(harness) == 200


async def test_metrics_answers_only_the_allowed_peers_behind_a_trusted_proxy(make_harness):
    h = await make_harness(metrics_allowed_ips="10.0.0.0/8", trusted_proxies="127.0.0.1/32")
    assert await metrics_status(h, "10.1.2.3") == 200
    assert await metrics_status(h, "192.0.2.1") == 403
    assert await metrics_status(h, "10.1.2.3, 192.0.2.1") == 403  # the right-most hop the proxy saw
    assert await metrics_status(h) == 403  # the proxy itself is not in the list


async def test_metrics_refuses_a_peer_outside_the_list(make_harness):
    h = await make_harness(metrics_allowed_ips="192.0.2.0/24")
    assert await metrics_status(h) == 403
    assert await metrics_status(h, "192.0.2.1") == 403  # X-Forwarded-For counts only from a trusted proxy
    open_to_all = await make_harness(metrics_allowed_ips="")
    assert await metrics_status(open_to_all) == 200


def test_the_list_is_a_setting_and_a_flag():
    args = build_parser().parse_args(["serve", "--metrics-allowed-ips", "10.0.0.0/8"])
    assert [str(n) for n in settings_from(args).metrics_networks] == ["10.0.0.0/8"]
