"""`infermon ingest`: what KServe's agent POSTs becomes the record the logger would write."""

from __future__ import annotations

import json

import httpx

from infermon import events
from tests.fixtures.factories import TopicFactory
from tests.fixtures.toy_model_server import ToyModelServer
from tests.logger.conftest import StartInfermon
from tests.logger.events_on_kafka import by_type, logged_events

# Exactly the header set KServe's agent sends for a request event (kserve-logger.md section 2):
# Go-canonical names, raw JSON in Ce-Metadata, nanosecond Ce-Time.
KSERVE_AGENT_HEADERS = {
    "Ce-Specversion": "1.0",
    "Ce-Id": "5b3a0a4e-6c2e-4c55-9a4b-0e1f3f7a2a11",
    "Ce-Type": events.KSERVE_REQUEST_TYPE,
    "Ce-Source": "http://localhost:9081/",
    "Ce-Time": "2026-11-29T07:01:02.123456789Z",
    "Ce-Inferenceservicename": "sklearn-iris",
    "Ce-Namespace": "default",
    "Ce-Component": "predictor",
    "Ce-Endpoint": "",
    "Ce-Metadata": '{"X-Request-Id":["abc"]}',
    "Ce-Recordedtime": "2026-11-29T07:01:02.223456789Z",
    "Content-Type": "application/json",
}


def _http_headers_like_kserve(kafka_headers: dict[str, bytes]) -> dict[str, str]:
    """The HTTP binary headers KServe's agent would send for the event in a Kafka record."""
    converted = {}
    for name, value in kafka_headers.items():
        if name == "content-type":
            converted["Content-Type"] = value.decode()
        else:
            converted["Ce-" + name.removeprefix("ce_").capitalize()] = value.decode()
    return converted


def test_agent_headers_become_the_record_the_logger_writes(
    start_infermon: StartInfermon,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    toy_model_server: ToyModelServer,
) -> None:
    logger_topic, ingest_topic = new_topic(), new_topic()
    logger = start_infermon(
        "logger", "--model-url", toy_model_server.url, "--kafka-bootstrap", kafka_bootstrap,
        "--topic", logger_topic, "--inference-service", "sklearn-iris",
    )  # fmt: skip
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", ingest_topic)
    httpx.post(f"{logger.url}/v1/models/sklearn-iris:predict", json={"instances": [[1, 2]]})
    from_logger = logged_events(kafka_bootstrap, logger_topic, 2)

    for event in from_logger:
        headers = _http_headers_like_kserve(event.headers)
        answer = httpx.post(f"{ingest.url}/", content=event.value, headers=headers)
        assert answer.status_code == 202, answer.text
    from_ingest = logged_events(kafka_bootstrap, ingest_topic, 2)
    for logged in from_logger:
        twin = next(e for e in from_ingest if e.type == logged.type)
        assert twin.key == logged.key
        assert twin.value == logged.value
        assert twin.headers == logged.headers


def test_exact_kserve_agent_request_is_written_in_binary_mode(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)
    body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
    answer = httpx.post(f"{ingest.url}/", content=body, headers=KSERVE_AGENT_HEADERS)
    assert answer.status_code == 202
    (logged,) = logged_events(kafka_bootstrap, topic, 1)
    assert logged.value == body
    assert logged.key == KSERVE_AGENT_HEADERS["Ce-Id"].encode()
    assert logged.headers["content-type"] == b"application/json"
    assert logged.headers["ce_metadata"] == b'{"X-Request-Id":["abc"]}'
    assert logged.headers["ce_endpoint"] == b""
    assert logged.headers["ce_inferenceservicename"] == b"sklearn-iris"
    assert logged.headers["ce_recordedtime"] == b"2026-11-29T07:01:02.223456789Z"
    assert logged.event.get_time().isoformat().startswith("2026-11-29T07:01:02.123456")


def test_structured_and_batched_events_are_accepted(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)

    def envelope(number: int) -> dict:
        return {
            "specversion": "1.0", "id": f"s-{number}", "source": "/test",
            "type": events.KSERVE_RESPONSE_TYPE, "datacontenttype": "application/json",
            "requestid": f"req-{number}", "data": {"predictions": [number]},
        }  # fmt: skip

    single = httpx.post(
        f"{ingest.url}/", content=json.dumps(envelope(0)),
        headers={"content-type": "application/cloudevents+json; charset=utf-8"},
    )  # fmt: skip
    batch = httpx.post(
        f"{ingest.url}/", content=json.dumps([envelope(1), envelope(2)]),
        headers={"content-type": "application/cloudevents-batch+json"},
    )  # fmt: skip
    assert (single.status_code, batch.status_code) == (202, 202)
    logged = sorted(logged_events(kafka_bootstrap, topic, 3), key=lambda e: e.id)
    assert [e.id for e in logged] == ["s-0", "s-1", "s-2"]
    assert [e.key for e in logged] == [b"req-0", b"req-1", b"req-2"]
    assert [e.json() for e in logged] == [{"predictions": [n]} for n in range(3)]
    assert all(e.headers["content-type"] == b"application/json" for e in logged)


def test_invalid_events_get_400_with_a_reason_and_oversized_bodies_413(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon(
        "ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic,
        "--max-body-bytes", "1000",
    )  # fmt: skip
    missing_id = {k: v for k, v in KSERVE_AGENT_HEADERS.items() if k != "Ce-Id"}
    answer = httpx.post(f"{ingest.url}/", content=b"{}", headers=missing_id)
    assert answer.status_code == 400
    assert "id" in answer.json()["error"]
    not_json = httpx.post(
        f"{ingest.url}/", content=b"{not json",
        headers={"content-type": "application/cloudevents+json"},
    )  # fmt: skip
    assert not_json.status_code == 400
    assert "JSON" in not_json.json()["error"]
    too_big = httpx.post(f"{ingest.url}/", content=b"x" * 2000, headers=KSERVE_AGENT_HEADERS)
    assert too_big.status_code == 413
    good = httpx.post(f"{ingest.url}/", content=b"{}", headers=KSERVE_AGENT_HEADERS)
    assert good.status_code == 202
    (logged,) = logged_events(kafka_bootstrap, topic, 1)
    assert logged.id == KSERVE_AGENT_HEADERS["Ce-Id"]


def test_large_payloads_are_capped_and_marked(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon(
        "ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic,
        "--max-payload-bytes", "64",
    )  # fmt: skip
    body = b'{"instances": [' + b",".join([b"[1,2,3]"] * 50) + b"]}"
    answer = httpx.post(f"{ingest.url}/", content=body, headers=KSERVE_AGENT_HEADERS)
    assert answer.status_code == 202
    (logged,) = logged_events(kafka_bootstrap, topic, 1)
    assert logged.value == body[:64]
    assert logged.ext("truncated") == "true"
    assert by_type([logged])["request"].id == KSERVE_AGENT_HEADERS["Ce-Id"]
