"""Prometheus metrics, one registry per app (tests run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter("hejcti_webhooks_total", "Webhooks by event and HTTP status",
                                ["event", "status"], registry=r)
        self.signature_failures = Counter("hejcti_webhook_signature_failures_total",
                                          "Pushes whose X-Sipgate-Signature did not verify", registry=r)
        self.batch_size = Histogram("hejcti_webhook_batch_size", "Webhooks stored per commit",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.pops = Counter("hejcti_pops_total", "Server events pushed to sessions, by type",
                            ["type"], registry=r)
        self.lookup_seconds = Histogram("hejcti_lookup_seconds", "CRM lookup latency (cache misses)", ["crm"],
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10),
                                        registry=r)
        self.lookup_cache = Counter("hejcti_lookup_cache_total", "CRM lookups by cache result", ["result"],
                                    registry=r)
        self.crm_errors = Counter("hejcti_crm_errors_total", "CRM errors by CRM and kind", ["crm", "kind"],
                                  registry=r)
        self.sessions = Gauge("hejcti_sessions_open", "Open extension sessions", registry=r)
        self.sessions_closed_slow = Counter("hejcti_sessions_closed_slow_total",
                                            "Sessions closed with 4001 for not reading", registry=r)
        self.queue_depth = Gauge("hejcti_queue_depth", "Events waiting for a worker", registry=r)
        self.events = Counter("hejcti_events_total", "Events taken by this process's listener, by source",
                              ["source"], registry=r)
        self.listener_reconnects = Counter("hejcti_listener_reconnects_total", "Listener reconnects", registry=r)
        self.records = Counter("hejcti_call_records_total", "Call records by outcome", ["crm", "outcome"],
                               registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
