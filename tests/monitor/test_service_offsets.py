"""Storing offsets after a write when the partition has moved to another member meanwhile,
and a batch the store failed when its partitions are revoked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from monitor.metrics import MonitorMetrics
from monitor.service import DecodedBatch, MonitorService
from monitor.settings import MonitorSettings
from monitor.store.store import Store
from tests.monitor.store.helpers import call


def test_offsets_of_a_partition_no_longer_assigned_are_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As after a rebalance while a batch waited for the store: the batch is stored, the
    new owner reads it again (unchanged by the replay), and this consumer goes on."""
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    settings = MonitorSettings(kafka_bootstrap="127.0.0.1:9", database_url=url)
    with Store(url) as store:
        service = MonitorService(settings, store, MonitorMetrics(CollectorRegistry()))
        batch = DecodedBatch(next_offsets={("payloads", 0): 10}, records=1)
        with caplog.at_level(logging.WARNING, logger="monitor.service"):
            service._store_offsets(batch)  # nothing is assigned to this consumer
        service._close()
    assert "offsets not stored, partitions moved" in caplog.text


def test_a_batch_the_store_refused_is_left_to_be_read_again_when_partitions_are_revoked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal that is still in flight when a rebalance takes the partitions must not stop
    the consumer (a librdkafka callback that raises ends `consume`): the offsets stay where
    they are, and whoever reads the partitions next meets the refusal and dead-letters it."""
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    settings = MonitorSettings(kafka_bootstrap="127.0.0.1:9", database_url=url)
    with Store(url) as store:
        store.upgrade()
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE events"))  # refused however often it is tried
        service = MonitorService(settings, store, MonitorMetrics(CollectorRegistry()))
        events = list(call("r1"))
        batch = DecodedBatch(events=events, next_offsets={("payloads", 0): 2}, records=2)
        batch.prepared = store.prepare(events)
        service._writer.submit(batch)
        with caplog.at_level(logging.WARNING, logger="monitor.service"):
            service._on_revoke(service._consumer, [])
        assert service._writer.collect() is None, "the batch was taken off the writer"
        service._close()
    assert "partitions revoked before the batch was stored" in caplog.text
    assert "no such table: events" in caplog.text
