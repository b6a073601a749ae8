"""Kafka record -> StoredEvent, or DeadLetter when it is not a valid CloudEvent.

Understands our logger's events, KServe's agent (directly, via our ingest endpoint or a
Knative KafkaSink), and Seldon's request logger types; `cloudevents-kafka.md` section 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from infermon import events
from infermon.events import CloudEvent, InvalidEventError
from monitor.payloads import ParsedPayload, parse_request, parse_response
from monitor.records import DeadLetter, EventKind, StoredEvent

EVENT_KINDS: dict[str, EventKind] = {
    events.KSERVE_REQUEST_TYPE: "request",
    events.KSERVE_RESPONSE_TYPE: "response",
    events.SELDON_REQUEST_TYPE: "request",
    events.SELDON_RESPONSE_TYPE: "response",
}
SELDON_MODEL_EXTENSION = "modelid"
# Summing header sizes costs a tenth of decoding; below this the value alone is far from any
# sane limit, and headers are a few hundred bytes.
HEADERS_NOT_COUNTED_BELOW_BYTES = 64 * 1024


class KafkaMessage(Protocol):
    """The part of confluent_kafka.Message the decoder reads (tests may pass their own)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...
    def headers(self) -> Sequence[tuple[str, bytes | None]] | None: ...


class RecordTooLargeError(ValueError):
    pass


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def record_size(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    size = len(value or b"")
    if size < HEADERS_NOT_COUNTED_BELOW_BYTES:
        return size
    return size + sum(len(name) + len(raw or b"") for name, raw in headers)


def dead_letter(message: KafkaMessage, error: Exception, stage: str) -> DeadLetter:
    return DeadLetter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=_as_bytes(message.key()),
        value=_as_bytes(message.value()),
        headers=list(message.headers() or []),
        error=str(error),
        error_class=type(error).__name__,
        stage=stage,
    )


def decode(message: KafkaMessage, max_event_bytes: int) -> StoredEvent | DeadLetter:
    headers = message.headers() or []
    value = _as_bytes(message.value())
    size = record_size(value, headers)
    if size > max_event_bytes:
        too_large = RecordTooLargeError(f"record of {size} bytes is above {max_event_bytes}")
        return dead_letter(message, too_large, "size")
    try:
        event = events.event_from_kafka(headers, value)
    except InvalidEventError as error:
        return dead_letter(message, error, "decode")
    return stored_event(
        event, message.topic() or "", message.partition() or 0, message.offset() or 0
    )


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return events.format_time(value)
    return str(value)


def _extension(event: CloudEvent, name: str) -> str | None:
    value = event.get_extension(name)
    return None if value is None or value == "" else str(value)


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _model(event: CloudEvent) -> str | None:
    """Our `modelname`, else the model in the path, else KServe's service or Seldon's model id."""
    path = _extension(event, events.EXT_PATH)
    from_path = events.parse_inference_path(path)[1] if path else None
    return (
        _extension(event, events.EXT_MODEL_NAME)
        or from_path
        or _extension(event, events.EXT_INFERENCE_SERVICE)
        or _extension(event, SELDON_MODEL_EXTENSION)
    )


def _status_code(event: CloudEvent, kind: EventKind) -> int | None:
    status = _int_or_none(_extension(event, events.EXT_STATUS_CODE))
    if status is None and kind == "response" and event.get_type() == events.KSERVE_RESPONSE_TYPE:
        return 200  # KServe's own logger emits response events only for status 200
    return status


def _parse(kind: EventKind, payload: bytes, content_type: str | None) -> ParsedPayload:
    if kind == "request":
        return parse_request(payload, content_type)
    if kind == "response":
        return parse_response(payload, content_type)
    return ParsedPayload(kind="raw", rows=None, error="not an inference request or response")


def stored_event(event: CloudEvent, topic: str, partition: int, offset: int) -> StoredEvent:
    kind = EVENT_KINDS.get(event.get_type(), "other")
    payload = events.payload_bytes(event)
    content_type = event.get_datacontenttype()
    truncated = _extension(event, events.EXT_TRUNCATED) == "true"
    if truncated:
        parsed = ParsedPayload(kind="raw", rows=None, error="payload was truncated by the logger")
    else:
        parsed = _parse(kind, payload, content_type)
    return StoredEvent(
        source=event.get_source(),
        event_id=event.get_id(),
        type=event.get_type(),
        kind=kind,
        request_id=_extension(event, events.EXT_REQUEST_ID) or event.get_id(),
        time=event.get_time(),
        attributes={k: _text(v) for k, v in event.get_attributes().items() if v is not None},
        content_type=content_type,
        payload=payload,
        topic=topic,
        partition=partition,
        offset=offset,
        model=_model(event),
        namespace=_extension(event, events.EXT_NAMESPACE),
        inference_service=_extension(event, events.EXT_INFERENCE_SERVICE),
        component=_extension(event, events.EXT_COMPONENT),
        protocol=_extension(event, events.EXT_PROTOCOL),
        status_code=_status_code(event, kind),
        latency_ms=_float_or_none(_extension(event, events.EXT_LATENCY_MS)),
        truncated=truncated,
        payload_kind=parsed.kind,
        rows=parsed.rows,
        parse_error=parsed.error,
    )
