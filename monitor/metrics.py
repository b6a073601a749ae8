"""Prometheus metrics of the monitor's consumer."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._lag_labels: set[tuple[str, str]] = set()
        self.consumed = Counter(
            "infermon_monitor_records_consumed", "Kafka records read", registry=registry
        )
        self.stored = Counter(
            "infermon_monitor_events_stored", "events new to the store", registry=registry
        )
        self.duplicates = Counter(
            "infermon_monitor_events_duplicate",
            "events already stored (a replay after a crash or rebalance)",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "infermon_monitor_dead_letters",
            "records that are not valid CloudEvents, sent to the dead-letter topic",
            registry=registry,
        )
        self.dead_letters_undelivered = Counter(
            "infermon_monitor_dead_letters_undelivered",
            "dead letters the dead-letter topic refused for good (kept in the store's table)",
            registry=registry,
        )
        self.retries = Counter(
            "infermon_monitor_write_retries",
            "batch writes retried because the database or Kafka was unavailable",
            registry=registry,
        )
        self.orphans = Counter(
            "infermon_monitor_orphans_marked", "requests marked orphaned", registry=registry
        )
        self.purged = Counter(
            "infermon_monitor_rows_purged", "rows removed by retention", registry=registry
        )
        self.batch_seconds = Histogram(
            "infermon_monitor_batch_seconds",
            "time to decode and store one batch",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "infermon_monitor_consumer_lag",
            "records on Kafka not yet stored, by topic and partition assigned here (librdkafka's "
            "statistics, every second)",
            ["topic", "partition"],
            registry=registry,
        )

    def set_consumer_lag(self, statistics: dict[str, Any]) -> None:
        """The lags of librdkafka's statistics: each partition's high watermark less its
        stored offset (what the database holds); partitions no longer assigned are removed."""
        lags = {}
        for topic, found in statistics.get("topics", {}).items():
            for partition, figures in found.get("partitions", {}).items():
                lag = figures.get("consumer_lag_stored", -1)
                if partition != "-1" and isinstance(lag, int) and lag >= 0:  # -1: unknown
                    lags[(topic, partition)] = lag
        for labels in set(self._lag_labels) - set(lags):
            self.consumer_lag.remove(*labels)
        for labels, lag in lags.items():
            self.consumer_lag.labels(*labels).set(lag)
        self._lag_labels = set(lags)


WINDOW_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DriftMetrics:
    """Drift detection's windows, per model."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows_evaluated = Counter(
            "infermon_monitor_drift_windows_evaluated",
            "window reports written by this monitor (a late revision counts again)",
            ["model"],
            registry=registry,
        )
        self.dataset_drift = Gauge(
            "infermon_monitor_drift_dataset_drift",
            "1 if the model's latest window evaluated here has dataset drift, else 0",
            ["model"],
            registry=registry,
        )
        self.drift_share = Gauge(
            "infermon_monitor_drift_share",
            "share of drifted columns in the model's latest window evaluated here",
            ["model"],
            registry=registry,
        )
        self.outliers = Counter(
            "infermon_monitor_outliers",
            "outlier instances found in the windows evaluated here",
            ["model"],
            registry=registry,
        )
        self.window_seconds = Histogram(
            "infermon_monitor_drift_window_seconds",
            "time to read, evaluate and store one window",
            buckets=WINDOW_SECONDS_BUCKETS,
            registry=registry,
        )
