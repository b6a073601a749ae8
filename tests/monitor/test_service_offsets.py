"""Storing offsets after a write, when the partition has moved to another member meanwhile."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.metrics import MonitorMetrics
from monitor.service import DecodedBatch, MonitorService
from monitor.settings import MonitorSettings
from monitor.store import Store


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
