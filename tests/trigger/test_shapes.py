"""Every input shape, 1,000 times each, answered by KServe's own model server through the trigger.

Each trigger reads four shapes mixed on one topic: a binary and a structured CloudEvent (one
relying on the --protocol flag, one overriding it with its protocol extension), a raw JSON
body, and a Knative KafkaSource event. Every answer is matched to its input by id and key and
checked against what the model must say; every call is on the log topic too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infermon import events
from tests.fixtures.broker import create_topic, read_all, read_topic
from tests.fixtures.events_on_kafka import LoggedEvent, as_logged
from tests.fixtures.factories import TopicFactory
from tests.fixtures.trigger import Input, KServeNotificationServer, TriggerProcess, produce_inputs

pytestmark = pytest.mark.slow

RECORDS_PER_SHAPE = 1000
PARTITIONS = 3
# KafkaSource ids name the partition of the topic it read (here an imaginary MinIO topic);
# partition 7 keeps them apart from the raw inputs' ids, which name the input topic's.
MINIO_PARTITION = 7


@dataclass(frozen=True)
class Shape:
    name: str
    make: Callable[[int], Input]
    answer: Callable[[int], Any]  # what the model must answer to input number n
    request_id: Callable[[int], str | None]  # None: partition:P/offset:O of the input itself


def ce_headers(event_id: str, **extensions: str) -> list[tuple[str, bytes]]:
    headers = [
        ("ce_specversion", b"1.0"), ("ce_id", event_id.encode()), ("ce_source", b"/tests"),
        ("ce_type", events.KSERVE_REQUEST_TYPE.encode()), ("content-type", b"application/json"),
    ]  # fmt: skip
    return headers + [(f"ce_{name}", value.encode()) for name, value in extensions.items()]


def structured(event_id: str, data: object, **extensions: str) -> Input:
    envelope = {
        "specversion": "1.0", "id": event_id, "source": "/tests", "type": "com.example.scored",
        "datacontenttype": "application/json", "data": data, **extensions,
    }  # fmt: skip
    return Input(
        key=event_id.encode(),
        value=json.dumps(envelope).encode(),
        headers=[("content-type", b"application/cloudevents+json; charset=UTF-8")],
    )


def kafkasource(offset: int, value: bytes, key: bytes) -> Input:
    """What a Knative KafkaSource makes of a record that is not a CloudEvent: type
    dev.knative.kafka.event, id partition:<p>/offset:<o>, the record key as `key`."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"partition:{MINIO_PARTITION}/offset:{offset}".encode()),
        ("ce_source", b"/apis/v1/namespaces/default/kafkasources/minio-source#mnist"),
        ("ce_type", b"dev.knative.kafka.event"),
        ("ce_subject", f"partition:{MINIO_PARTITION}#{offset}".encode()),
        ("ce_time", b"2026-01-02T03:04:05.123Z"),
        ("ce_key", key), ("ce_partitionkey", key), ("content-type", b"application/json"),
    ]  # fmt: skip
    return Input(key=key, value=value, headers=headers)


def minio_notification(n: int) -> dict[str, Any]:
    """A MinIO object-created notification as it lands on Kafka."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"mnist/{n}.png",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
            "eventTime": "2026-01-02T03:04:05.000Z", "userIdentity": {"principalId": "minio"},
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "Config",
                "bucket": {"name": "mnist", "arn": "arn:aws:s3:::mnist"},
                "object": {"key": f"{n}.png", "size": 300 + n, "contentType": "image/png"},
            },
        }],
    }  # fmt: skip


def v2_body(data: list[float], shape: list[int]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP64", "data": data}]}


SHAPES = {
    "v1": [
        Shape(
            "binary CloudEvent, v1 by the flag",
            lambda n: Input(f"bin-{n}".encode(), json.dumps({"instances": [[n, 1], [2, 3]]})
                            .encode(), ce_headers(f"bin-{n}", modelname="toy")),
            lambda n: {"predictions": [n + 1, 5]}, lambda n: f"bin-{n}",
        ),
        Shape(
            "structured CloudEvent, v2 by its extension",
            lambda n: structured(f"str-{n}", v2_body([n, 1, 2], [1, 3]), protocol="v2"),
            lambda n: [n + 3.0], lambda n: f"str-{n}",
        ),
        Shape(
            "raw v1 body",
            lambda n: Input(f"raw-{n}".encode(), json.dumps({"instances": [[n, n]]}).encode(), []),
            lambda n: {"predictions": [2 * n]}, lambda n: None,
        ),
        Shape(
            "KafkaSource event of a MinIO notification",
            lambda n: kafkasource(n, json.dumps(minio_notification(n)).encode(),
                                  f"mnist/{n}.png".encode()),
            lambda n: {"predictions": [{"event": "s3:ObjectCreated:Put", "bucket": "mnist",
                                        "key": f"{n}.png", "size": 300 + n}]},
            lambda n: f"partition:{MINIO_PARTITION}/offset:{n}",
        ),
    ],
    "v2": [
        Shape(
            "binary CloudEvent, v2 by the flag",
            lambda n: Input(f"bin-{n}".encode(), json.dumps(v2_body([n, 0, 1, 1], [2, 2]))
                            .encode(), ce_headers(f"bin-{n}", modelname="toy")),
            lambda n: [float(n), 2.0], lambda n: f"bin-{n}",
        ),
        Shape(
            "structured CloudEvent, v1 by its extension",
            lambda n: structured(f"str-{n}", {"instances": [[n]]}, protocol="v1"),
            lambda n: {"predictions": [n]}, lambda n: f"str-{n}",
        ),
        Shape(
            "raw v2 body",
            lambda n: Input(f"raw-{n}".encode(), json.dumps(v2_body([n, 5], [1, 2])).encode(), []),
            lambda n: [n + 5.0], lambda n: None,
        ),
        Shape(
            "KafkaSource event of a v2 body",
            lambda n: kafkasource(n, json.dumps(v2_body([n], [1, 1])).encode(), f"ks-{n}".encode()),
            lambda n: [float(n)], lambda n: f"partition:{MINIO_PARTITION}/offset:{n}",
        ),
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def kserve_server() -> Iterator[KServeNotificationServer]:
    with KServeNotificationServer() as server:
        yield server


def model_answer(answer: LoggedEvent) -> Any:
    body = answer.json()
    assert isinstance(body, dict)
    if "outputs" in body:  # v2: the model's one output tensor
        return body["outputs"][0]["data"]
    return body


@pytest.mark.parametrize("protocol", ["v1", "v2"], ids=lambda p: f"flag-{p}")
def test_every_input_shape_gets_its_correct_answer(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    kserve_server: KServeNotificationServer,
    tmp_path: Path,
    protocol: str,
) -> None:
    shapes = SHAPES[protocol]
    input_topic, output_topic, log_topic = (new_topic(PARTITIONS) for _ in range(3))
    create_topic(kafka_bootstrap, f"{input_topic}.dlq")
    # Interleaved, so that the shapes share the trigger's concurrency.
    inputs = [(shape, n) for n in range(RECORDS_PER_SHAPE) for shape in shapes]
    queued = produce_inputs(kafka_bootstrap, input_topic, [shape.make(n) for shape, n in inputs])
    expected: dict[tuple[str, bytes | None], tuple[Shape, int]] = {}
    for (shape, n), landed in zip(inputs, queued, strict=True):
        request_id = shape.request_id(n) or f"partition:{landed.partition}/offset:{landed.offset}"
        expected[(request_id, landed.input.key)] = (shape, n)
    assert len(expected) == len(inputs), "inputs are told apart by id and key"

    with TriggerProcess(
        kafka_bootstrap, input_topic, output_topic, kserve_server.url,
        "--protocol", protocol, "--model-name", kserve_server.model_name,
        "--log-topic", log_topic, spool_dir=tmp_path / "spool",
    ) as trigger:  # fmt: skip
        answers = [as_logged(m) for m in read_topic(kafka_bootstrap, output_topic, len(inputs), 90)]
        assert len(answers) == len(inputs), trigger.log_tail()
        dead_letters = read_all(kafka_bootstrap, f"{input_topic}.dlq", idle_s=0.5)

    assert not dead_letters, [dict(m.headers() or []) for m in dead_letters[:3]]
    assert len(read_all(kafka_bootstrap, output_topic, idle_s=0.5)) == len(inputs), "no extras"
    seen: Counter[str] = Counter()
    for answer in answers:
        shape, n = expected[(answer.id, answer.key)]  # matched by id and key
        seen[shape.name] += 1
        assert answer.type == events.KSERVE_RESPONSE_TYPE
        assert answer.ext("statuscode") == "200", answer.value
        assert float(answer.ext("latencyms") or "nan") > 0
        assert model_answer(answer) == shape.answer(n), shape.name
    assert seen == {shape.name: RECORDS_PER_SHAPE for shape in shapes}

    logged = [as_logged(m) for m in read_topic(kafka_bootstrap, log_topic, 2 * len(inputs), 30)]
    per_type = Counter(event.type for event in logged)
    assert per_type == {events.KSERVE_REQUEST_TYPE: len(inputs),
                        events.KSERVE_RESPONSE_TYPE: len(inputs)}  # fmt: skip
    assert {event.id for event in logged} == {request_id for request_id, _ in expected}
    for event in logged:
        assert event.ext("method") == "POST"
        assert event.ext("modelname") == "toy"
        assert event.key == event.id.encode(), "keyed by request id, as the sidecar does"
