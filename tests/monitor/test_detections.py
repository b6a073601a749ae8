"""Drift and outlier CloudEvents on a real broker; webhooks on a local HTTP server; and neither
an unreachable broker nor an unreachable webhook ever holds the caller."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.detections import DRIFT_EVENT_TYPE, OUTLIER_EVENT_TYPE, DetectionPublisher
from tests.fixtures.events_on_kafka import logged_events
from tests.fixtures.factories import TopicFactory
from tests.fixtures.processes import free_port

SOURCE = "infermon-monitor/test"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)
REPORT: dict[str, Any] = {
    "instances": 1000,
    "dataset_drift": True,
    "share": 0.5,
    "features": [
        {"column": "age", "drift": True, "p_value": 0.001},
        {"column": "income", "drift": False, "p_value": 0.4},
    ],
}
# A call that returns within this has not waited for a network; one that waits takes seconds.
QUICK_S = 0.5


class WebhookServer:
    """Answers each POST with the next status of `statuses` (then 200), keeping the bodies."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[Any] = []
        self._statuses = list(statuses or [])
        received, statuses_left = self.bodies, self._statuses

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(statuses_left.pop(0) if statuses_left else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_server() -> Iterator[Callable[..., WebhookServer]]:
    servers: list[WebhookServer] = []

    def start(statuses: list[int] | None = None) -> WebhookServer:
        servers.append(WebhookServer(statuses))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def publisher(
    bootstrap: str, topic: str = "unused", **options: Any
) -> tuple[DetectionPublisher, CollectorRegistry]:
    registry = CollectorRegistry()
    kafka = {"bootstrap.servers": bootstrap, **options.pop("kafka", {})}
    options.setdefault("webhook_backoff_s", 0.01)
    return DetectionPublisher(kafka, topic, SOURCE, registry=registry, **options), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(f"infermon_monitor_{name}_total", labels) or 0.0


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def drift(target: DetectionPublisher, **overrides: Any) -> float:
    """Calls `drift_report`; returns how long the call took."""
    arguments: dict[str, Any] = {
        "model": "my-model", "window_id": 7, "window_start": START, "window_end": END,
        "revision": 0, "report": REPORT, "webhook": None, "state_changed": False,
    } | overrides  # fmt: skip
    started = time.perf_counter()
    target.drift_report(**arguments)
    return time.perf_counter() - started


def test_reports_and_outliers_arrive_as_cloudevents(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    target, registry = publisher(kafka_bootstrap, topic)
    drift(target)
    drift(target)  # the same report again: recognisable by its id
    drift(target, revision=1, report={**REPORT, "share": 1.0})
    outliers = [{"row": 3, "score": 9.5, "contributions": {"age": 8.0}}]
    target.outliers("my-model", 7, START, END, outliers)
    target.close(10)
    events = logged_events(kafka_bootstrap, topic, 4)

    first, again, revised, outlier = events
    assert [e.type for e in events] == [DRIFT_EVENT_TYPE] * 3 + [OUTLIER_EVENT_TYPE]
    assert {e.event.get_source() for e in events} == {SOURCE}
    assert first.id == again.id != revised.id
    assert len({first.id, revised.id, outlier.id}) == 3
    assert {e.key for e in events} == {b"my-model"}
    assert first.headers["content-type"] == b"application/json"
    assert first.json() == REPORT
    assert revised.json() == {**REPORT, "share": 1.0}
    assert outlier.json() == {"outliers": outliers}
    for event, revision in zip(events, ["0", "0", "1", "0"], strict=True):
        assert event.ext("modelname") == "my-model"
        assert event.ext("windowid") == "7"
        assert event.ext("windowstart") == "2026-03-01T12:00:00Z"
        assert event.ext("windowend") == "2026-03-01T12:10:00Z"
        assert event.ext("revision") == revision
    assert sample(registry, "detection_events_emitted", kind="drift") == 3
    assert sample(registry, "detection_events_emitted", kind="outlier") == 1


def test_the_webhook_is_called_once_on_a_state_change_only(
    kafka_bootstrap: str, new_topic: TopicFactory, webhook_server: Callable[..., WebhookServer]
) -> None:
    server = webhook_server()
    target, registry = publisher(kafka_bootstrap, new_topic())
    drift(target, webhook=server.url, state_changed=False)
    drift(target, webhook=server.url, state_changed=True, window_id=8)
    drift(target, webhook=None, state_changed=True, window_id=9)
    drift(target, webhook=server.url, state_changed=False, window_id=10)
    target.close(10)
    assert server.bodies == [
        {
            "model": "my-model",
            "window": {
                "id": 8,
                "start": "2026-03-01T12:00:00Z",
                "end": "2026-03-01T12:10:00Z",
                "revision": 0,
            },
            "dataset_drift": True,
            "share": 0.5,
            "drifted_features": ["age"],
        }
    ]
    assert sample(registry, "webhooks_delivered") == 1


def test_a_failing_webhook_is_retried_until_delivered(
    kafka_bootstrap: str, new_topic: TopicFactory, webhook_server: Callable[..., WebhookServer]
) -> None:
    server = webhook_server(statuses=[503, 500])
    target, registry = publisher(kafka_bootstrap, new_topic(), webhook_attempts=3)
    drift(target, webhook=server.url, state_changed=True)
    target.close(10)
    assert len(server.bodies) == 3
    assert server.bodies[0] == server.bodies[2]
    assert sample(registry, "webhooks_delivered") == 1
    assert registry.get_sample_value("infermon_monitor_webhooks_failed_total") is None


def test_a_webhook_that_refuses_is_not_retried(
    kafka_bootstrap: str, new_topic: TopicFactory, webhook_server: Callable[..., WebhookServer]
) -> None:
    server = webhook_server(statuses=[404])
    target, registry = publisher(kafka_bootstrap, new_topic(), webhook_attempts=3)
    drift(target, webhook=server.url, state_changed=True)
    target.close(10)
    assert len(server.bodies) == 1
    assert sample(registry, "webhooks_failed", reason="refused") == 1
    assert sample(registry, "webhooks_delivered") == 0


def test_an_unreachable_webhook_never_blocks_and_is_counted(
    kafka_bootstrap: str, new_topic: TopicFactory, silent_port: int
) -> None:
    target, registry = publisher(
        kafka_bootstrap, new_topic(), webhook_timeout_s=0.5, webhook_attempts=2
    )
    closed_port = free_port()
    assert drift(target, webhook=f"http://127.0.0.1:{silent_port}/", state_changed=True) < QUICK_S
    assert drift(target, webhook=f"http://127.0.0.1:{closed_port}/", state_changed=True) < QUICK_S
    wait_for(lambda: sample(registry, "webhooks_failed", reason="unreachable") == 2)
    assert sample(registry, "webhooks_delivered") == 0
    target.close(5)


def test_a_full_webhook_queue_drops_and_counts(silent_port: int) -> None:
    target, registry = publisher(
        f"127.0.0.1:{free_port()}", webhook_timeout_s=2, max_queued_webhooks=1,
        kafka={"message.timeout.ms": 1000},
    )  # fmt: skip
    url = f"http://127.0.0.1:{silent_port}/"
    durations = [drift(target, webhook=url, state_changed=True) for _ in range(4)]
    assert max(durations) < QUICK_S
    # One waits on the silent port, one in the queue; the queue had no room for the others
    # (or for three, if the thread had not taken the first yet).
    assert sample(registry, "webhooks_failed", reason="queue_full") in (2, 3)
    started = time.monotonic()
    target.close(0.5)
    assert time.monotonic() - started < 2


def test_an_unreachable_broker_never_blocks_and_drops_are_counted() -> None:
    target, registry = publisher(
        f"127.0.0.1:{free_port()}", kafka={"message.timeout.ms": 500}, max_queued_events=2
    )
    durations = [drift(target, window_id=i) for i in range(3)]
    started = time.perf_counter()
    target.outliers("my-model", 1, START, END, [{"row": 0}])
    durations.append(time.perf_counter() - started)
    assert max(durations) < QUICK_S
    assert sample(registry, "detection_events_dropped", reason="queue_full") == 2
    wait_for(lambda: sample(registry, "detection_events_dropped", reason="undelivered") == 2)
    started = time.monotonic()
    target.close(0.5)
    assert time.monotonic() - started < 2
    assert sample(registry, "detection_events_emitted", kind="drift") == 0


def test_closing_with_kafka_away_drops_what_is_left_and_returns_in_time() -> None:
    target, registry = publisher(f"127.0.0.1:{free_port()}")  # the delivery timeout: a minute
    drift(target)
    started = time.monotonic()
    target.close(0.5)
    assert time.monotonic() - started < 2
    assert sample(registry, "detection_events_dropped", reason="closed") == 1
    drift(target)  # after close: counted, not raised
    assert sample(registry, "detection_events_dropped", reason="closed") == 2


def test_a_report_that_is_not_json_is_dropped_not_raised(
    webhook_server: Callable[..., WebhookServer],
) -> None:
    server = webhook_server()
    target, registry = publisher(f"127.0.0.1:{free_port()}", kafka={"message.timeout.ms": 500})
    drift(target, report={"features": object()}, webhook=server.url, state_changed=True)
    assert sample(registry, "detection_events_dropped", reason="unbuildable") == 1
    assert sample(registry, "webhooks_failed", reason="unbuildable") == 1
    target.close(1)
    assert server.bodies == []


def test_a_report_too_large_for_the_producer_is_dropped_not_raised() -> None:
    target, registry = publisher(
        f"127.0.0.1:{free_port()}", kafka={"message.max.bytes": 1000, "message.timeout.ms": 500}
    )
    drift(target, report={**REPORT, "note": "x" * 2000})
    assert sample(registry, "detection_events_dropped", reason="refused") == 1
    target.close(1)
