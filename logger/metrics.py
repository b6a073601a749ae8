"""Prometheus metrics of the sidecar's proxied calls and the ingest endpoint's events."""

from __future__ import annotations

from collections.abc import Sized

from prometheus_client import CollectorRegistry, Counter, Gauge

from logger.producer.metrics import LATENCY_BUCKETS_S, LoopCounter, LoopHistogram, LoopMetrics

# Why the proxy answered a request itself, or closed a connection, instead of proxying.
REFUSAL_CAUSES = (
    "malformed", "transfer_coding", "upgrade", "header_too_large", "too_many_headers",
    "pipeline", "connection_limit", "header_timeout", "body_timeout", "idle_timeout",
)  # fmt: skip


class ProxyMetrics:
    """The proxied calls themselves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        per_call = LoopMetrics(registry)
        self.requests = per_call.add(
            LoopCounter(
                "infermon_proxy_requests", "calls proxied, by the status returned to the client",
                "code",
            )
        )  # fmt: skip
        self.latency = per_call.add(
            LoopHistogram(
                "infermon_proxy_latency_seconds",
                "time from the request's first byte to the response's last byte",
                LATENCY_BUCKETS_S,
            )
        )
        self.upstream_errors = Counter(
            "infermon_proxy_upstream_errors",
            "calls answered 502 or 504 because the model server failed",
            registry=registry,
        )
        self.sampled_out = Counter(
            "infermon_proxy_calls_not_sampled",
            "calls not logged by --sample-rate",
            registry=registry,
        )
        self.truncated = Counter(
            "infermon_payloads_truncated", "payloads cut to --max-payload-bytes", registry=registry
        )
        self.refused = Counter(
            "infermon_proxy_refused",
            "requests answered by the proxy itself or connections closed at an edge limit, "
            "by cause",
            ["reason"],
            registry=registry,
        )
        for cause in REFUSAL_CAUSES:
            self.refused.labels(cause)  # each shows from 0
        self.connections = Gauge(
            "infermon_proxy_client_connections", "client connections open", registry=registry
        )

    def watch_connections(self, connections: Sized) -> None:
        """The open-connections gauge reads `connections` at each scrape."""
        self.connections.set_function(lambda: len(connections))


class IngestMetrics:
    """Events received over HTTP."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "infermon_ingest_events_received", "CloudEvents accepted", registry=registry
        )
        self.rejected = Counter(
            "infermon_ingest_requests_rejected",
            "requests refused, by status",
            ["code"],
            registry=registry,
        )
        self.unforeseen = Counter(
            "infermon_ingest_requests_unforeseen",
            "requests refused (400) by the last-resort guard: an error no check foresaw, logged",
            registry=registry,
        )
