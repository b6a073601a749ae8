"""Outages, shutdown and records Kafka refuses: calls never fail, no event is lost or blocks."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import httpx
import pytest

from logger.producer.spool import read_quarantine
from tests.fixtures.broker import create_topic, read_all
from tests.fixtures.events_on_kafka import as_logged, logged_events
from tests.fixtures.factories import TansuFactory, TopicFactory
from tests.fixtures.infermon_process import InfermonProcess
from tests.fixtures.processes import free_port, port_open
from tests.fixtures.toy_model_server import ToyModelServer
from tests.logger.conftest import StartInfermon

pytestmark = pytest.mark.slow


def make_calls(url: str, calls: int, prefix: str) -> None:
    with httpx.Client(timeout=10) as client:
        for number in range(calls):
            response = client.post(
                f"{url}/v1/models/m:predict",
                json={"instances": [[number]]},
                headers={"X-Request-Id": f"{prefix}-{number}"},
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": [float(number)]}


def wait_for_events(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list:
    deadline = time.monotonic() + timeout_s
    messages: list = []
    while time.monotonic() < deadline:
        messages = read_all(bootstrap, topic, idle_s=1.0, timeout_s=10)
        if len({(m.key(), dict(m.headers())["ce_type"]) for m in messages}) >= expected:
            break
        time.sleep(1)
    return messages


def assert_every_call_logged_once_or_duplicated_by_id(messages: list, ids: set[bytes]) -> None:
    per_event = collections.Counter((m.key(), dict(m.headers())["ce_type"]) for m in messages)
    assert {key for key, _ in per_event} == ids, "every call's events, and nothing else"
    assert len(per_event) == 2 * len(ids), "a request and a response event per call"
    for message in messages:
        assert dict(message.headers())["ce_id"] == message.key(), "a duplicate keeps its id"


# librdkafka's producer refuses a record above `message.max.bytes`, 1,000,000 bytes by default.
PRODUCER_LIMIT_BYTES = 1_000_000
BIG_BODY = bytes(range(256)) * (1_500_000 // 256)


def readiness(process: InfermonProcess) -> bool:
    response = httpx.get(f"{process.admin_url}/readyz", timeout=5)
    assert response.status_code in (200, 503), response.text
    return bool(response.json()["ready"]) and response.status_code == 200


def wait_for_readiness(process: InfermonProcess, ready: bool, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while readiness(process) != ready:
        assert time.monotonic() < deadline, f"/readyz never said {ready}:\n{process.log_tail()}"
        time.sleep(0.05)


def start_unready(start_infermon: StartInfermon, *args: str, spool: Path) -> InfermonProcess:
    """A logger whose broker is not there: it serves calls, but is not ready."""
    logger = start_infermon("logger", *args, spool_dir=spool, wait_ready=False)
    logger.process.wait_until(
        lambda: port_open("127.0.0.1", logger.port) and port_open("127.0.0.1", logger.admin_port),
        20,
        "listening",
    )
    return logger


def echo(url: str, body: bytes, request_id: str) -> None:
    response = httpx.post(
        f"{url}/echo",
        content=body,
        headers={"content-type": "application/octet-stream", "X-Request-Id": request_id},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.content == body, "the client gets the whole body, whatever is logged"


def test_calls_succeed_while_kafka_is_down_and_every_event_arrives_later(
    start_infermon: StartInfermon,
    tansu_factory: TansuFactory,
    toy_model_server: ToyModelServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    logger = start_unready(
        start_infermon, "--model-url", toy_model_server.url, "--kafka-bootstrap", bootstrap,
        "--topic", "outage", "--delivery-timeout-ms", "3000", spool=tmp_path / "spool",
    )  # fmt: skip
    make_calls(logger.url, 40, "down")
    # Past the delivery timeout, the events held in memory move to the spool.
    logger.wait_for_metrics(
        lambda metrics: metrics.get("infermon_events_spooled_total", 0) >= 80, 10, "spooling"
    )
    make_calls(logger.url, 40, "still-down")
    # The last calls' events reach the spool at the sink's next tick, after their answers.
    spooled = logger.wait_for_metrics(
        lambda metrics: metrics.get("infermon_events_spooled_total", 0) >= 160, 10, "spooling"
    )
    assert spooled["infermon_events_spooled_total"] == 160, "every event went to the spool"
    assert spooled["infermon_events_produced_total"] == 0

    tansu_factory(port=port)
    create_topic(bootstrap, "outage")
    messages = wait_for_events(bootstrap, "outage", 160, timeout_s=60)
    ids = {f"{prefix}-{n}".encode() for prefix in ("down", "still-down") for n in range(40)}
    assert_every_call_logged_once_or_duplicated_by_id(messages, ids)
    # A replayed batch is counted once every delivery is confirmed, which may come after the
    # broker already serves its events to readers.
    metrics = logger.wait_for_metrics(
        lambda metrics: (
            metrics["infermon_spool_pending_events"] == 0
            and metrics["infermon_events_replayed_total"] >= 160
        ),
        30,
        "every spooled event replayed",
    )
    assert not any(name.startswith("infermon_events_dropped") for name in metrics)


def test_sigterm_keeps_events_in_the_spool_for_the_next_start(
    start_infermon: StartInfermon,
    tansu_factory: TansuFactory,
    toy_model_server: ToyModelServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    spool = tmp_path / "spool"
    args = ("--model-url", toy_model_server.url, "--kafka-bootstrap", bootstrap,
            "--topic", "restart", "--shutdown-timeout-s", "2")  # fmt: skip
    first = start_unready(start_infermon, *args, spool=spool)
    make_calls(first.url, 25, "before-exit")
    assert first.terminate() == 0
    assert list(spool.glob("*")), "events were written to the spool on SIGTERM"

    tansu_factory(port=port)
    create_topic(bootstrap, "restart")
    start_infermon("logger", *args, spool_dir=spool)
    messages = wait_for_events(bootstrap, "restart", 50, timeout_s=60)
    assert_every_call_logged_once_or_duplicated_by_id(
        messages, {f"before-exit-{n}".encode() for n in range(25)}
    )


def test_an_event_above_the_producers_limit_is_cut_and_delivered_with_its_size(
    start_infermon: StartInfermon,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    toy_model_server: ToyModelServer,
) -> None:
    topic = new_topic()
    logger = start_infermon(
        "logger", "--model-url", toy_model_server.url, "--kafka-bootstrap", kafka_bootstrap,
        "--topic", topic, "--max-payload-bytes", "0",
    )  # fmt: skip
    echo(logger.url, BIG_BODY, "big")
    echo(logger.url, b"small", "small")
    logged = logged_events(kafka_bootstrap, topic, 4)
    big = [event for event in logged if event.key == b"big"]
    assert len(big) == 2, "the big call's request and response events are both delivered"
    for event in big:
        assert event.ext("truncated") == "true"
        assert int(event.ext("originalbytes") or 0) > len(BIG_BODY)
        assert 0 < len(event.value) < PRODUCER_LIMIT_BYTES
        assert BIG_BODY.startswith(event.value), "the payload is cut, not changed"
    small = [event for event in logged if event.key == b"small"]
    assert [event.value for event in small] == [b"small", b"small"]
    assert all(event.ext("truncated") is None for event in small)
    metrics = logger.metrics()
    assert metrics["infermon_events_cut_total"] == 2
    assert not any(name.startswith("infermon_events_dropped") for name in metrics)


def test_attributes_too_large_for_the_producer_are_cut_with_a_marker(
    start_infermon: StartInfermon,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    toy_model_server: ToyModelServer,
) -> None:
    topic = new_topic()
    # librdkafka's smallest message.max.bytes: a path and a header of 3000 bytes cannot fit.
    logger = start_infermon(
        "logger", "--model-url", toy_model_server.url, "--kafka-bootstrap", kafka_bootstrap,
        "--topic", topic, "--kafka-config", "message.max.bytes=1000",
        "--metadata-headers", "x-big",
    )  # fmt: skip
    long_path = "/echo/" + "p" * 3000
    response = httpx.post(
        logger.url + long_path,
        content=b"body",
        headers={"x-big": "h" * 3000, "X-Request-Id": "long"},
    )
    assert response.status_code == 404
    logged = logged_events(kafka_bootstrap, topic, 2)
    for event in logged:
        assert event.ext("truncated") == "true"
        assert int(event.ext("originalbytes") or 0) > 6000
        assert sum(len(name) + len(value) for name, value in event.headers.items()) < 1000
        path = event.ext("path") or ""
        assert path.startswith("/echo/ppp") and path.endswith("[cut from 3006 bytes]")
        assert (event.ext("metadata") or "").endswith("bytes]")
        assert event.id == "long", "short attributes are kept whole"


def test_an_event_the_producer_refuses_from_the_spool_is_quarantined_and_replay_goes_on(
    start_infermon: StartInfermon,
    tansu_factory: TansuFactory,
    toy_model_server: ToyModelServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    spool = tmp_path / "spool"
    args = ("--model-url", toy_model_server.url, "--kafka-bootstrap", bootstrap,
            "--topic", "poison", "--max-payload-bytes", "0")  # fmt: skip
    # An earlier run that allowed larger records (or an earlier version) spooled a big event.
    first = start_unready(
        start_infermon, *args, "--kafka-config", "message.max.bytes=4000000", spool=spool
    )
    make_calls(first.url, 5, "before")
    echo(first.url, BIG_BODY, "big")
    make_calls(first.url, 5, "after")
    wait_for_readiness(first, False, 10)
    assert first.terminate() == 0

    tansu_factory(port=port)
    create_topic(bootstrap, "poison")
    second = start_unready(start_infermon, *args, spool=spool)
    metrics = second.wait_for_metrics(
        lambda metrics: (
            metrics.get("infermon_spool_pending_events", 1) == 0
            and metrics.get("infermon_events_replayed_total", 0) >= 20
        ),
        30,
        "the spool replayed past the big event",
    )
    assert metrics['infermon_events_quarantined_total{reason="MSG_SIZE_TOO_LARGE"}'] == 2
    ids = {f"{prefix}-{n}".encode() for prefix in ("before", "after") for n in range(5)}
    messages = wait_for_events(bootstrap, "poison", 20, timeout_s=30)
    assert_every_call_logged_once_or_duplicated_by_id(messages, ids)
    quarantined = list(read_quarantine(spool))
    assert [entry.record.key for entry in quarantined] == [b"big", b"big"]
    assert all("MSG_SIZE_TOO_LARGE" in entry.reason for entry in quarantined)
    assert all(entry.record.value == BIG_BODY for entry in quarantined), "kept whole"
    wait_for_readiness(second, True, 10)

    assert second.terminate() == 0
    third = start_infermon("logger", *args, spool_dir=spool)
    make_calls(third.url, 1, "later")
    messages = wait_for_events(bootstrap, "poison", 22, timeout_s=30)
    assert_every_call_logged_once_or_duplicated_by_id(messages, ids | {b"later-0"})
    assert len(list(read_quarantine(spool))) == 2, "a quarantined event is not sent again"


def test_readiness_is_false_while_kafka_is_unreachable_and_true_again_after(
    start_infermon: StartInfermon,
    tansu_factory: TansuFactory,
    toy_model_server: ToyModelServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = tansu_factory(port=port)
    create_topic(bootstrap, "ready")
    logger = start_infermon(
        "logger", "--model-url", toy_model_server.url, "--kafka-bootstrap", bootstrap,
        "--topic", "ready", "--delivery-timeout-ms", "3000", "--max-payload-bytes", "0",
        spool_dir=tmp_path / "spool",
    )  # fmt: skip
    make_calls(logger.url, 3, "up")
    broker.stop()
    make_calls(logger.url, 3, "down")
    wait_for_readiness(logger, False, 20)
    # Unready, the sink spools every event: this one is cut before it is written there.
    echo(logger.url, BIG_BODY, "big-down")
    logger.wait_for_metrics(
        lambda metrics: metrics.get("infermon_events_cut_total", 0) == 2, 10, "the cut"
    )
    assert readiness(logger) is False
    tansu_factory(port=port)
    create_topic(bootstrap, "ready")
    wait_for_readiness(logger, True, 60)
    make_calls(logger.url, 3, "again")
    logger.wait_for_metrics(
        lambda metrics: metrics.get("infermon_spool_pending_events", 1) == 0, 30, "replay"
    )
    # The new broker is empty: what it holds came from the spool or was sent after it was back.
    messages = wait_for_events(bootstrap, "ready", 14, timeout_s=30)
    keys = {message.key() for message in messages}
    assert {f"{p}-{n}".encode() for p in ("down", "again") for n in range(3)} <= keys
    big = [as_logged(message) for message in messages if message.key() == b"big-down"]
    assert {event.type for event in big} == {
        "org.kubeflow.serving.inference.request",
        "org.kubeflow.serving.inference.response",
    }
    for event in big:
        assert event.ext("truncated") == "true"
        assert int(event.ext("originalbytes") or 0) > len(BIG_BODY)
        assert BIG_BODY.startswith(event.value) and len(event.value) < PRODUCER_LIMIT_BYTES
