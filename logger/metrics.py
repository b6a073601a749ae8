"""Prometheus metrics of the logger and the ingest endpoint, on a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond buckets: the proxy adds well under a millisecond, Kafka a few.
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class SinkMetrics:
    """What happened to each event on its way to Kafka."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.produced = Counter(
            "infermon_events_produced", "events acknowledged by Kafka", registry=registry
        )
        self.failed = Counter(
            "infermon_events_failed", "deliveries Kafka did not acknowledge", registry=registry
        )
        self.spooled = Counter(
            "infermon_events_spooled", "events written to the disk spool", registry=registry
        )
        self.replayed = Counter(
            "infermon_events_replayed", "spooled events delivered to Kafka", registry=registry
        )
        self.dropped = Counter(
            "infermon_events_dropped",
            "events lost: spool full or absent, or refused by Kafka for good",
            ["reason"],
            registry=registry,
        )
        self.queue_events = Gauge(
            "infermon_producer_queue_events", "events in memory awaiting Kafka", registry=registry
        )
        self.queue_bytes = Gauge(
            "infermon_producer_queue_bytes", "bytes in memory awaiting Kafka", registry=registry
        )
        self.spool_events = Gauge(
            "infermon_spool_pending_events", "events in the spool", registry=registry
        )
        self.spool_bytes = Gauge(
            "infermon_spool_pending_bytes", "bytes in the spool", registry=registry
        )
        self.produce_latency = Histogram(
            "infermon_produce_latency_seconds",
            "time from handing an event to the producer to Kafka's acknowledgement",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )


class ProxyMetrics:
    """The proxied calls themselves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "infermon_proxy_requests",
            "calls proxied, by the status returned to the client",
            ["code"],
            registry=registry,
        )
        self.latency = Histogram(
            "infermon_proxy_latency_seconds",
            "time from the request's first byte to the response's last byte",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
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
