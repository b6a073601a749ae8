"""The trigger's parts on their own: reading inputs, ordering, offsets, answers, the HTTP client."""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import uvloop
from confluent_kafka import Message

from infermon import events
from tests.fixtures.processes import REPO_ROOT, free_port
from tests.fixtures.toy_model_server import ToyModelServer
from trigger import inputs, keyed_queue, offsets, payload_event_builder
from trigger.inputs import InvalidInputError, read_request
from trigger.keyed_queue import KeyedQueue
from trigger.model_client import (
    ModelAnswer,
    ModelClient,
    ModelTimeoutError,
    ModelUnreachableError,
)
from trigger.offsets import PartitionOffsets
from trigger.outputs import AnswerEncoder, Failure, Outcome, call_record, dead_letter_headers
from trigger.settings import TriggerSettings

T = TypeVar("T")
V1_BODY = b'{"instances": [[1, 2]]}'
V2_BODY = b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}'
S3_NOTIFICATION = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "mnist/0.png",
    "Records": [{"s3": {"bucket": {"name": "mnist"}, "object": {"key": "0.png", "size": 324}}}],
}


def ce_headers(event_id: str = "req-1", **extensions: str) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", event_id.encode()), ("ce_source", b"/test"),
        ("ce_type", events.KSERVE_REQUEST_TYPE.encode()), ("content-type", b"application/json"),
    ]  # fmt: skip
    headers += [(f"ce_{name}", value.encode()) for name, value in extensions.items()]
    return headers


def knative_headers(partition: int, offset: int) -> list[tuple[str, bytes | None]]:
    return [
        ("ce_specversion", b"1.0"), ("ce_id", f"partition:{partition}/offset:{offset}".encode()),
        ("ce_source", b"/apis/v1/namespaces/default/kafkasources/minio#mnist"),
        ("ce_type", b"dev.knative.kafka.event"),
        ("ce_subject", f"partition:{partition}#{offset}".encode()),
        ("ce_key", b"mnist/0.png"), ("content-type", b"application/json"),
    ]  # fmt: skip


# --- reading inputs ---
def test_binary_cloudevent_names_model_and_protocol_in_its_extensions() -> None:
    request = read_request(ce_headers(modelname="iris", protocol="v2"), V2_BODY, 0, 5, "x", "v1")
    assert (request.id, request.model_name, request.protocol) == ("req-1", "iris", "v2")
    assert request.path == "/v2/models/iris/infer"
    assert request.body == V2_BODY
    assert request.content_type == "application/json"


def test_binary_cloudevent_without_extensions_uses_the_flags() -> None:
    request = read_request(ce_headers(), V1_BODY, 0, 5, "flagged", "v1")
    assert (request.model_name, request.path) == ("flagged", "/v1/models/flagged:predict")


def test_structured_cloudevent_sends_its_data() -> None:
    envelope = {
        "specversion": "1.0", "id": "s-1", "source": "/test", "type": "anything",
        "datacontenttype": "application/json", "modelname": "iris",
        "data": {"instances": [[1, 2]]},
    }  # fmt: skip
    headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    request = read_request(headers, json.dumps(envelope).encode(), 0, 5, "", "v1")
    assert (request.id, request.path) == ("s-1", "/v1/models/iris:predict")
    assert json.loads(request.body) == {"instances": [[1, 2]]}


def test_raw_body_gets_kafkasource_style_id_stable_across_redeliveries() -> None:
    request = read_request(None, V2_BODY, 3, 42, "iris", "v2")
    assert request.id == "partition:3/offset:42"
    assert (request.path, request.body) == ("/v2/models/iris/infer", V2_BODY)


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_kafkasource_s3_notification_is_the_v1_instance(protocol: inputs.Protocol) -> None:
    value = json.dumps(S3_NOTIFICATION).encode()
    request = read_request(knative_headers(0, 7), value, 9, 9, "mnist", protocol)
    assert request.id == "partition:0/offset:7", "KafkaSource's id, not ours"
    assert request.path == "/v1/models/mnist:predict"
    assert json.loads(request.body) == {"instances": [S3_NOTIFICATION]}


def test_kafkasource_event_carrying_a_request_body_sends_it_as_it_is() -> None:
    request = read_request(knative_headers(0, 7), V2_BODY, 9, 9, "iris", "v2")
    assert (request.path, request.body) == ("/v2/models/iris/infer", V2_BODY)


def test_model_name_is_quoted_in_the_path() -> None:
    request = read_request(ce_headers(modelname="a/b c"), V1_BODY, 0, 0, "", "v1")
    assert request.path == "/v1/models/a%2Fb%20c:predict"


INVALID_INPUTS = {
    "raw bytes, not JSON": (None, b"\x00garbage", "not JSON"),
    "raw JSON that is not an object": (None, b"[1, 2]", "JSON object"),
    "incomplete binary event": ([("ce_id", b"x")], V1_BODY, "missing required attribute"),
    "a response event": (
        [*ce_headers()[:3], ("ce_type", events.KSERVE_RESPONSE_TYPE.encode())],
        V1_BODY,
        "answer",
    ),
    "protocol other": (ce_headers(protocol="other"), V1_BODY, "only v1 and v2"),
    "no model name anywhere": (ce_headers(), V1_BODY, "no model name"),
    "structured, not JSON": (
        [("content-type", b"application/cloudevents+json")],
        b"{nope",
        "not JSON",
    ),
    "KafkaSource data not JSON": (knative_headers(0, 1), b"\xff", "not JSON"),
}


@pytest.mark.parametrize(
    ("headers", "value", "reason"), INVALID_INPUTS.values(), ids=INVALID_INPUTS.keys()
)
def test_unusable_inputs_are_refused_with_a_reason(
    headers: list[tuple[str, bytes | None]] | None, value: bytes, reason: str
) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        read_request(headers, value, 0, 0, "", "v1")


# --- offsets and ordering ---
def test_commit_offset_is_the_end_of_the_finished_prefix_in_any_finishing_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        read = sorted(rng.sample(range(1000), 30))  # gaps, as compaction leaves them
        partition = PartitionOffsets("t", 0)
        for offset in read:
            partition.read(offset)
        finished: set[int] = set()
        for offset in rng.sample(read, len(read)):
            partition.finish(offset)
            finished.add(offset)
            prefix = 0
            while prefix < len(read) and read[prefix] in finished:
                prefix += 1
            expected = read[prefix - 1] + 1 if prefix else None
            assert partition.commit_offset == expected
        assert partition.open_records == 0


def test_keyed_queue_keeps_each_keys_order_while_keys_run_in_parallel() -> None:
    rng = random.Random(11)
    items = [(f"k{rng.randrange(8)}", number) for number in range(400)]
    started: dict[str, list[int]] = {}
    busy_now: set[str] = set()
    most_busy = 0

    async def scenario() -> None:
        nonlocal most_busy
        queue: KeyedQueue[int] = KeyedQueue()
        delays = {number: rng.random() / 1000 for _, number in items}

        async def worker() -> None:
            nonlocal most_busy
            while True:
                key, number = await queue.get()
                assert key not in busy_now, "two items of one key at once"
                busy_now.add(str(key))
                most_busy = max(most_busy, len(busy_now))
                started.setdefault(str(key), []).append(number)
                await asyncio.sleep(delays[number])
                busy_now.discard(str(key))
                queue.done(key)

        workers = [asyncio.create_task(worker()) for _ in range(6)]
        for key, number in items:
            queue.put(key, number)
            if number % 50 == 0:
                await asyncio.sleep(0)
        while sum(len(v) for v in started.values()) < len(items) or queue.busy:
            await asyncio.sleep(0.001)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    asyncio.run(scenario())
    for key, numbers in started.items():
        assert numbers == [n for k, n in items if k == key], f"{key} out of order"
    assert most_busy == 6, "keys ran in parallel up to the worker count"


def test_dropped_items_are_never_handed_out() -> None:
    async def scenario() -> list[tuple[object, int]]:
        queue: KeyedQueue[int] = KeyedQueue()
        for number in range(6):
            queue.put(number % 2, number)
        first = await queue.get()  # key 0, item 0: busy, not droppable
        assert sorted(queue.drop(lambda n: n in (2, 3, 5))) == [2, 3, 5]
        queue.put(1, 7)
        got = [first, await queue.get()]
        queue.done(0)
        got.append(await queue.get())
        return got

    assert asyncio.run(scenario()) == [(0, 0), (1, 1), (0, 4)]


# --- what the trigger writes ---
def outcome_for(answer: ModelAnswer | None, failure: Failure | None = None) -> Outcome:
    request = read_request(ce_headers(modelname="iris"), V1_BODY, 0, 0, "", "v1")
    return Outcome(request, datetime.now(UTC), 2, 0.0123, answer, failure)


def test_answer_is_a_kserve_response_event_with_the_input_id_and_key() -> None:
    answer = ModelAnswer(400, "application/json", b'{"error": "bad"}')
    record = AnswerEncoder("/infermon/trigger/g").encode(outcome_for(answer), answer, b"key-1")
    event = events.event_from_kafka(record.headers, record.value)
    assert record.key == b"key-1"
    assert (event.get_id(), event.get_type()) == ("req-1", events.KSERVE_RESPONSE_TYPE)
    assert event.get_source() == "/infermon/trigger/g"
    assert event.get_extension("statuscode") == "400"
    assert event.get_extension("latencyms") == "12.300"
    assert event.get_extension("attempts") == "2"
    assert event.get_extension("path") == "/v1/models/iris:predict"
    assert record.value == b'{"error": "bad"}'


def test_dead_letter_keeps_the_input_and_says_where_it_came_from_and_why() -> None:
    message = Message(
        topic="requests", partition=2, offset=41, key=b"k", value=b"v", headers=[("a", b"1")]
    )
    failure = Failure("inference", "timeout", "no answer within 1 s", attempts=4, status=504)
    headers = dict(dead_letter_headers(message, "group-1", failure))
    assert headers["a"] == b"1"
    assert headers["__connect.errors.topic"] == b"requests"
    assert headers["__connect.errors.partition"] == b"2"
    assert headers["__connect.errors.offset"] == b"41"
    assert headers["__connect.errors.connector.name"] == b"group-1"
    assert headers["__connect.errors.stage"] == b"inference"
    assert headers["__connect.errors.exception.class.name"] == b"timeout"
    assert headers["__connect.errors.exception.message"] == b"no answer within 1 s"
    assert headers["__connect.errors.attempts"] == b"4"


def test_logged_call_looks_like_a_proxied_one() -> None:
    settings = TriggerSettings(input_topic="in", output_topic="out", inference_service="iris-isvc")
    builder = payload_event_builder(settings)
    answer = ModelAnswer(200, "application/json", b'{"predictions": [3]}')
    call = call_record(outcome_for(answer), max_payload_bytes=0)
    request = events.event_from_kafka(*_headers_value(builder.request_event(call)))
    response = events.event_from_kafka(*_headers_value(builder.response_event(call)))
    assert request.get_id() == response.get_id() == "req-1"
    assert request.get_type() == events.KSERVE_REQUEST_TYPE
    assert request.get_extension("method") == "POST"
    assert request.get_extension("path") == "/v1/models/iris:predict"
    assert request.get_extension("protocol") == "v1"
    assert request.get_extension("modelname") == "iris"
    assert request.get_extension("inferenceservicename") == "iris-isvc"
    assert request.get_source() == "/infermon/trigger/infermon-trigger"
    assert response.get_extension("statuscode") == "200"
    assert events.payload_bytes(request) == V1_BODY


def test_logged_failure_carries_the_proxy_status_and_reason() -> None:
    failure = Failure("inference", "unreachable", "connection refused", 3, 502)
    call = call_record(outcome_for(None, failure), max_payload_bytes=4)
    assert call.status_code == 502
    assert call.request_body == V1_BODY[:4] and call.request_truncated
    assert call.response_truncated, "the error body is capped too"


def _headers_value(record: events.KafkaRecord) -> tuple[list[tuple[str, bytes]], bytes]:
    return record.headers, record.value


# --- settings ---
def test_log_topic_flag_sets_the_sinks_topic_and_empty_disables_logging() -> None:
    settings = TriggerSettings(input_topic="in", output_topic="out", log_topic="")
    assert settings.topic == "" and settings.dead_letter_topic == "in.dlq"
    assert TriggerSettings(input_topic="in", output_topic="out").topic == "infermon.payloads"


def test_environment_twins_work_for_the_trigger_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERMON_INPUT_TOPIC", "in")
    monkeypatch.setenv("INFERMON_OUTPUT_TOPIC", "out")
    monkeypatch.setenv("INFERMON_TIMEOUT", "2.5")
    monkeypatch.setenv("INFERMON_LOG_TOPIC", "logs")
    settings = TriggerSettings()
    assert (settings.timeout, settings.topic, settings.protocol) == (2.5, "logs", "v1")


@pytest.mark.parametrize(("output_topic", "log_topic"), [("in", "logs"), ("out", "in")])
def test_reading_a_topic_it_writes_is_refused(output_topic: str, log_topic: str) -> None:
    with pytest.raises(ValueError, match="must differ"):
        TriggerSettings(input_topic="in", output_topic=output_topic, log_topic=log_topic)


ISSUE_FLAGS = (
    "--kafka-bootstrap", "--input-topic", "--output-topic", "--group", "--model-url",
    "--model-name", "--protocol", "--concurrency", "--timeout", "--max-retries", "--log-topic",
)  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infermon.cli", "trigger", *args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


def test_help_lists_every_flag_and_their_defaults() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for flag in ISSUE_FLAGS:
        assert f"{flag} " in result.stdout, flag
    assert "--topic " not in result.stdout, "the log topic is --log-topic"
    assert "(default: infermon-trigger)" in result.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--input-topic", "in"), "missing --output-topic"),
        (("--input-topic", "in", "--output-topic", "in"), "must differ"),
        (("--input-topic", "a", "--output-topic", "b", "--protocol", "v3"), "protocol"),
        (("--input-topic", "a", "--output-topic", "b", "--model-url", "ftp://x"), "--model-url"),
    ],
    ids=["output topic missing", "same topic", "unknown protocol", "bad model url"],
)
def test_bad_configuration_exits_2_with_the_reason(args: tuple[str, ...], reason: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert reason in result.stderr


# --- the model client, over real HTTP ---
def run(calls: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return uvloop.run(calls())


def test_client_returns_any_status_with_its_body(toy_model_server: ToyModelServer) -> None:
    async def calls() -> list[ModelAnswer]:
        client = ModelClient(toy_model_server.url, timeout_s=5)
        answers = [
            await client.post("/v1/models/m:predict", V1_BODY, "application/json", "id-1"),
            await client.post("/v1/models/m:predict", b'{"instances": 1}', "application/json", ""),
            await client.post("/v1/models/fail:predict", V1_BODY, "application/json", "a\r\nb"),
        ]
        client.close()
        return answers

    ok, bad, failed = run(calls)
    assert (ok.status, json.loads(ok.body)) == (200, {"predictions": [3]})
    assert ok.content_type == "application/json"
    assert (bad.status, failed.status) == (400, 500)


def test_client_reports_an_unreachable_server() -> None:
    client = ModelClient(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    with pytest.raises(ModelUnreachableError, match="cannot connect"):
        run(lambda: client.post("/v1/models/m:predict", V1_BODY, "application/json", "x"))


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_client_gives_up_at_the_timeout(silent_server: str) -> None:
    client = ModelClient(silent_server, timeout_s=0.2)
    with pytest.raises(ModelTimeoutError, match=r"no answer within 0\.2 s"):
        run(lambda: client.post("/v1/models/m:predict", V1_BODY, "application/json", "x"))


def test_client_refuses_a_url_it_cannot_call() -> None:
    with pytest.raises(ValueError, match="--model-url"):
        ModelClient("https://example.com", timeout_s=1)


@pytest.mark.parametrize("module", [inputs, offsets, keyed_queue], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]
