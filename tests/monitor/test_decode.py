"""Kafka record -> StoredEvent or DeadLetter, without a broker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from infermon import events
from monitor.decode import decode
from monitor.store.records import DeadLetter, StoredEvent


@dataclass
class FakeMessage:
    """Stands in for confluent_kafka.Message, which cannot be built by hand."""

    value_bytes: bytes | None
    header_list: list[tuple[str, bytes | None]] = field(default_factory=list)
    key_bytes: bytes | None = b"k"
    offset_number: int = 7

    def topic(self) -> str:
        return "payloads"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self.offset_number

    def key(self) -> bytes | None:
        return self.key_bytes

    def value(self) -> bytes | None:
        return self.value_bytes

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self.header_list


def binary(event_type: str, body: object, **extensions: str) -> FakeMessage:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", b"call-1"), ("ce_source", b"/s"),
        ("ce_type", event_type.encode()), ("ce_time", b"2026-11-29T07:00:00.5Z"),
        ("content-type", b"application/json"),
    ]  # fmt: skip
    headers += [(f"ce_{name}", value.encode()) for name, value in extensions.items()]
    return FakeMessage(json.dumps(body).encode(), headers)


def test_logger_request_is_decoded_with_rows_and_attributes() -> None:
    message = binary(events.KSERVE_REQUEST_TYPE, {"instances": [[1, 2]]},
                     requestid="call-1", path="/v1/models/iris:predict", protocol="v1")  # fmt: skip
    stored = decode(message, max_event_bytes=10_000)
    assert isinstance(stored, StoredEvent)
    assert (stored.kind, stored.request_id, stored.model) == ("request", "call-1", "iris")
    assert stored.rows == [{"f0": 1, "f1": 2}]
    assert (stored.topic, stored.partition, stored.offset) == ("payloads", 2, 7)
    assert stored.attributes["time"] == "2026-11-29T07:00:00.5Z"  # the text as it was sent
    assert stored.time == datetime(2026, 11, 29, 7, 0, 0, 500_000, tzinfo=UTC)
    assert stored.status_code is None


def test_kserve_response_without_status_is_a_200_and_model_falls_back_to_the_service() -> None:
    message = binary(events.KSERVE_RESPONSE_TYPE, {"predictions": [3]},
                     inferenceservicename="sklearn-iris")  # fmt: skip
    stored = decode(message, max_event_bytes=10_000)
    assert isinstance(stored, StoredEvent)
    assert (stored.status_code, stored.model, stored.request_id) == (200, "sklearn-iris", "call-1")


def test_seldon_events_pair_on_requestid_and_name_the_model_id() -> None:
    message = binary(events.SELDON_RESPONSE_TYPE, {"predictions": [1]},
                     requestid="seldon-9", modelid="classifier")  # fmt: skip
    stored = decode(message, max_event_bytes=10_000)
    assert isinstance(stored, StoredEvent)
    assert (stored.kind, stored.request_id, stored.model) == ("response", "seldon-9", "classifier")
    assert stored.status_code is None


def test_truncated_payload_is_kept_raw_not_exploded() -> None:
    message = binary(events.KSERVE_REQUEST_TYPE, {"instances": [[1]]}, truncated="true")
    stored = decode(message, max_event_bytes=10_000)
    assert isinstance(stored, StoredEvent)
    assert (stored.payload_kind, stored.rows, stored.truncated) == ("raw", None, True)


@pytest.mark.parametrize(
    ("message", "stage", "error_class"),
    [
        (FakeMessage(b"{}", [("ce_type", b"t")]), "decode", "InvalidEventError"),
        (FakeMessage(b"{", [("content-type", b"application/cloudevents+json")]), "decode",
         "InvalidEventError"),
        (FakeMessage(b"x" * 2000), "size", "RecordTooLargeError"),
    ],
    ids=["missing-attributes", "structured-not-json", "too-large"],
)  # fmt: skip
def test_poison_records_become_dead_letters(
    message: FakeMessage, stage: str, error_class: str
) -> None:
    letter = decode(message, max_event_bytes=1000)
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.error_class) == (stage, error_class)
    assert (letter.key, letter.value, letter.offset) == (b"k", message.value_bytes, 7)
