"""Prometheus metrics of the producer core, and the loop-thread accumulators the logger uses.

What is updated once or twice per proxied call (calls by status, proxy and produce latency,
events produced) is kept in loop-thread accumulators and read out at scrape time: the client
library's metrics take a lock per update, a few microseconds a call on the proxy's path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Sub-millisecond buckets: the proxy adds well under a millisecond, Kafka a few.
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class LoopHistogram:
    """A histogram observed only from the event loop's thread, so without locks.

    A scrape on another thread may see a count one observation ahead of the sum: that is the
    most it can be off by, and the next scrape is whole again."""

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # `le`: value <= bound
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self.sum
        )


class LoopCounter:
    """A counter, optionally by one label, incremented only from the event loop's thread.

    Label values are kept as given (a status code as an int) and turned to text at scrape."""

    def __init__(self, name: str, documentation: str, label: str | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.values: dict[object, int] = {} if label else {None: 0}

    def inc(self, label_value: object = None) -> None:
        self.values[label_value] = self.values.get(label_value, 0) + 1

    def family(self) -> CounterMetricFamily:
        labels = [self.label] if self.label else None
        family = CounterMetricFamily(self.name, self.documentation, labels=labels)
        for label_value, value in list(self.values.items()):
            family.add_metric([str(label_value)] if self.label else [], value)
        return family


LoopMetric = TypeVar("LoopMetric", LoopHistogram, LoopCounter)


class LoopMetrics(Collector):
    """Renders loop-thread accumulators at each scrape of the registry it is registered on."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._metrics: list[LoopHistogram | LoopCounter] = []
        registry.register(self)

    def add(self, metric: LoopMetric) -> LoopMetric:
        self._metrics.append(metric)
        return metric

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield metric.family()


class SinkMetrics:
    """What happened to each event on its way to Kafka."""

    def __init__(self, registry: CollectorRegistry) -> None:
        per_event = LoopMetrics(registry)
        self.produced = per_event.add(
            LoopCounter("infermon_events_produced", "events acknowledged by Kafka")
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
            "events lost: spool full or absent, or refused by Kafka for good with no room to "
            "set them aside",
            ["reason"],
            registry=registry,
        )
        self.cut = Counter(
            "infermon_events_cut",
            "events cut to fit Kafka's message.max.bytes: payload, then oversized attributes",
            registry=registry,
        )
        self.quarantined = Counter(
            "infermon_events_quarantined",
            "events Kafka refused for good, set aside in the spool's quarantine file, by error",
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
        self.produce_latency = per_event.add(
            LoopHistogram(
                "infermon_produce_latency_seconds",
                "time from handing an event to the producer to Kafka's acknowledgement",
                LATENCY_BUCKETS_S,
            )
        )
