"""Kafka record -> StoredEvent, or DeadLetter when it is not a valid CloudEvent.

Understands our logger's events, KServe's agent (directly, via our ingest endpoint or a
Knative KafkaSink), and Seldon Core v1's request logger types
(`io.seldon.serving.inference.request|response`, a new id per event, paired on `requestid`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from infermon import events
from infermon.events import InvalidEventError
from monitor.payloads import DEFAULT_MAX_ROWS, ParsedPayload, parse_request, parse_response
from monitor.store.records import DeadLetter, EventKind, StoredEvent

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


MAX_TIME_TEXT_IN_ERROR = 64
OUTSIDE_UTC_RANGE = "is outside the years 1-9999 once in UTC"


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


def decode(
    message: KafkaMessage, max_event_bytes: int, max_rows: int = DEFAULT_MAX_ROWS
) -> StoredEvent | DeadLetter:
    """The record as an event to store, at most `max_rows` of its payload's rows exploded;
    or a dead letter saying why it cannot be one."""
    headers = message.headers() or []
    value = _as_bytes(message.value())
    size = record_size(value, headers)
    if size > max_event_bytes:
        too_large = RecordTooLargeError(f"record of {size} bytes is above {max_event_bytes}")
        return dead_letter(message, too_large, "size")
    try:
        parts = events.event_parts_from_kafka(headers, value)
        if parts.time is not None and parts.time.tzinfo is not UTC:
            parts = parts._replace(time=utc_time(parts.time, parts.attributes.get("time", "")))
    except InvalidEventError as error:
        return dead_letter(message, error, "decode")
    except OverflowError:  # structured mode: the SDK's time, written as text in UTC
        return dead_letter(message, InvalidEventError(f"time {OUTSIDE_UTC_RANGE}"), "decode")
    return stored_event(
        parts, message.topic() or "", message.partition() or 0, message.offset() or 0, max_rows
    )


def utc_time(moment: datetime, text: str) -> datetime:
    """`moment`, read from `text`, in UTC: the store keeps every time so. A time with an
    offset at the ends of the years 1-9999 has no UTC equivalent there: no time to store."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        shown = text[:MAX_TIME_TEXT_IN_ERROR]
        raise InvalidEventError(f"time {shown!r} {OUTSIDE_UTC_RANGE}") from None


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def model_of(attributes: Mapping[str, str]) -> str | None:
    """Our `modelname`, else the model in the path, else KServe's service or Seldon's model id."""
    model = attributes.get(events.EXT_MODEL_NAME)
    if not model:
        path = attributes.get(events.EXT_PATH)
        model = events.parse_inference_path(path)[1] if path else None
    return (
        model
        or attributes.get(events.EXT_INFERENCE_SERVICE)
        or attributes.get(SELDON_MODEL_EXTENSION)
        or None
    )


def status_code_of(attributes: Mapping[str, str], kind: EventKind) -> int | None:
    status = _int_or_none(attributes.get(events.EXT_STATUS_CODE))
    if status is None and kind == "response" and attributes["type"] == events.KSERVE_RESPONSE_TYPE:
        return 200  # KServe's own logger emits response events only for status 200
    return status


_TRUNCATED = ParsedPayload(kind="raw", rows=None, error="payload was truncated by the logger")


def parsed_payload(
    kind: EventKind,
    payload: bytes,
    content_type: str | None,
    truncated: bool,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ParsedPayload:
    """The payload exploded into rows, or why not (a truncated payload is not exploded)."""
    if truncated:
        return _TRUNCATED
    if kind == "request":
        return parse_request(payload, content_type, max_rows)
    if kind == "response":
        return parse_response(payload, content_type, max_rows)
    return ParsedPayload(kind="raw", rows=None, error="not an inference request or response")


def stored_event(
    parts: events.EventParts,
    topic: str,
    partition: int,
    offset: int,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> StoredEvent:
    attributes, payload = parts.attributes, parts.data
    text = attributes.get  # every value is text; an empty one counts as absent
    event_type = attributes["type"]
    kind = EVENT_KINDS.get(event_type, "other")
    content_type = text("datacontenttype")
    truncated = text(events.EXT_TRUNCATED) == "true"
    parsed = parsed_payload(kind, payload, content_type, truncated, max_rows)
    return StoredEvent(
        source=attributes["source"],
        event_id=attributes["id"],
        type=event_type,
        kind=kind,
        request_id=text(events.EXT_REQUEST_ID) or attributes["id"],
        time=parts.time,
        attributes=attributes,
        content_type=content_type,
        payload=payload,
        topic=topic,
        partition=partition,
        offset=offset,
        model=model_of(attributes),
        namespace=text(events.EXT_NAMESPACE) or None,
        inference_service=text(events.EXT_INFERENCE_SERVICE) or None,
        component=text(events.EXT_COMPONENT) or None,
        protocol=text(events.EXT_PROTOCOL) or None,
        status_code=status_code_of(attributes, kind),
        latency_ms=float_or_none(text(events.EXT_LATENCY_MS) or None),
        truncated=truncated,
        payload_kind=parsed.kind,
        rows=parsed.rows,
        rows_not_exploded=parsed.not_exploded,
        parse_error=parsed.error,
    )
