"""`infermon ingest`: what KServe's agent POSTs becomes the record the logger would write."""

from __future__ import annotations

import json

import httpx

from infermon import events
from logger.ingest import RecordBuilder
from logger.producer.sink import record_fit
from logger.settings import IngestSettings
from tests.fixtures.events_on_kafka import LoggedEvent, by_type, logged_events
from tests.fixtures.factories import TopicFactory
from tests.fixtures.toy_model_server import ToyModelServer
from tests.logger.conftest import StartInfermon

# Exactly the header set KServe's agent sends for a request event (its pkg/logger/worker.go):
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


# Times that parse but leave years 1-9999 once converted to UTC, and one that overflows parsing.
UNREPRESENTABLE_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T24:00:00Z",
]
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
NESTED_100K = "[" * 100_000 + "]" * 100_000


def _envelope(event_id: str, **attributes: object) -> dict[str, object]:
    return {
        "specversion": "1.0", "id": event_id, "source": "/test",
        "type": events.KSERVE_REQUEST_TYPE, "data": {"instances": [[1]]}, **attributes,
    }  # fmt: skip


def _refused(answer: httpx.Response, status: int, *words: str) -> None:
    """`answer` is `status` with a JSON reason that mentions each of `words`."""
    assert answer.status_code == status, answer.text
    reason = answer.json()["error"]
    for word in words:
        assert word in reason, reason


def _only_these_ids_on_topic(bootstrap: str, topic: str, ids: list[str]) -> list[LoggedEvent]:
    """The topic holds exactly the events `ids`, in that order, and nothing else."""
    logged = logged_events(bootstrap, topic, len(ids))
    assert [event.id for event in logged] == ids
    return logged


def test_unrepresentable_times_are_400_in_every_mode_and_write_nothing(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)
    before = httpx.post(ingest.url, content=json.dumps(_envelope("before")), headers=STRUCTURED)
    assert before.status_code == 202
    for time in UNREPRESENTABLE_TIMES:
        binary = httpx.post(
            ingest.url, content=b"{}", headers={**KSERVE_AGENT_HEADERS, "Ce-Time": time}
        )
        _refused(binary, 400, "time")
        structured = json.dumps(_envelope("s", time=time))
        _refused(httpx.post(ingest.url, content=structured, headers=STRUCTURED), 400, "time")
    after = httpx.post(ingest.url, content=b"{}", headers=KSERVE_AGENT_HEADERS)
    assert after.status_code == 202
    _only_these_ids_on_topic(kafka_bootstrap, topic, ["before", KSERVE_AGENT_HEADERS["Ce-Id"]])
    metrics = ingest.metrics()
    assert metrics['infermon_ingest_requests_rejected_total{code="400"}'] == 6
    assert metrics["infermon_ingest_requests_unforeseen_total"] == 0


def test_bodies_nested_100k_deep_are_400(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)
    envelope = json.dumps(_envelope("deep", data=None)).replace("null", NESTED_100K)
    _refused(httpx.post(ingest.url, content=envelope, headers=STRUCTURED), 400, "nested")
    _refused(httpx.post(ingest.url, content=f"[{envelope}]", headers=BATCH), 400, "nested")
    _refused(httpx.post(ingest.url, content=NESTED_100K, headers=BATCH), 400, "nested")
    good = httpx.post(ingest.url, content=json.dumps(_envelope("after")), headers=STRUCTURED)
    assert good.status_code == 202
    _only_these_ids_on_topic(kafka_bootstrap, topic, ["after"])


def test_attributes_that_are_not_unicode_text_are_400(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)

    def binary(**changed: str | bytes) -> httpx.Response:
        return httpx.post(ingest.url, content=b"{}", headers={**KSERVE_AGENT_HEADERS, **changed})

    def structured(text: str) -> httpx.Response:
        return httpx.post(ingest.url, content=text, headers=STRUCTURED)

    _refused(binary(**{"Ce-Id": b"\xff\xfe"}), 400, "ce-id", "UTF-8")
    _refused(binary(**{"Ce-Namespace": "%C3%28"}), 400, "ce-namespace", "UTF-8")
    _refused(structured(json.dumps(_envelope("x")).replace('"x"', '"\\udcff"')), 400, "'id'")
    lone = json.dumps(_envelope("x", namespace="n")).replace('"n"', '"a\\ud800b"')
    _refused(structured(lone), 400, "namespace", "Unicode")
    text_data = _envelope("x", datacontenttype="text/plain", data="d")
    _refused(structured(json.dumps(text_data).replace('"d"', '"\\udfff"')), 400, "data")
    _refused(structured(json.dumps(_envelope("x", metadata={"a": 1}))), 400, "metadata")
    _refused(structured(json.dumps({**_envelope("x"), "abc\n": "v"})), 400, "extension name")
    # UTF-8 text in a header is that text, not its bytes read as Latin-1.
    accepted = binary(**{"Ce-Namespace": "équipe".encode()})
    assert accepted.status_code == 202, accepted.text
    (logged,) = _only_these_ids_on_topic(kafka_bootstrap, topic, [KSERVE_AGENT_HEADERS["Ce-Id"]])
    assert logged.headers["ce_namespace"] == "équipe".encode()


def test_a_batch_with_one_bad_event_is_refused_whole(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)

    def batch(*envelopes: object) -> httpx.Response:
        return httpx.post(ingest.url, content=json.dumps(envelopes), headers=BATCH)

    assert batch(_envelope("before")).status_code == 202
    bad_time = _envelope("b", time=UNREPRESENTABLE_TIMES[0])
    _refused(batch(_envelope("g1"), bad_time, _envelope("g2")), 400, "event 1", "time")
    huge = _envelope("h", namespace="n" * 1_200_000)
    _refused(batch(_envelope("g1"), _envelope("g2"), huge), 413, "event 2", "message.max.bytes")
    _refused(batch(_envelope("g1"), "not an event"), 400, "event 1", "JSON object")
    assert batch(_envelope("kept-1"), _envelope("kept-2")).status_code == 202
    _only_these_ids_on_topic(kafka_bootstrap, topic, ["before", "kept-1", "kept-2"])


def _padding_to_fill(builder: RecordBuilder, headers: dict[str, str], body: bytes) -> int:
    """How many bytes an extra attribute's value can hold before the record passes the limit."""
    probe = {**headers, "Ce-Padding": ""}
    raw = [(name.lower().encode(), value.encode()) for name, value in probe.items()]
    (event,) = builder.parse(raw, body, batch=False)
    record = builder.record(event)
    return builder.record_limit - record_fit(record, builder.record_limit).wire_bytes


def test_an_event_too_large_for_the_broker_is_413_and_one_that_just_fits_is_written(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = new_topic()
    ingest = start_infermon("ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic)

    def binary(padding: int, body: bytes = b"{}") -> httpx.Response:
        headers = {**KSERVE_AGENT_HEADERS, "Ce-Padding": "p" * padding}
        return httpx.post(ingest.url, content=body, headers=headers, timeout=30)

    _refused(binary(1_500_000), 413, "1000000", "message.max.bytes")
    room = _padding_to_fill(RecordBuilder(IngestSettings()), KSERVE_AGENT_HEADERS, b"{}")
    assert 990_000 < room < 1_000_000
    _refused(binary(room + 1), 413, "message.max.bytes")
    assert binary(room).status_code == 202
    # A payload above the default cap is cut to it, then fits.
    assert binary(0, body=b"x" * 1_500_000).status_code == 202
    logged = _only_these_ids_on_topic(kafka_bootstrap, topic, [KSERVE_AGENT_HEADERS["Ce-Id"]] * 2)
    assert len(logged[0].headers["ce_padding"]) == room
    assert (len(logged[1].value), logged[1].ext("truncated")) == (900_000, "true")


def test_configured_limits_refuse_with_413(
    start_infermon: StartInfermon, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """The record limit follows message.max.bytes and holds for uncapped payloads too; a batch
    is bounded in events."""
    topic = new_topic()
    ingest = start_infermon(
        "ingest", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic,
        "--kafka-config", "message.max.bytes=300000", "--max-payload-bytes", "0",
        "--max-batch-events", "3",
    )  # fmt: skip
    four = json.dumps([_envelope(f"g{n}") for n in range(4)])
    _refused(httpx.post(ingest.url, content=four, headers=BATCH), 413, "4 events", "3")
    with_padding = {**KSERVE_AGENT_HEADERS, "Ce-Padding": "p" * 300_000}
    _refused(httpx.post(ingest.url, content=b"{}", headers=with_padding), 413, "300000")
    payload = httpx.post(ingest.url, content=b"x" * 300_000, headers=KSERVE_AGENT_HEADERS)
    _refused(payload, 413, "payload 300000")
    fitting = httpx.post(ingest.url, content=b"x" * 290_000, headers=KSERVE_AGENT_HEADERS)
    assert fitting.status_code == 202
    (logged,) = _only_these_ids_on_topic(kafka_bootstrap, topic, [KSERVE_AGENT_HEADERS["Ce-Id"]])
    assert logged.value == b"x" * 290_000
