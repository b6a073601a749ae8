"""--redact never loses an event: a body it cannot walk is replaced whole, with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from logger.producer.capture import REDACTED, CallRecord, EventBuilder, EventOptions, Redactor
from tests.fixtures.events_on_kafka import by_type, logged_events
from tests.fixtures.factories import TopicFactory
from tests.fixtures.toy_model_server import ToyModelServer
from tests.logger.conftest import StartInfermon

DEPTH = 100_000
DEEP_BODY = b"[" * DEPTH + b"]" * DEPTH


def test_a_sidecar_logs_a_body_nested_100k_deep_replaced_whole_with_the_reason(
    start_infermon: StartInfermon,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    toy_model_server: ToyModelServer,
) -> None:
    topic = new_topic()
    logger = start_infermon(
        "logger", "--model-url", toy_model_server.url, "--kafka-bootstrap", kafka_bootstrap,
        "--topic", topic, "--redact", "$.instances[*].ssn",
    )  # fmt: skip
    response = httpx.post(
        f"{logger.url}/echo",
        content=DEEP_BODY,
        headers={"content-type": "application/json", "X-Request-Id": "deep"},
        timeout=30,
    )
    assert response.content == DEEP_BODY, "the client's answer is not redacted"
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    for event in logged.values():
        assert event.id == "deep"
        assert event.value == REDACTED.encode()
        assert "too deep" in (event.ext("redaction") or "")
    metrics = logger.metrics()
    assert not any(name.startswith("infermon_events_dropped") for name in metrics)


def request_event(body: bytes, truncated: bool = False) -> dict[str, bytes]:
    builder = EventBuilder(EventOptions(source="http://test/", redact=["$.instances[*].ssn"]))
    call = CallRecord(
        request_id="r-1", method="POST", path="/v1/models/m:predict", request_headers=[],
        request_content_type="application/json", request_body=body,
        request_truncated=truncated, received_at=datetime.now(UTC),
    )  # fmt: skip
    record = builder.request_event(call)
    return {**dict(record.headers), "value": record.value}


def test_a_walkable_body_is_redacted_in_place_without_a_reason() -> None:
    logged = request_event(b'{"instances":[{"ssn":1,"age":2}]}')
    assert json.loads(logged["value"]) == {"instances": [{"ssn": REDACTED, "age": 2}]}
    assert "ce_redaction" not in logged


def test_a_body_too_deep_to_walk_is_replaced_whole_with_the_reason() -> None:
    logged = request_event(DEEP_BODY)
    assert logged["value"] == REDACTED.encode()
    assert logged["ce_redaction"] == b"replaced whole: JSON nested too deep to walk"
    assert logged["ce_id"] == b"r-1"


def test_a_body_that_is_not_json_or_was_cut_is_replaced_whole_with_the_reason() -> None:
    for body, truncated, reason in (
        (b"ssn=123", False, b"replaced whole: not JSON"),
        (b"\xff\xfe", False, b"replaced whole: not JSON"),
        (b'{"instances":[{"ssn":1', True, b"replaced whole: payload truncated"),
    ):
        logged = request_event(body, truncated)
        assert logged["value"] == REDACTED.encode()
        assert logged["ce_redaction"] == reason


def test_the_redactor_never_raises_on_deep_or_odd_documents() -> None:
    redactor = Redactor(["$..ssn", "$.a[*].b"])
    for body in (DEEP_BODY, b"{" * 50_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"NaN", b"[]"):
        redacted, reason = redactor.redact(body)
        assert (redacted == REDACTED.encode()) == (reason is not None)
