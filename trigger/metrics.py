"""Prometheus metrics of `infermon trigger`, on the registry its admin port serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# From a few milliseconds (a model on the same host) to the retries of a slow one.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0,
)  # fmt: skip


class TriggerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "infermon_trigger_consumed", "input records read", registry=registry
        )
        self.answered = Counter(
            "infermon_trigger_answered",
            "answers delivered to the output topic, by the model's status",
            ["code"],
            registry=registry,
        )
        self.retried = Counter(
            "infermon_trigger_retried",
            "model calls retried, by reason: timeout, unreachable, status_5xx",
            ["reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "infermon_trigger_dead_lettered",
            "input records delivered to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "infermon_trigger_in_flight",
            "input records read and not yet answered or dead-lettered",
            registry=registry,
        )
        self.latency = Histogram(
            "infermon_trigger_latency_seconds",
            "time from reading an input record to the delivery of its answer",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.model_latency = Histogram(
            "infermon_trigger_model_latency_seconds",
            "time of one model call, retries counted separately",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
