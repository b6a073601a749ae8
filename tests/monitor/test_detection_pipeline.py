"""Drift detection through the real pipeline: KServe events on a real broker, `infermon
monitor` processes, SQLite and PostgreSQL. Shifted traffic flags exactly the shifted
features; a monitor killed with SIGKILL and a claimer that died holding a window lose and
double no window; instances that come late revise their window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from infermon import events
from monitor.store.detection_store import DetectionStore
from monitor.store.store import Store
from monitor.store.windows import InstanceRange
from tests.fixtures.factories import TopicFactory
from tests.monitor.consumer_helpers import (
    detection_config,
    start_detecting_monitor,
    wait_for,
    wait_for_stats,
)
from tests.monitor.detection_data import instance_features
from tests.monitor.store.detection_helpers import count_bounds

pytestmark = pytest.mark.slow
MODEL = "drifty"


def kserve_call(request_id: str, at: datetime, features: dict[str, Any]) -> list[tuple]:
    """A call's request and response as a KafkaSink writes them, keyed by the request id."""

    def record(event_type: str, data: object) -> tuple:
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", request_id.encode()),
            ("ce_source", b"http://localhost:9081/"), ("ce_type", event_type.encode()),
            ("ce_time", at.isoformat().encode()), ("content-type", b"application/json"),
            ("ce_inferenceservicename", MODEL.encode()),
        ]  # fmt: skip
        return request_id.encode(), headers, json.dumps(data).encode()

    prediction = int(features["a"] > 1.5)
    return [record(events.KSERVE_REQUEST_TYPE, {"instances": [features]}),
            record(events.KSERVE_RESPONSE_TYPE, {"predictions": [prediction]})]  # fmt: skip


class Traffic:
    """Calls of one instance each, produced to `topic`, 1 ms apart from a given time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap})
        self._topic = topic
        # A seed whose reference draw is not among the ~1 in 10 whose unshifted features
        # already differ from later normal windows at the tests' p-value threshold.
        self._rng = np.random.default_rng(1)
        self._calls = 0

    def send(self, count: int, start: datetime, shifted: frozenset[str] = frozenset()) -> None:
        for n in range(count):
            self._calls += 1
            features = instance_features(self._rng, shifted)
            moment = start + timedelta(milliseconds=n)
            for key, headers, value in kserve_call(f"call-{self._calls:06d}", moment, features):
                self._producer.produce(self._topic, value, key, headers=headers)
        assert self._producer.flush(30) == 0


def reports(store: Store) -> list[dict[str, Any]]:
    found = DetectionStore(store).reports(MODEL, limit=1000)
    return sorted(found, key=lambda r: (r["window_start"], r["revision"]))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return detection_config(tmp_path)


# IN_ORDER: tests that count windows read one partition, so that instances are stored in
# time order. From two, one partition read seconds after the other (a loaded machine) brings
# late instances into windows already cut: revisions, and not the windows counted.


def test_shifted_traffic_flags_exactly_the_shifted_features(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store, config: Path
) -> None:
    topic = new_topic(partitions=1)  # in time order: see IN_ORDER
    traffic = Traffic(kafka_bootstrap, topic)
    start = datetime.now(UTC) - timedelta(seconds=30)
    traffic.send(600, start)
    traffic.send(400, start + timedelta(seconds=1), shifted=frozenset({"a", "colour"}))

    with start_detecting_monitor(kafka_bootstrap, topic, database_url, config) as process:
        found = wait_for("four window reports", lambda: len(reports(store)) == 4 and reports(store))
        metrics = process.metrics()

    drifted = [[f["column"] for f in report["features"] if f["drift"]] for report in found]
    assert drifted == [[], [], ["a", "colour", "prediction"], ["a", "colour", "prediction"]]
    assert [r["dataset_drift"] for r in found] == [False, False, True, True]
    assert [r["instances"] for r in found] == [200] * 4
    assert metrics[f'infermon_monitor_drift_windows_evaluated_total{{model="{MODEL}"}}'] == 4
    assert metrics[f'infermon_monitor_drift_dataset_drift{{model="{MODEL}"}}'] == 1.0


def test_a_killed_monitor_and_a_dead_claimer_lose_and_double_no_window(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store, config: Path
) -> None:
    topic = new_topic(partitions=4)
    traffic = Traffic(kafka_bootstrap, topic)
    detection = DetectionStore(store)
    first = start_detecting_monitor(kafka_bootstrap, topic, database_url, config)
    second = start_detecting_monitor(kafka_bootstrap, topic, database_url, config)
    try:
        traffic.send(300, datetime.now(UTC) - timedelta(seconds=20))  # reference, half a window
        wait_for_stats(store, lambda s: s["instances"] >= 300)
        first.kill()  # SIGKILL with window 1 half full
        first = start_detecting_monitor(kafka_bootstrap, topic, database_url, config)
        # The rest in the near future (15 s: room for a loaded machine), so that no window
        # closes before the claim below.
        traffic.send(300, datetime.now(UTC) + timedelta(seconds=15))
        wait_for_stats(store, lambda s: s["instances"] >= 600)
        reference = wait_for("the reference", lambda: detection.reference(MODEL))
        through = detection.nth_instance_key(InstanceRange(MODEL, after=reference.last), 200)
        assert through is not None
        dead = detection.claim_new(MODEL, count_bounds(1, reference.last, through),
                                   reference.version, "dead-monitor#1", lease_s=2.0)  # fmt: skip
        assert dead is not None, "a monitor claimed window 1 before it closed"

        found = wait_for("two window reports", lambda: len(reports(store)) == 2 and reports(store))
        assert first.running() and second.running()
    finally:
        first.stop()
        second.stop()

    assert [r["revision"] for r in found] == [1, 1]
    windows = [detection.window(r["window_id"]) for r in found]
    assert [w.bounds.seq for w in windows if w] == [1, 2]
    assert all(w and not w.claimed_by.startswith("dead-monitor") for w in windows)
    for report, window in zip(found, windows, strict=True):
        assert window is not None
        assert report["instances"] == detection.count_instances(
            window.bounds.instance_range(MODEL)) == 200  # fmt: skip
    assert windows[1] and windows[0] and windows[1].bounds.after == windows[0].bounds.through
    assert store.stats()["instances"] == 600


def test_late_instances_revise_their_window(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store, config: Path
) -> None:
    topic = new_topic(partitions=1)  # in time order: see IN_ORDER; the late ones come later
    traffic = Traffic(kafka_bootstrap, topic)
    start = datetime.now(UTC) - timedelta(seconds=30)
    traffic.send(400, start)

    with start_detecting_monitor(kafka_bootstrap, topic, database_url, config):
        [first] = wait_for("the first report", lambda: reports(store))
        # A spool replayed after an outage: calls from inside the window, produced now.
        traffic.send(5, first["window_start"] + timedelta(microseconds=500))
        found = wait_for("a revision", lambda: len(reports(store)) == 2 and reports(store))

    assert [(r["revision"], r["instances"], r["late"]) for r in found] == [(1, 200, 0),
                                                                           (2, 205, 5)]  # fmt: skip
    assert found[1]["window_start"] == found[0]["window_start"]
