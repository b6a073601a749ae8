"""The event contract: every component builds, writes and reads payload events through here.

Events are CloudEvents 1.0 in the layout of KServe's payload logger (its agent's
`pkg/logger/worker.go`: one id shared by a call's request and response event, the extensions
`inferenceservicename`, `namespace`, `component`, `endpoint`, `metadata`, `annotations`,
`recordedtime`) plus our own extensions.
On Kafka they travel in binary content mode; reading also accepts structured mode.
The cloudevents 2.x SDK holds and validates the event; we handle the bytes ourselves
because the SDK's Kafka binding (2.0) invents an id and a time for a record that has none,
turns any record key into `partitionkey`, and writes a list as its Python repr.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final, NamedTuple
from urllib.parse import unquote

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import OPTIONAL_ATTRIBUTES as SDK_OPTIONAL_ATTRIBUTES
from cloudevents.core.v1.event import REQUIRED_ATTRIBUTES as SDK_REQUIRED_ATTRIBUTES
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse

from infermon.excerpts import quoted

__all__ = [
    "KSERVE_REQUEST_TYPE",
    "KSERVE_RESPONSE_TYPE",
    "SELDON_REQUEST_TYPE",
    "SELDON_RESPONSE_TYPE",
    "BinaryEventEncoder",
    "CloudEvent",
    "EventParts",
    "InvalidEventError",
    "KafkaRecord",
    "UtcText",
    "canonical_header_name",
    "check_writable",
    "cloudevent_http_headers",
    "event_from_http",
    "event_from_kafka",
    "event_parts_from_kafka",
    "event_to_kafka",
    "events_from_http_batch",
    "format_time",
    "parse_inference_path",
    "payload_bytes",
]

KSERVE_REQUEST_TYPE: Final = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE_TYPE: Final = "org.kubeflow.serving.inference.response"
SELDON_REQUEST_TYPE: Final = "io.seldon.serving.inference.request"
SELDON_RESPONSE_TYPE: Final = "io.seldon.serving.inference.response"

# KServe's extensions (worker.go).
EXT_INFERENCE_SERVICE: Final = "inferenceservicename"
EXT_NAMESPACE: Final = "namespace"
EXT_COMPONENT: Final = "component"
EXT_ENDPOINT: Final = "endpoint"
EXT_METADATA: Final = "metadata"
EXT_ANNOTATIONS: Final = "annotations"
EXT_RECORDED_TIME: Final = "recordedtime"
# Ours.
EXT_REQUEST_ID: Final = "requestid"
EXT_METHOD: Final = "method"
EXT_PATH: Final = "path"
EXT_STATUS_CODE: Final = "statuscode"
EXT_LATENCY_MS: Final = "latencyms"
EXT_PROTOCOL: Final = "protocol"
EXT_MODEL_NAME: Final = "modelname"
EXT_TRUNCATED: Final = "truncated"

REQUIRED_ATTRIBUTES: Final = ("id", "source", "type", "specversion")
CONTENT_TYPE_HEADER: Final = "content-type"
KAFKA_ATTRIBUTE_PREFIX: Final = "ce_"
HTTP_ATTRIBUTE_PREFIX: Final = "ce-"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json; charset=UTF-8"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"


class InvalidEventError(ValueError):
    """Input that is not a valid CloudEvent; the message says why."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One Kafka record, as handed to confluent-kafka's `produce`."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as KServe writes `ce_time`: microseconds, none when zero."""
    if moment.tzinfo is not UTC:  # the usual time is UTC already: skip the conversion
        moment = moment.astimezone(UTC)
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class UtcText:
    """`format_time` for many moments close together: each second's text is made once, because
    `isoformat` costs more than the rest of an event attribute."""

    def __init__(self) -> None:
        self._second: datetime | None = None
        self._second_text = ""

    def __call__(self, moment: datetime) -> str:
        if moment.tzinfo is not UTC:
            return format_time(moment)
        second = moment.replace(microsecond=0)
        if second != self._second:
            self._second = second
            self._second_text = format_time(second)[:-1]  # without the Z
        micros = moment.microsecond
        # as format_time (isoformat) writes it: no fraction when it is zero
        return f"{self._second_text}.{micros:06d}Z" if micros else self._second_text + "Z"


def parse_time(text: str) -> datetime:
    """RFC 3339; the standard library's parser first (fast), dateutil for Go's nanoseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = isoparse(text)
        except (ValueError, OverflowError) as error:  # 9999-12-31T24:00:00Z overflows
            raise InvalidEventError(f"time is not RFC 3339: {quoted(text)}") from error
    if moment.tzinfo is None:
        raise InvalidEventError(f"time has no UTC offset: {quoted(text)}")
    return moment


def canonical_header_name(name: str) -> str:
    """Go's canonical MIME header form (`x-request-id` -> `X-Request-Id`), as KServe keys it."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def parse_inference_path(path: str) -> tuple[str, str | None]:
    """(protocol, model name) from a KServe v1 or v2 path; `other` for anything else.

    v1: /v1/models/{name}[:verb]   v2: /v2/models/{name}[/versions/{v}][/infer|/ready|...]
    """
    path = path.split("?", 1)[0]
    for protocol in ("v1", "v2"):
        prefix = f"/{protocol}/"
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if rest.startswith("models/"):
                name = rest[len("models/") :].split("/", 1)[0]
                if protocol == "v1":
                    name = name.split(":", 1)[0]
                return protocol, unquote(name) or None
            return protocol, None
        if path == prefix[:-1]:
            return protocol, None
    return "other", None


def payload_bytes(event: CloudEvent) -> bytes:
    """The event's data as bytes (our events always carry bytes; structured JSON is re-encoded)."""
    data = event.get_data()
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data, separators=(",", ":")).encode()


def _build(attributes: dict[str, Any], data: bytes | None) -> CloudEvent:
    missing = [name for name in REQUIRED_ATTRIBUTES if not attributes.get(name)]
    if missing:
        raise InvalidEventError(f"missing required attribute(s): {', '.join(missing)}")
    if attributes["specversion"] != "1.0":
        raise InvalidEventError(f"unsupported specversion {quoted(attributes['specversion'])}")
    if "time" in attributes and isinstance(attributes["time"], str):
        attributes["time"] = parse_time(attributes["time"])
    try:
        return CloudEvent(attributes, data)
    except BaseCloudEventException as error:
        raise InvalidEventError(f"invalid CloudEvent: {error}") from error


def _attribute_text(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def event_to_kafka(event: CloudEvent, key: str | bytes | None) -> KafkaRecord:
    """Kafka binary content mode: `ce_<name>` headers, `content-type`, raw data as value."""
    headers: list[tuple[str, bytes]] = []
    for name, value in event.get_attributes().items():
        if value is None:
            continue
        # Nearly every value is already a str: skip the conversions (this runs twice a call).
        text = value if type(value) is str else _attribute_text(value)
        if name == "datacontenttype":
            headers.append((CONTENT_TYPE_HEADER, text.encode()))
        else:
            headers.append((KAFKA_ATTRIBUTE_PREFIX + name, text.encode()))
    record_key = key.encode() if isinstance(key, str) else key
    return KafkaRecord(key=record_key, value=payload_bytes(event), headers=headers)


class BinaryEventEncoder:
    """Kafka binary mode for many events that share most attributes, validated once.

    The SDK validates every attribute name and value when an event is built; on the logger's
    hot path that is most of the cost of an event. Here a template event is built through
    the SDK once, from the shared values and every per-event attribute name; `encode` then
    only appends the per-event values, whose names were checked with the template.
    """

    def __init__(self, shared: Mapping[str, str], per_event_names: Iterable[str]) -> None:
        self._per_event_names = frozenset(per_event_names) | {"id", "type", "time"}
        template: dict[str, Any] = {name: "x" for name in self._per_event_names} | dict(shared)
        template["time"] = datetime.now(UTC)
        template.setdefault("specversion", "1.0")
        _build(template, b"")  # raises InvalidEventError for a bad name or value
        self._shared_headers = [
            (KAFKA_ATTRIBUTE_PREFIX + name, text.encode())
            for name, text in {"specversion": "1.0", **shared}.items()
        ]

    def encode(
        self, per_event: Mapping[str, str], data: bytes, content_type: str | None, key: str
    ) -> KafkaRecord:
        """`per_event` holds only names given at construction, with str values."""
        headers = self._shared_headers.copy()
        headers += [
            (KAFKA_ATTRIBUTE_PREFIX + name, text.encode()) for name, text in per_event.items()
        ]
        if content_type:
            headers.append((CONTENT_TYPE_HEADER, content_type.encode()))
        return KafkaRecord(key=key.encode(), value=data, headers=headers)


def _decode_header_text(name: str, raw: bytes | None) -> str:
    if raw is None:
        raise InvalidEventError(f"header {name!r} has no value")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEventError(f"header {name!r} is not UTF-8") from error


def _normalise_headers(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, bytes | None]:
    seen: dict[str, bytes | None] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in seen and (
            lowered.startswith(KAFKA_ATTRIBUTE_PREFIX) or lowered == CONTENT_TYPE_HEADER
        ):
            raise InvalidEventError(f"header {lowered!r} appears more than once")
        seen[lowered] = value
    return seen


def _is_structured(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("application/cloudevents")


def event_from_kafka(
    headers: Iterable[tuple[str, bytes | None]] | None, value: bytes | None
) -> CloudEvent:
    """Read a Kafka record as a CloudEvent; the mode follows `content-type` (binding spec §3).

    Raises InvalidEventError for anything that is not a complete CloudEvent, rather than
    inventing an id or a time the way the SDK's constructor would.
    """
    normalised = _normalise_headers(headers or [])
    raw_content_type = normalised.get(CONTENT_TYPE_HEADER)
    content_type = (
        _decode_header_text(CONTENT_TYPE_HEADER, raw_content_type)
        if raw_content_type is not None
        else None
    )
    if _is_structured(content_type):
        return event_from_structured(value or b"", content_type or "")
    attributes: dict[str, Any] = {}
    for name, raw in normalised.items():
        if name.startswith(KAFKA_ATTRIBUTE_PREFIX):
            attributes[name[len(KAFKA_ATTRIBUTE_PREFIX) :]] = _decode_header_text(name, raw)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return _build(attributes, value if value is not None else None)


# The attributes whose values the SDK refuses when empty, and extension names it accepts.
_NON_EMPTY_ATTRIBUTES = ("id", "source", "type", "subject", "datacontenttype", "dataschema")
_SDK_ATTRIBUTES = frozenset(SDK_REQUIRED_ATTRIBUTES) | frozenset(SDK_OPTIONAL_ATTRIBUTES)
_EXTENSION_NAME = re.compile(r"[a-z0-9]+")
# Distinct header-name lists remembered; a producer sends one or a few.
_MAX_HEADER_LAYOUTS = 256


@dataclass(frozen=True, slots=True)
class HeaderLayout:
    """Where a binary-mode record with these header names keeps its attributes."""

    attributes: tuple[tuple[int, str], ...]  # (header index, attribute name)
    content_type: int | None  # index of the content-type header
    non_empty: tuple[str, ...]  # attributes present that must not be empty


_header_layouts: dict[tuple[str, ...], HeaderLayout | None] = {}


def _header_layout(names: tuple[str, ...]) -> HeaderLayout | None:
    """None when the names alone need the full check: a duplicate, an odd or missing name."""
    lowered = [name.lower() for name in names]
    attributes = [
        (index, name[len(KAFKA_ATTRIBUTE_PREFIX) :])
        for index, name in enumerate(lowered)
        if name.startswith(KAFKA_ATTRIBUTE_PREFIX)
    ]
    attribute_names = {name for _, name in attributes}
    content_types = [index for index, name in enumerate(lowered) if name == CONTENT_TYPE_HEADER]
    clean = (
        len(attribute_names) == len(attributes)
        and len(content_types) <= 1
        and "datacontenttype" not in attribute_names
        and attribute_names.issuperset(REQUIRED_ATTRIBUTES)
        and all(
            name in _SDK_ATTRIBUTES or (name != "data" and _EXTENSION_NAME.fullmatch(name))
            for name in attribute_names
        )
    )
    if not clean:
        return None
    present = attribute_names | ({"datacontenttype"} if content_types else set())
    return HeaderLayout(
        attributes=tuple(attributes),
        content_type=content_types[0] if content_types else None,
        non_empty=tuple(name for name in _NON_EMPTY_ATTRIBUTES if name in present),
    )


def binary_header_layout(names: tuple[str, ...]) -> HeaderLayout | None:
    """Where records with these header names keep their attributes, remembered per name list;
    None when such a record needs the full check."""
    try:
        return _header_layouts[names]
    except KeyError:
        layout = _header_layout(names)
        if len(_header_layouts) < _MAX_HEADER_LAYOUTS:
            _header_layouts[names] = layout
        return layout


def _binary_attributes(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str] | None:
    """The attribute texts of a binary-mode record whose every check but the time's passes,
    else None."""
    layout = binary_header_layout(tuple(map(itemgetter(0), headers)))
    if layout is None:
        return None
    try:
        attributes: dict[str, Any] = {
            name: headers[index][1].decode()  # type: ignore[union-attr]  # None: caught below
            for index, name in layout.attributes
        }
        if layout.content_type is not None:
            content_type = headers[layout.content_type][1].decode()  # type: ignore[union-attr]  # as above
            if _is_structured(content_type):
                return None
            attributes["datacontenttype"] = content_type
    except (AttributeError, UnicodeDecodeError):  # a header without a value, or not UTF-8
        return None
    if attributes["specversion"] != "1.0" or not all(map(attributes.__getitem__, layout.non_empty)):
        return None
    return attributes


class EventParts(NamedTuple):
    """A CloudEvent read for storing: attribute texts, the time parsed, the data as bytes."""

    attributes: dict[str, str]  # as sent in binary mode; typed values made text
    time: datetime | None
    data: bytes


def event_parts_from_kafka(
    headers: Sequence[tuple[str, bytes | None]] | None, value: bytes | None
) -> EventParts:
    """A Kafka record accepted and refused exactly as `event_from_kafka` does it.

    For the consumer's hot path: a binary-mode record whose header names were seen before
    is checked against the SDK's rules without building the SDK's object (most of the cost
    of reading an event), and its attributes stay the text they were sent as. Anything
    unusual takes `event_from_kafka`, which says what is wrong.
    """
    attributes = _binary_attributes(headers) if headers else None
    if attributes is not None:
        time_text = attributes.get("time")
        try:
            time = None if time_text is None else parse_time(time_text)
        except InvalidEventError:
            pass  # event_from_kafka below refuses it with the reason
        else:
            return EventParts(attributes, time, value or b"")
    event = event_from_kafka(headers, value)
    texts = {
        name: _attribute_text(attribute)
        for name, attribute in event.get_attributes().items()
        if attribute is not None and name != "time"
    }
    time = event.get_time() if _time_given(headers, value) else None  # else the SDK's now
    if time is not None:
        texts["time"] = format_time(time)
    return EventParts(texts, time, payload_bytes(event))


def _time_given(headers: Sequence[tuple[str, bytes | None]] | None, value: bytes | None) -> bool:
    """Whether a record that `event_from_kafka` accepted carries a time of its own."""
    normalised = _normalise_headers(headers or [])
    content_type = normalised.get(CONTENT_TYPE_HEADER)
    if content_type is not None and _is_structured(content_type.decode()):
        return "time" in json.loads(value or b"")
    return KAFKA_ATTRIBUTE_PREFIX + "time" in normalised


def event_from_structured(body: bytes, content_type: str = "") -> CloudEvent:
    """Structured mode: the whole event as a JSON object."""
    if content_type and "json" not in content_type.lower():
        raise InvalidEventError(f"unsupported structured format {quoted(content_type)}")
    return _event_from_envelope(_parse_json(body, "structured event"))


def _parse_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except RecursionError as error:  # the parser follows nesting on the C stack
        raise InvalidEventError(f"{what} is nested too deeply to read") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidEventError(f"{what} is not JSON: {error}") from error


def _event_from_envelope(envelope: Any) -> CloudEvent:
    if not isinstance(envelope, dict):
        raise InvalidEventError("structured event must be a JSON object")
    attributes = {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
    if "data_base64" in envelope:
        try:
            data: bytes | None = base64.b64decode(envelope["data_base64"], validate=True)
        except (ValueError, TypeError) as error:
            raise InvalidEventError("data_base64 is not base64") from error
    elif "data" in envelope:
        data = _data_bytes(envelope["data"], attributes)
    else:
        data = None
    return _build(attributes, data)


def _data_bytes(raw: Any, attributes: Mapping[str, Any]) -> bytes:
    """Structured `data` as the bytes binary mode carries: text as it is, JSON re-encoded."""
    try:
        if isinstance(raw, str) and not _is_json_type(attributes):
            return raw.encode()
        return json.dumps(raw, separators=(",", ":")).encode()
    except UnicodeEncodeError as error:  # JSON's \ud800 escapes make lone surrogates
        raise InvalidEventError("data is not valid Unicode text") from error
    except RecursionError as error:
        raise InvalidEventError("data is nested too deeply to write") from error


def _is_json_type(attributes: Mapping[str, Any]) -> bool:
    content_type = str(attributes.get("datacontenttype") or "application/json").lower()
    media = content_type.split(";", 1)[0].strip()
    return media.endswith("/json") or media.endswith("+json")


def cloudevent_http_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers an HTTP CloudEvent is read from (`ce-*`, `content-type`), names lowered.

    Each must be UTF-8 and appear once: two values for one attribute leave no way to tell
    which was meant, and a server's Latin-1 reading would turn UTF-8 into other text.
    """
    texts: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        if not (name.startswith(HTTP_ATTRIBUTE_PREFIX) or name == CONTENT_TYPE_HEADER):
            continue
        if name in texts:
            raise InvalidEventError(f"header {quoted(name)} appears more than once")
        try:
            texts[name] = raw_value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidEventError(f"header {quoted(name)} is not UTF-8") from error
    return texts


def event_from_http(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """HTTP binary mode (`Ce-*` headers, what KServe's agent sends) or structured mode.

    The event is checked for writing to Kafka (`check_writable`) as well.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get(CONTENT_TYPE_HEADER)
    if _is_structured(content_type):
        return check_writable(event_from_structured(body, content_type or ""))
    attributes: dict[str, Any] = {}
    for name, value in lowered.items():
        if name.startswith(HTTP_ATTRIBUTE_PREFIX):
            # The HTTP binding percent-encodes values; KServe's Go SDK writes raw JSON,
            # which unquote leaves as it is.
            try:
                attributes[name[len(HTTP_ATTRIBUTE_PREFIX) :]] = unquote(value, errors="strict")
            except UnicodeDecodeError as error:
                raise InvalidEventError(
                    f"header {quoted(name)} percent-encodes bytes that are not UTF-8"
                ) from error
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return check_writable(_build(attributes, body))


def events_from_http_batch(body: bytes) -> list[CloudEvent]:
    """`application/cloudevents-batch+json`: a JSON array of structured events, each checked
    for writing to Kafka; an error names the event's index."""
    envelopes = _parse_json(body, "batch")
    if not isinstance(envelopes, list):
        raise InvalidEventError("batch must be a JSON array of events")
    events = []
    for index, envelope in enumerate(envelopes):
        try:
            events.append(check_writable(_event_from_envelope(envelope)))
        except InvalidEventError as error:
            raise InvalidEventError(f"event {index} of the batch: {error}") from error
    return events


def check_writable(event: CloudEvent) -> CloudEvent:
    """`event`, once sure that `event_to_kafka` writes it as the sender meant it.

    The SDK leaves these to us: an extension name must be lowercase letters and digits only
    (its pattern lets a trailing newline through); an extension value a string, number or
    boolean (an object or array has no CloudEvents type, and would be written as a Python
    repr); every text valid Unicode (JSON escapes can make lone surrogates, which have no
    UTF-8); the time within years 1-9999 once in UTC (`0001-01-01T00:00:00+01:00` is not).
    """
    for name, value in event.get_attributes().items():
        if name not in _SDK_ATTRIBUTES and not _EXTENSION_NAME.fullmatch(name):
            raise InvalidEventError(f"extension name {quoted(name)} is not lowercase a-z0-9")
        if isinstance(value, str):
            if not value.isascii():
                _check_unicode(name, value)
        elif isinstance(value, datetime):
            _check_utc_range(value)
        elif value is not None and not isinstance(value, int | float):  # bool is an int
            raise InvalidEventError(
                f"attribute {quoted(name)} is a {type(value).__name__}, "
                "not a string, number or boolean"
            )
    return event


def _check_unicode(name: str, value: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError as error:
        raise InvalidEventError(f"attribute {quoted(name)} is not valid Unicode text") from error


def _check_utc_range(moment: datetime) -> None:
    try:
        moment.astimezone(UTC)
    except OverflowError as error:
        raise InvalidEventError(
            f"time {moment.isoformat()} is outside years 1-9999 once converted to UTC"
        ) from error
