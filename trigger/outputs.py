"""What the trigger writes: the answer event, the dead letter, and the call for the log topic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from confluent_kafka import Message

from infermon import events
from infermon.dead_letters import context_headers
from infermon.events import KafkaRecord
from logger.producer.capture import CallRecord
from trigger.inputs import InferenceRequest, record_headers
from trigger.model_client import ModelAnswer

EXT_ATTEMPTS: Final = "attempts"
ANSWER_ATTRIBUTES: Final = (
    events.EXT_REQUEST_ID, events.EXT_MODEL_NAME, events.EXT_PROTOCOL, events.EXT_PATH,
    events.EXT_STATUS_CODE, events.EXT_LATENCY_MS, EXT_ATTEMPTS,
)  # fmt: skip
JSON_CONTENT_TYPE: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an input record was dead-lettered."""

    stage: str  # decode | inference | produce | trigger
    reason: str  # the metric label: invalid_input, timeout, unreachable, status_5xx, ...
    message: str
    attempts: int = 0
    status: int | None = None  # the model's status, else 502 or 504 as a proxy would say


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the calls for a request ended: `failure` is None when `answer` is the answer to send.

    A failed request keeps the model's last answer (a 5xx), if any, for the log.
    """

    request: InferenceRequest
    received_at: datetime
    attempts: int
    latency_s: float  # of the last call
    answer: ModelAnswer | None
    failure: Failure | None

    @property
    def status(self) -> int:
        if self.answer is not None:
            return self.answer.status
        return self.failure.status if self.failure and self.failure.status else 502


class AnswerEncoder:
    """The answer to an input: a KServe response CloudEvent with the input's id and key."""

    def __init__(self, source: str) -> None:
        self._encoder = events.BinaryEventEncoder({"source": source}, ANSWER_ATTRIBUTES)

    def encode(self, outcome: Outcome, answer: ModelAnswer, key: bytes | None) -> KafkaRecord:
        request = outcome.request
        attributes = {
            "id": request.id,
            "type": events.KSERVE_RESPONSE_TYPE,
            "time": events.format_time(datetime.now(UTC)),
            events.EXT_REQUEST_ID: request.id,
            events.EXT_MODEL_NAME: request.model_name,
            events.EXT_PROTOCOL: request.protocol,
            events.EXT_PATH: request.path,
            events.EXT_STATUS_CODE: str(answer.status),
            events.EXT_LATENCY_MS: f"{outcome.latency_s * 1000:.3f}",
            EXT_ATTEMPTS: str(outcome.attempts),
        }
        record = self._encoder.encode(attributes, answer.body, answer.content_type, key="")
        return KafkaRecord(key=key, value=record.value, headers=record.headers)


def dead_letter_headers(
    message: Message, group: str, failure: Failure
) -> list[tuple[str, bytes | None]]:
    """The input's own headers, then where it came from and why it could not be answered
    (and, beyond Kafka Connect's context headers, after how many attempts, with what status)."""
    more = {"attempts": str(failure.attempts)}
    if failure.status is not None:
        more["statuscode"] = str(failure.status)
    headers = list(record_headers(message))
    headers += context_headers(
        message.topic() or "", message.partition() or 0, message.offset() or 0, group,
        failure.stage, failure.reason, failure.message, **more,
    )  # fmt: skip
    return headers


def call_record(outcome: Outcome, max_payload_bytes: int) -> CallRecord:
    """The model call as the logger would have recorded it, for `EventBuilder`."""
    request = outcome.request
    if outcome.answer is not None:
        content_type, body = outcome.answer.content_type, outcome.answer.body
    else:
        # What the sidecar answers when the model server fails (logger/sidecar/http1.py).
        message = outcome.failure.message if outcome.failure else "no answer"
        content_type, body = JSON_CONTENT_TYPE, json.dumps({"error": message}).encode()
    request_body, request_truncated = _capped(request.body, max_payload_bytes)
    response_body, response_truncated = _capped(body, max_payload_bytes)
    return CallRecord(
        request_id=request.id,
        method="POST",
        path=request.path,
        request_headers=[(b"content-type", request.content_type.encode())],
        request_content_type=request.content_type,
        request_body=request_body,
        request_truncated=request_truncated,
        received_at=outcome.received_at,
        status_code=outcome.status,
        response_content_type=content_type,
        response_body=response_body,
        response_truncated=response_truncated,
        completed_at=datetime.now(UTC),
        latency_ms=outcome.latency_s * 1000,
    )


def _capped(body: bytes, max_payload_bytes: int) -> tuple[bytes, bool]:
    if max_payload_bytes and len(body) > max_payload_bytes:
        return body[:max_payload_bytes], True
    return body, False
