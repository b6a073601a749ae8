"""Broker outages and shutdown: calls never fail, events are never lost."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.broker import create_topic, read_all
from tests.fixtures.factories import TansuFactory
from tests.fixtures.processes import free_port
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


def test_calls_succeed_while_kafka_is_down_and_every_event_arrives_later(
    start_infermon: StartInfermon,
    tansu_factory: TansuFactory,
    toy_model_server: ToyModelServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    logger = start_infermon(
        "logger", "--model-url", toy_model_server.url, "--kafka-bootstrap", bootstrap,
        "--topic", "outage", "--delivery-timeout-ms", "3000",
        spool_dir=tmp_path / "spool",
    )  # fmt: skip
    make_calls(logger.url, 40, "down")
    time.sleep(4)  # past the delivery timeout: in-memory events have moved to the spool
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
    first = start_infermon("logger", *args, spool_dir=spool)
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
