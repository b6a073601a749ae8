"""What the consumer hands the store: decoded events and dead letters (no SQL, no Kafka)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

EventKind = Literal["request", "response", "other"]
PayloadKind = Literal["v1", "v2", "dataframe_split", "dataframe_records", "raw", "empty"]


@dataclass(slots=True)  # not frozen: a frozen dataclass takes 3x as long to build
class StoredEvent:
    """One valid CloudEvent read from Kafka, with its payload parsed and exploded."""

    source: str
    event_id: str
    type: str
    kind: EventKind
    request_id: str  # pairs a call's request and response (ext requestid, else the id)
    time: datetime | None  # when it happened (ce time)
    attributes: dict[str, str]  # every CloudEvent attribute, as text
    content_type: str | None
    payload: bytes
    topic: str
    partition: int
    offset: int
    model: str | None = None
    namespace: str | None = None
    inference_service: str | None = None
    component: str | None = None
    protocol: str | None = None
    status_code: int | None = None
    latency_ms: float | None = None
    truncated: bool = False
    payload_kind: PayloadKind = "raw"
    # One dict per batch row: features for a request, outputs for a response; None when
    # the payload was not exploded (raw, binary, truncated, or an error answer).
    rows: list[dict[str, Any]] | None = None
    rows_not_exploded: int = 0  # the payload's rows beyond those in `rows`, counted only
    parse_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that is not a valid CloudEvent, kept whole with the reason."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    error: str = ""
    error_class: str = ""
    stage: str = "decode"
