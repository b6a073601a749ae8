"""The sidecar against a real broker and the in-repo model server: two events per call."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from infermon import events
from logger.sidecar import RESERVED_FILE_DESCRIPTORS, connection_cap
from tests.fixtures.broker import read_all
from tests.fixtures.events_on_kafka import by_type, logged_events
from tests.fixtures.factories import TopicFactory
from tests.fixtures.infermon_process import InfermonProcess
from tests.fixtures.kcat import kcat_environment
from tests.fixtures.processes import free_port
from tests.fixtures.toy_model_server import ToyModelServer
from tests.logger.conftest import StartInfermon

KSERVE_EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint", "metadata")


ToyLogger = Callable[..., tuple[InfermonProcess, str]]


@pytest.fixture
def toy_logger(
    start_infermon: StartInfermon,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    toy_model_server: ToyModelServer,
) -> ToyLogger:
    """`toy_logger(*flags, model_url=None)`: a logger in front of the toy model server, logging
    to a new topic; returns (logger, topic)."""

    def start(*extra: str, model_url: str | None = None) -> tuple[InfermonProcess, str]:
        topic = new_topic()
        logger = start_infermon(
            "logger",
            "--model-url", model_url or toy_model_server.url, "--kafka-bootstrap",
            kafka_bootstrap, "--topic", topic, "--inference-service", "iris",
            "--namespace", "prod", *extra,
        )  # fmt: skip
        return logger, topic

    return start


def test_v1_call_gives_request_and_response_events_attribute_for_attribute(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger(
        "--metadata-headers", "x-request-id,X-B3-TRACEID", "--annotations", "team=fraud",
    )  # fmt: skip
    body = b'{"instances": [[1, 2], [3, 4]]}'
    response = httpx.post(
        f"{logger.url}/v1/models/iris:predict",
        content=body,
        headers={"Content-Type": "application/json", "x-request-id": "req-1",
                 "X-B3-Traceid": "trace-9"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {"predictions": [3.0, 7.0]}

    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    request, reply = logged["request"], logged["response"]
    assert request.type == events.KSERVE_REQUEST_TYPE
    assert reply.type == events.KSERVE_RESPONSE_TYPE
    for event in (request, reply):
        assert event.id == "req-1"
        assert event.key == b"req-1"
        assert event.ext("requestid") == "req-1"
        assert event.event.get_source() == f"http://localhost:{logger.port}/"
        assert event.event.get_specversion() == "1.0"
        assert event.ext("inferenceservicename") == "iris"
        assert event.ext("namespace") == "prod"
        assert event.ext("component") == "predictor"
        assert event.ext("endpoint") == ""
        assert json.loads(event.ext("metadata") or "") == {
            "X-Request-Id": ["req-1"], "X-B3-Traceid": ["trace-9"],
        }  # fmt: skip
        assert json.loads(event.ext("annotations") or "") == {"team": "fraud"}
        assert event.ext("method") == "POST"
        assert event.ext("path") == "/v1/models/iris:predict"
        assert event.ext("protocol") == "v1"
        assert event.ext("modelname") == "iris"
        assert event.ext("truncated") is None
        assert datetime.fromisoformat(event.ext("recordedtime") or "")
        assert event.headers["content-type"].startswith(b"application/json")
        assert b"ce_datacontenttype" not in event.headers
    assert request.value == body
    assert json.loads(reply.value) == {"predictions": [3.0, 7.0]}
    assert reply.ext("statuscode") == "200"
    assert 0 < float(reply.ext("latencyms") or 0) < 5000
    assert request.ext("statuscode") is None
    assert request.event.get_time() <= reply.event.get_time()


def test_events_are_readable_by_the_cloudevents_sdk(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger()
    httpx.post(f"{logger.url}/v1/models/m:predict", json={"instances": [[1]]})
    for logged in logged_events(kafka_bootstrap, topic, 2):
        message = ce_kafka.KafkaMessage(headers=logged.headers, key=logged.key, value=logged.value)
        sdk_event = ce_kafka.from_binary(message, JSONFormat())
        assert sdk_event.get_id() == logged.id
        assert sdk_event.get_type() == logged.type
        assert sdk_event.get_extension("modelname") == "m"


def test_v2_call_gives_two_events_with_protocol_and_model(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger()
    request_body = {
        "id": "v2-call",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}],
    }
    response = httpx.post(f"{logger.url}/v2/models/iris/infer", json=request_body)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    for event in logged.values():
        assert event.id == request_id
        assert event.ext("protocol") == "v2"
        assert event.ext("modelname") == "iris"
        assert event.ext("path") == "/v2/models/iris/infer"
    assert json.loads(logged["request"].value) == request_body
    outputs = json.loads(logged["response"].value)["outputs"]
    assert outputs[0]["data"] == [3.0, 7.0]


def test_ce_id_is_used_when_no_request_id_is_sent(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger()
    response = httpx.post(
        f"{logger.url}/v1/models/m:predict", json={"instances": [[1]]},
        headers={"Ce-Id": "partition:0/offset:7"},
    )  # fmt: skip
    assert response.headers["x-request-id"] == "partition:0/offset:7"
    assert {event.id for event in logged_events(kafka_bootstrap, topic, 2)} == {
        "partition:0/offset:7"
    }


@pytest.mark.parametrize(("mode", "expected_types"), [("request", {"request"}),
                                                       ("response", {"response"})])  # fmt: skip
def test_mode_selects_which_events_are_logged(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
    mode: str,
    expected_types: set[str],
) -> None:
    logger, topic = toy_logger("--mode", mode)
    for _ in range(3):
        assert httpx.post(f"{logger.url}/v1/models/m:predict", json={"instances": [[1]]}).is_success
    logged = logged_events(kafka_bootstrap, topic, 3)
    assert {event.type.rsplit(".", 1)[-1] for event in logged} == expected_types


def test_sampling_keeps_request_and_response_together(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger("--sample-rate", "0.5")
    calls = 60
    with httpx.Client() as client:
        for _ in range(calls):
            client.post(f"{logger.url}/v1/models/m:predict", json={"instances": [[1]]})
    logged = read_all(kafka_bootstrap, topic, idle_s=1.5)
    per_id: dict[bytes, int] = {}
    for message in logged:
        per_id[message.key()] = per_id.get(message.key(), 0) + 1
    assert set(per_id.values()) == {2}, "a sampled call must log both of its events"
    # Binomial(60, 0.5): outside 10..50 has probability below 1e-7.
    assert 10 <= len(per_id) <= 50


def test_redaction_hides_values_in_events_but_not_from_the_client(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger(
        "--redact", "$.instances[*].ssn,$.predictions",
    )  # fmt: skip
    body = {"instances": [{"ssn": 123456789, "age": 40}, {"ssn": 987654321, "age": 30}]}
    response = httpx.post(f"{logger.url}/v1/models/m:predict", json=body)
    assert response.json() == {"predictions": [123456829.0, 987654351.0]}
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    assert logged["request"].json() == {
        "instances": [{"ssn": "[REDACTED]", "age": 40}, {"ssn": "[REDACTED]", "age": 30}]
    }
    assert logged["response"].json() == {"predictions": "[REDACTED]"}


def test_size_cap_truncates_events_not_the_response(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger("--max-payload-bytes", "100")
    body = bytes(range(256)) * 40
    response = httpx.post(
        f"{logger.url}/echo", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert response.content == body
    for event in logged_events(kafka_bootstrap, topic, 2):
        assert event.value == body[:100]
        assert event.ext("truncated") == "true"
        assert event.ext("protocol") == "other"


def test_large_bodies_stream_through_unchanged_both_ways(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger()
    upload = bytes(range(256)) * (8 * 1024 * 1024 // 256)

    def chunks():
        for start in range(0, len(upload), 65536):
            yield upload[start : start + 65536]

    echoed = httpx.post(f"{logger.url}/echo", content=chunks(), timeout=120)
    assert echoed.status_code == 200
    assert echoed.content == upload
    streamed = httpx.get(f"{logger.url}/stream?chunks=100&size=50000", timeout=120)
    assert streamed.content == b"x" * 5_000_000
    logged = logged_events(kafka_bootstrap, topic, 4)
    get_request = next(e for e in logged if e.ext("method") == "GET" and "request" in e.type)
    assert get_request.value == b""
    assert get_request.ext("truncated") is None
    capped = [event for event in logged if event is not get_request]
    assert [event.ext("truncated") for event in capped] == ["true"] * 3
    assert [len(event.value) for event in capped] == [900_000] * 3
    echo_request = next(e for e in capped if e.ext("method") == "POST" and "request" in e.type)
    assert echo_request.value == upload[:900_000]


def test_non_200_responses_are_logged_with_their_status(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    logger, topic = toy_logger()
    failed = httpx.post(f"{logger.url}/v1/models/fail:predict", json={"instances": [[1]]})
    assert failed.status_code == 500
    assert failed.json() == {"error": "model failed"}
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    assert logged["response"].ext("statuscode") == "500"
    assert logged["response"].json() == {"error": "model failed"}


def test_unreachable_model_server_gives_502_and_is_logged(
    toy_logger: ToyLogger, kafka_bootstrap: str
) -> None:
    logger, topic = toy_logger(model_url=f"http://127.0.0.1:{free_port()}")
    response = httpx.post(f"{logger.url}/v1/models/m:predict", json={"instances": [[1]]})
    assert response.status_code == 502
    assert "unreachable" in response.json()["error"]
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    assert logged["response"].ext("statuscode") == "502"
    assert logged["request"].json() == {"instances": [[1]]}


def test_a_model_server_that_never_answers_gives_504_after_the_timeout_and_is_logged(
    toy_logger: ToyLogger, kafka_bootstrap: str
) -> None:
    upstream = _StalledUpstream()
    try:
        logger, topic = toy_logger("--upstream-timeout-s", "0.4", model_url=upstream.url)
        started = time.monotonic()
        response = httpx.post(
            f"{logger.url}/v1/models/m:predict", json={"instances": [[1]]}, timeout=10
        )
        waited_s = time.monotonic() - started
    finally:
        upstream.close()
    assert response.status_code == 504
    assert "did not answer in time" in response.json()["error"]
    # The sweep looks every quarter of the timeout: answered between 0.4 and 0.5 s, plus slack.
    assert 0.4 <= waited_s < 1.5, waited_s
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    assert logged["response"].ext("statuscode") == "504"
    assert logged["response"].ext("requestid") == response.headers["x-request-id"]


def test_calls_and_events_are_counted_on_the_admin_port(
    toy_logger: ToyLogger, kafka_bootstrap: str
) -> None:
    logger, topic = toy_logger()
    for _ in range(3):
        answer = httpx.post(f"{logger.url}/v1/models/iris:predict", json={"instances": [[1, 2]]})
        assert answer.status_code == 200
    failed = httpx.post(f"{logger.url}/v1/models/fail:predict", json={"instances": [[1]]})
    assert failed.status_code == 500
    logged_events(kafka_bootstrap, topic, 8)
    metrics = logger.wait_for_metrics(
        lambda m: m.get("infermon_events_produced_total") == 8, 10, "8 acknowledged events"
    )
    assert metrics['infermon_proxy_requests_total{code="200"}'] == 3
    assert metrics['infermon_proxy_requests_total{code="500"}'] == 1
    assert metrics["infermon_proxy_latency_seconds_count"] == 4
    assert metrics['infermon_proxy_latency_seconds_bucket{le="+Inf"}'] == 4
    assert 0 < metrics["infermon_proxy_latency_seconds_sum"] < 4 * 5
    assert metrics["infermon_produce_latency_seconds_count"] == 8


def test_kcat_reads_the_events(
    toy_logger: ToyLogger,
    kafka_bootstrap: str,
) -> None:
    found = kcat_environment(kafka_bootstrap)
    if isinstance(found, str):
        pytest.skip(found)
    kcat, kcat_env = found
    logger, topic = toy_logger()
    httpx.post(
        f"{logger.url}/v1/models/m:predict", json={"instances": [[5]]},
        headers={"X-Request-Id": "kcat-1"},
    )  # fmt: skip
    logged_events(kafka_bootstrap, topic, 2)  # both are there before kcat looks
    output = subprocess.run(
        [kcat, "-C", "-b", kafka_bootstrap, "-t", topic, "-J", "-e", "-o", "beginning", "-q"],
        capture_output=True, text=True, timeout=60, check=True, env=kcat_env,
    ).stdout  # fmt: skip
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(records) == 2
    for record in records:
        headers = dict(zip(record["headers"][::2], record["headers"][1::2], strict=True))
        assert record["key"] == "kcat-1"
        assert headers["ce_id"] == "kcat-1"
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] in (events.KSERVE_REQUEST_TYPE, events.KSERVE_RESPONSE_TYPE)
        assert all(f"ce_{name}" in headers for name in KSERVE_EXTENSIONS)
    payloads = [json.loads(record["payload"]) for record in records]
    assert {"instances": [[5]]} in payloads


class _StalledUpstream:
    """A model server that never reads, with a small receive window, so that whatever the
    logger writes to it piles up on the logger's side."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        self._closing.set()
        self._acceptor.join()
        for connection in [*self.accepted, self.listener]:
            connection.close()


def _rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_model_server_that_stops_reading_stops_the_upload_not_memory(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """The upload's bytes must wait in the client's socket, not in the logger."""
    upstream = _StalledUpstream()
    logger = start_infermon(
        "logger", "--model-url", upstream.url, "--kafka-bootstrap", kafka_bootstrap,
        "--topic", new_topic(), "--upstream-timeout-s", "30",
    )  # fmt: skip
    body_bytes = 256 * 1024 * 1024
    client = socket.create_connection(("127.0.0.1", logger.port))
    client.settimeout(0.5)
    head = (f"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {body_bytes}\r\n\r\n").encode()  # fmt: skip
    rss_before = _rss_bytes(logger.process.pid)
    sent = 0
    try:
        client.sendall(head)
        chunk = b"x" * (1024 * 1024)
        deadline = time.monotonic() + 5
        while sent < body_bytes and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                sent += client.send(chunk)
        grown = _rss_bytes(logger.process.pid) - rss_before
    finally:
        client.close()
        upstream.close()
    assert sent < body_bytes / 4, f"the logger read {sent} bytes it could not forward"
    assert grown < 64 * 1024 * 1024, f"the logger grew by {grown} bytes"


def test_the_connection_cap_leaves_file_descriptors_for_everything_else() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(100) == 100
    assert connection_cap(hard) == hard - RESERVED_FILE_DESCRIPTORS
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard  # the soft limit was raised
