"""What the trigger reads: each input record becomes one inference request, or is refused.

Three shapes are accepted, those KServe's Kafka sample and Knative's KafkaSource send:

- a CloudEvent, binary or structured (the mode follows `content-type`), whose data is a
  v1 or v2 request body; the model and protocol come from its `modelname` and `protocol`
  extensions, else from the flags;
- a raw JSON request body with no CloudEvent attributes; its id is KafkaSource's
  `partition:<p>/offset:<o>`, stable across redeliveries;
- a Knative KafkaSource event (`dev.knative.kafka.event`); data that is not already a request
  body, such as an S3/MinIO object-created notification, is sent as the one v1 instance.

>>> request = read_request([], b'{"instances": [[1, 2]]}', 0, 7, "iris", "v1")
>>> (request.id, request.path)
('partition:0/offset:7', '/v1/models/iris:predict')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast
from urllib.parse import quote

from confluent_kafka import Message

from infermon import events
from infermon.events import InvalidEventError

Protocol = Literal["v1", "v2"]
KNATIVE_KAFKA_EVENT_TYPE: Final = "dev.knative.kafka.event"
JSON_CONTENT_TYPE: Final = "application/json"
# An event of these types is an answer: calling the model with it would loop outputs back in.
RESPONSE_TYPES: Final = frozenset({events.KSERVE_RESPONSE_TYPE, events.SELDON_RESPONSE_TYPE})
# Fields whose presence makes a JSON object a request body rather than something to wrap.
REQUEST_BODY_FIELDS: Final = ("instances", "inputs")


class InvalidInputError(ValueError):
    """A record that cannot become an inference request; the message says why."""


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    id: str
    model_name: str
    protocol: Protocol
    path: str  # what to POST to, from inference_path()
    body: bytes
    content_type: str


def record_position(message: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed record; only an error event has none."""
    partition, offset = message.partition(), message.offset()
    if partition is None or offset is None:
        raise ValueError(f"an error event, not a record: {message.error()}")
    return partition, offset


def record_headers(message: Message) -> Sequence[tuple[str, bytes | None]]:
    """A consumed record's headers, (name, bytes) pairs. confluent_kafka types a Message's
    headers for producing too (text values, a dict), which a consumer never gets."""
    return cast("list[tuple[str, bytes | None]]", message.headers() or [])


def inference_path(protocol: Protocol, model_name: str) -> str:
    """The KServe path to POST to: `/v1/models/NAME:predict` or `/v2/models/NAME/infer`."""
    name = quote(model_name, safe="")
    if protocol == "v1":
        return f"/v1/models/{name}:predict"
    return f"/v2/models/{name}/infer"


def read_request(
    headers: Iterable[tuple[str, bytes | None]] | None,
    value: bytes | None,
    partition: int,
    offset: int,
    default_model: str,
    default_protocol: Protocol,
) -> InferenceRequest:
    """The request an input record asks for; raises InvalidInputError."""
    header_list = list(headers or [])
    if _is_cloudevent(header_list):
        try:
            event = events.event_from_kafka(header_list, value)
        except InvalidEventError as error:
            raise InvalidInputError(f"invalid CloudEvent: {error}") from error
        return _from_event(event, default_model, default_protocol)
    body = _raw_body(value or b"")
    model_name = _required_model(default_model)
    return InferenceRequest(
        id=f"partition:{partition}/offset:{offset}",
        model_name=model_name,
        protocol=default_protocol,
        path=inference_path(default_protocol, model_name),
        body=body,
        content_type=JSON_CONTENT_TYPE,
    )


def _is_cloudevent(headers: list[tuple[str, bytes | None]]) -> bool:
    """Structured by `content-type`, binary by any `ce_` header (then it must be complete)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith("ce_"):
            return True
        if (
            lowered == "content-type"
            and value
            and value.lower().startswith(b"application/cloudevents")
        ):
            return True
    return False


def _from_event(
    event: events.CloudEvent, default_model: str, default_protocol: Protocol
) -> InferenceRequest:
    event_type = event.get_type()
    if event_type in RESPONSE_TYPES:
        raise InvalidInputError(f"an event of type {event_type} is an answer, not a request")
    protocol = _protocol(event.get_extension(events.EXT_PROTOCOL), default_protocol)
    body = events.payload_bytes(event)
    content_type = event.get_datacontenttype() or JSON_CONTENT_TYPE
    if event_type == KNATIVE_KAFKA_EVENT_TYPE:
        document = _parse_json(body, "the KafkaSource event's data")
        if not (isinstance(document, dict) and any(f in document for f in REQUEST_BODY_FIELDS)):
            # The record KafkaSource wrapped (an S3 notification, say) is the model's instance;
            # a v1 instance needs the v1 endpoint whatever the default protocol.
            body = json.dumps({"instances": [document]}, separators=(",", ":")).encode()
            protocol = "v1"
        content_type = JSON_CONTENT_TYPE
    model_name = _required_model(str(event.get_extension(events.EXT_MODEL_NAME) or default_model))
    return InferenceRequest(
        id=event.get_id(),
        model_name=model_name,
        protocol=protocol,
        path=inference_path(protocol, model_name),
        body=body,
        content_type=_header_safe(content_type) or JSON_CONTENT_TYPE,
    )


def _protocol(value: object, default: Protocol) -> Protocol:
    if value is None or value == "":
        return default
    if value in ("v1", "v2"):
        return "v1" if value == "v1" else "v2"
    raise InvalidInputError(f"protocol extension {value!r}: only v1 and v2 can be called")


def _required_model(name: str) -> str:
    if not name:
        raise InvalidInputError(
            "no model name: the event has no modelname and --model-name is empty"
        )
    return name


def _parse_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{what} is not JSON: {error}") from error


def _raw_body(value: bytes) -> bytes:
    """A record without CloudEvent attributes must be a JSON request body."""
    if not isinstance(_parse_json(value, "a record without CloudEvent attributes"), dict):
        raise InvalidInputError("a raw request body must be a JSON object")
    return value


def _header_safe(text: str) -> str | None:
    """`text` if it can go into an HTTP header as it is (printable ASCII), else None."""
    return text if text.isascii() and text.isprintable() else None
