"""Turns one proxied call into its request and response events, in KServe's layout plus ours."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from jsonpath_ng import JSONPath
from jsonpath_ng.ext import parse as parse_jsonpath

from infermon import events
from infermon.events import KafkaRecord, UtcText

REDACTED = "[REDACTED]"
# Set when --redact replaced a payload whole because it could not walk it; the value says why.
EXT_REDACTION = "redaction"
# Distinct request paths whose (protocol, model name) are remembered: a model server has a few.
MAX_CACHED_PATHS = 1024
# Every attribute a logged event sets per call (the rest are the same for all calls).
PER_EVENT_ATTRIBUTES = (
    events.EXT_METADATA, events.EXT_RECORDED_TIME, events.EXT_REQUEST_ID, events.EXT_METHOD,
    events.EXT_PATH, events.EXT_PROTOCOL, events.EXT_MODEL_NAME, events.EXT_TRUNCATED,
    events.EXT_STATUS_CODE, events.EXT_LATENCY_MS, EXT_REDACTION,
)  # fmt: skip


class Redactor:
    """Replaces the values at JSONPath expressions in JSON payloads before they are logged."""

    def __init__(self, expressions: list[str]) -> None:
        self._paths: list[JSONPath] = []
        for expression in expressions:
            try:
                self._paths.append(parse_jsonpath(expression))
            except Exception as error:  # jsonpath-ng raises bare Exception for lexer errors
                raise ValueError(f"--redact {expression!r} is not a JSONPath: {error}") from error

    def __bool__(self) -> bool:
        return bool(self._paths)

    def redact(self, body: bytes) -> tuple[bytes, str | None]:
        """(the body with every match replaced, None), or, for a body that cannot be walked,
        (`REDACTED` in its place, why): nothing unredacted is ever shown, and no event lost."""
        try:
            document: Any = json.loads(body)
        except RecursionError:
            return REDACTED.encode(), "replaced whole: JSON nested too deep to walk"
        except (ValueError, UnicodeDecodeError):
            return REDACTED.encode(), "replaced whole: not JSON"
        try:
            for path in self._paths:
                document = path.update(document, REDACTED)
            return json.dumps(document, separators=(",", ":")).encode(), None
        except RecursionError:
            return REDACTED.encode(), "replaced whole: JSON nested too deep to walk"
        except Exception as error:  # jsonpath-ng on an odd document: hide it all, keep the event
            return REDACTED.encode(), f"replaced whole: {type(error).__name__} while redacting"


@dataclass(slots=True)
class CallRecord:
    """What the proxy saw of one call; bodies are already capped to the payload limit."""

    request_id: str
    method: str
    path: str
    request_headers: list[tuple[bytes, bytes]]
    request_content_type: str | None
    request_body: bytes
    request_truncated: bool
    received_at: datetime
    status_code: int = 0
    response_content_type: str | None = None
    response_body: bytes = b""
    response_truncated: bool = False
    completed_at: datetime | None = None
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class EventOptions:
    """What a call's events say of where they come from, and what of the call is kept."""

    source: str
    inference_service: str = ""
    namespace: str = ""
    component: str = "predictor"
    endpoint: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    mode: Literal["all", "request", "response"] = "all"
    sample_rate: float = 1.0
    redact: Sequence[str] = ()
    metadata_headers: Sequence[str] = ()


class EventBuilder:
    """Applies the logger's settings (mode, sampling, redaction, extensions) to calls."""

    def __init__(self, settings: EventOptions, rng: random.Random | None = None) -> None:
        self._mode = settings.mode
        self._sample_rate = settings.sample_rate
        self._rng = rng or random.Random()
        self._redactor = Redactor(list(settings.redact))
        self._metadata_headers = {name.lower().encode() for name in settings.metadata_headers}
        shared = {
            "source": settings.source,
            events.EXT_INFERENCE_SERVICE: settings.inference_service,
            events.EXT_NAMESPACE: settings.namespace,
            events.EXT_COMPONENT: settings.component,
            events.EXT_ENDPOINT: settings.endpoint,
        }
        if settings.annotations:
            shared[events.EXT_ANNOTATIONS] = json.dumps(settings.annotations)
        self._encoder = events.BinaryEventEncoder(shared, PER_EVENT_ATTRIBUTES)
        self._paths: dict[str, tuple[str, str | None]] = {}
        self._utc_text = UtcText()

    @property
    def logs_requests(self) -> bool:
        return self._mode in ("all", "request")

    @property
    def logs_responses(self) -> bool:
        return self._mode in ("all", "response")

    def sampled(self) -> bool:
        """Decided once per call, so a call's request and response are kept or skipped together."""
        return self._sample_rate >= 1.0 or self._rng.random() < self._sample_rate

    def _metadata(self, headers: list[tuple[bytes, bytes]]) -> str:
        if not self._metadata_headers:
            return "{}"
        found: dict[str, list[str]] = {}
        for name, value in headers:
            if name.lower() in self._metadata_headers:
                canonical = events.canonical_header_name(name.decode("latin-1"))
                found.setdefault(canonical, []).append(value.decode("latin-1"))
        return json.dumps(found)

    def _path_parts(self, path: str) -> tuple[str, str | None]:
        parts = self._paths.get(path)
        if parts is None:
            if len(self._paths) >= MAX_CACHED_PATHS:
                self._paths.clear()
            parts = self._paths[path] = events.parse_inference_path(path)
        return parts

    def _event(
        self,
        call: CallRecord,
        event_type: str,
        moment: datetime,
        content_type: str | None,
        body: bytes,
        truncated: bool,
        extra: dict[str, str],
    ) -> KafkaRecord:
        protocol, model_name = self._path_parts(call.path)
        attributes = {
            "id": call.request_id,
            "type": event_type,
            "time": self._utc_text(moment),
            events.EXT_METADATA: self._metadata(call.request_headers),
            events.EXT_RECORDED_TIME: self._utc_text(datetime.now(UTC)),
            events.EXT_REQUEST_ID: call.request_id,
            events.EXT_METHOD: call.method,
            events.EXT_PATH: call.path,
            events.EXT_PROTOCOL: protocol,
            **extra,
        }
        if model_name:
            attributes[events.EXT_MODEL_NAME] = model_name
        if truncated:
            attributes[events.EXT_TRUNCATED] = "true"
        if self._redactor and body:
            reason: str | None
            if truncated:  # a cut payload cannot be parsed, so nothing of it is shown
                body, reason = REDACTED.encode(), "replaced whole: payload truncated"
            else:
                body, reason = self._redactor.redact(body)
            if reason is not None:
                attributes[EXT_REDACTION] = reason
        return self._encoder.encode(attributes, body, content_type, key=call.request_id)

    def request_event(self, call: CallRecord) -> KafkaRecord:
        return self._event(
            call,
            events.KSERVE_REQUEST_TYPE,
            call.received_at,
            call.request_content_type,
            call.request_body,
            call.request_truncated,
            {},
        )

    def response_event(self, call: CallRecord) -> KafkaRecord:
        return self._event(
            call,
            events.KSERVE_RESPONSE_TYPE,
            call.completed_at or datetime.now(UTC),
            call.response_content_type or call.request_content_type,
            call.response_body,
            call.response_truncated,
            {
                events.EXT_STATUS_CODE: str(call.status_code),
                events.EXT_LATENCY_MS: f"{call.latency_ms:.3f}",
            },
        )
