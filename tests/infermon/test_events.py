"""The event contract: paths, header names, reading and writing events (no broker needed)."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime

import pytest

from infermon import events
from infermon.events import InvalidEventError


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/iris:predict", ("v1", "iris")),
        ("/v1/models/iris:explain", ("v1", "iris")),
        ("/v1/models/iris", ("v1", "iris")),
        ("/v1/models", ("v1", None)),
        ("/v2/models/iris/infer", ("v2", "iris")),
        ("/v2/models/iris/versions/3/infer", ("v2", "iris")),
        ("/v2/models/my%20model/infer?x=1", ("v2", "my model")),
        ("/v2/health/ready", ("v2", None)),
        ("/v2", ("v2", None)),
        ("/predict", ("other", None)),
        ("/v10/models/x", ("other", None)),
    ],
)
def test_parse_inference_path(path: str, expected: tuple[str, str | None]) -> None:
    assert events.parse_inference_path(path) == expected


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("x-request-id", "X-Request-Id"), ("X-B3-TRACEID", "X-B3-Traceid"), ("host", "Host")],
)
def test_canonical_header_name_matches_go(name: str, canonical: str) -> None:
    assert events.canonical_header_name(name) == canonical


def _headers(**overrides: bytes | None) -> list[tuple[str, bytes | None]]:
    base: dict[str, bytes | None] = {
        "ce_specversion": b"1.0", "ce_id": b"abc", "ce_source": b"/s",
        "ce_type": events.KSERVE_REQUEST_TYPE, "content-type": b"application/json",
    }  # fmt: skip
    base["ce_type"] = events.KSERVE_REQUEST_TYPE.encode()
    base.update(overrides)
    return [(name, value) for name, value in base.items() if value is not None]


def test_binary_record_round_trips() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event = events.CloudEvent(
        {"id": "abc", "source": "/s", "type": events.KSERVE_REQUEST_TYPE, "time": moment,
         "datacontenttype": "application/json", "modelname": "iris", "truncated": True},
        b'{"instances": [[1]]}',
    )  # fmt: skip
    record = events.event_to_kafka(event, key="abc")
    headers = dict(record.headers)
    assert record.key == b"abc"
    assert headers["ce_time"] == b"2026-01-02T03:04:05.678901Z"
    assert headers["content-type"] == b"application/json"
    assert headers["ce_truncated"] == b"true"
    assert "ce_datacontenttype" not in headers
    back = events.event_from_kafka(record.headers, record.value)
    assert back.get_attributes() == {**event.get_attributes(), "truncated": "true"}
    assert events.payload_bytes(back) == b'{"instances": [[1]]}'


def test_go_nanosecond_time_is_accepted() -> None:
    event = events.event_from_kafka(_headers(ce_time=b"2026-11-29T07:01:02.123456789Z"), b"{}")
    assert event.get_time() == datetime(2026, 11, 29, 7, 1, 2, 123456, tzinfo=UTC)


@pytest.mark.parametrize("missing", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
def test_missing_required_attribute_is_rejected_not_invented(missing: str) -> None:
    with pytest.raises(InvalidEventError, match=missing.removeprefix("ce_")):
        events.event_from_kafka(_headers(**{missing: None}), b"{}")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([*_headers(), ("ce_id", b"other")], "more than once"),
        (_headers(ce_id=b"\xff\xfe"), "UTF-8"),
        ([*_headers(), ("ce_X-Foo", b"1")], "invalid CloudEvent"),
        (_headers(ce_specversion=b"0.3"), "specversion"),
        (_headers(ce_time=b"yesterday"), "RFC 3339"),
    ],
)
def test_malformed_records_are_rejected_with_a_reason(
    headers: list[tuple[str, bytes | None]], reason: str
) -> None:
    with pytest.raises(InvalidEventError, match=reason):
        events.event_from_kafka(headers, b"{}")


def test_none_header_value_is_rejected() -> None:
    with pytest.raises(InvalidEventError, match="no value"):
        events.event_from_kafka([*_headers(), ("ce_namespace", None)], b"{}")


def test_structured_mode_is_chosen_by_content_type_even_with_ce_headers() -> None:
    envelope = {"specversion": "1.0", "id": "s1", "source": "/s", "type": "t",
                "datacontenttype": "application/json", "data": {"a": [1, 2]}}  # fmt: skip
    headers = [("content-type", b"application/cloudevents+json"), ("ce_id", b"wrong")]
    event = events.event_from_kafka(headers, json.dumps(envelope).encode())
    assert event.get_id() == "s1"
    assert json.loads(events.payload_bytes(event)) == {"a": [1, 2]}


def test_structured_base64_data_is_decoded() -> None:
    envelope = {"specversion": "1.0", "id": "s1", "source": "/s", "type": "t",
                "data_base64": "AAEC"}  # fmt: skip
    event = events.event_from_structured(json.dumps(envelope).encode())
    assert events.payload_bytes(event) == b"\x00\x01\x02"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff"])
def test_structured_envelope_that_is_not_a_json_object_is_rejected(body: bytes) -> None:
    with pytest.raises(InvalidEventError):
        events.event_from_structured(body, "application/cloudevents+json")


def test_http_binary_mode_reads_kserve_agent_headers() -> None:
    headers = {"Ce-Id": "x1", "Ce-Specversion": "1.0", "Ce-Source": "http://localhost:9081/",
               "Ce-Type": events.KSERVE_RESPONSE_TYPE, "Ce-Metadata": '{"X-Request-Id":["a"]}',
               "Ce-Endpoint": "", "Content-Type": "application/json"}  # fmt: skip
    event = events.event_from_http(headers, b'{"predictions": [1]}')
    assert event.get_extension("metadata") == '{"X-Request-Id":["a"]}'
    assert event.get_extension("endpoint") == ""
    assert event.get_datacontenttype() == "application/json"


def test_batch_reports_which_event_is_bad() -> None:
    good = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    with pytest.raises(InvalidEventError, match="event 1 of the batch"):
        events.events_from_http_batch(json.dumps([good, {"id": "2"}]).encode())


_GOOD_ENVELOPE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
_NESTED_100K = "[" * 100_000 + "]" * 100_000


def _structured_with(**changes: object) -> bytes:
    return json.dumps({**_GOOD_ENVELOPE, **changes}).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_structured_with(time="0001-01-01T00:00:00+01:00"), "outside years 1-9999"),
        (_structured_with(time="9999-12-31T23:59:59-01:00"), "outside years 1-9999"),
        (_structured_with(time="9999-12-31T24:00:00Z"), "RFC 3339"),
        (_structured_with(id="x").replace(b'"x"', b'"\\udcff"'), "'id' is not valid Unicode"),
        (_structured_with(namespace={"a": 1}), "'namespace' is a dict"),
        (_structured_with(namespace=[1]), "'namespace' is a list"),
        (_structured_with(**{"abc\n": "v"}), "extension name"),
        (_structured_with(data="x", datacontenttype="text/plain").replace(b'"x"', b'"\\ud800"'),
         "data is not valid Unicode"),
        (_structured_with(data=None).replace(b"null", _NESTED_100K.encode()), "nested too deeply"),
        (_NESTED_100K.encode(), "nested too deeply"),
        (_structured_with(specversion="x" * 10_000), "10000 characters"),
    ],
)  # fmt: skip
def test_http_structured_events_kafka_cannot_carry_as_sent_are_refused(
    body: bytes, reason: str
) -> None:
    with pytest.raises(InvalidEventError, match=re.escape(reason)):
        events.event_from_http({"content-type": "application/cloudevents+json"}, body)
    with pytest.raises(InvalidEventError, match=re.escape(reason)) as in_batch:
        events.events_from_http_batch(b"[" + body + b"]")
    # Nesting is found while parsing the whole batch, before any one event.
    assert "nested" in reason or str(in_batch.value).startswith("event 0 of the batch")


def test_http_structured_extension_numbers_and_booleans_are_kept_as_their_text() -> None:
    body = _structured_with(count=3, ratio=0.5, flag=True, namespace="équipe")
    record = events.event_to_kafka(events.event_from_http(
        {"content-type": "application/cloudevents+json"}, body), key=None)  # fmt: skip
    headers = dict(record.headers)
    assert (headers["ce_count"], headers["ce_ratio"], headers["ce_flag"]) == (b"3", b"0.5", b"true")
    assert headers["ce_namespace"] == "équipe".encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([(b"ce-id", b"\xff\xfe")], "'ce-id' is not UTF-8"),
        ([(b"ce-id", b"a"), (b"Ce-Id", b"b")], "'ce-id' appears more than once"),
        ([(b"content-type", b"a"), (b"content-type", b"b")], "appears more than once"),
    ],
)
def test_http_headers_of_an_event_are_utf8_and_unique(
    raw: list[tuple[bytes, bytes]], reason: str
) -> None:
    with pytest.raises(InvalidEventError, match=re.escape(reason)):
        events.cloudevent_http_headers(raw)


def test_http_headers_read_utf8_and_skip_other_headers() -> None:
    raw = [(b"Ce-Namespace", "équipe".encode()), (b"accept", b"\xff"), (b"accept", b"x")]
    assert events.cloudevent_http_headers(raw) == {"ce-namespace": "équipe"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("%FF", "not UTF-8"),
        ("%ED%A0%80", "not UTF-8"),  # an encoded surrogate is not UTF-8 either
        ("0001-01-01T00:00:00+01:00", "outside years 1-9999"),
    ],
)
def test_http_binary_values_that_kafka_cannot_carry_are_refused(value: str, reason: str) -> None:
    name = "Ce-Time" if value[0].isdigit() else "Ce-Namespace"
    headers = {"Ce-Id": "1", "Ce-Specversion": "1.0", "Ce-Source": "/s", "Ce-Type": "t",
               name: value}  # fmt: skip
    with pytest.raises(InvalidEventError, match=reason):
        events.event_from_http(headers, b"")


def test_kafka_structured_records_nested_too_deeply_are_invalid_not_a_crash() -> None:
    value = _structured_with(data=None).replace(b"null", _NESTED_100K.encode())
    with pytest.raises(InvalidEventError, match="nested too deeply"):
        events.event_from_kafka([("content-type", b"application/cloudevents+json")], value)


def test_encoder_writes_what_the_sdk_path_writes() -> None:
    shared = {"source": "http://localhost:9081/", "namespace": "prod", "endpoint": ""}
    encoder = events.BinaryEventEncoder(shared, ["modelname", "statuscode"])
    per_event = {
        "id": "r1", "type": events.KSERVE_RESPONSE_TYPE, "time": "2026-01-02T03:04:05.678901Z",
        "modelname": "iris", "statuscode": "200",
    }  # fmt: skip
    fast = encoder.encode(per_event, b"{}", "application/json", key="r1")
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    attributes = {**shared, **per_event, "time": moment, "datacontenttype": "application/json"}
    via_sdk = events.event_to_kafka(events.CloudEvent(attributes, b"{}"), key="r1")
    assert sorted(fast.headers) == sorted(via_sdk.headers)
    assert (fast.key, fast.value) == (via_sdk.key, via_sdk.value)
    assert events.event_from_kafka(fast.headers, fast.value).get_extension("statuscode") == "200"


@pytest.mark.parametrize(
    ("shared", "names"), [({"source": "/s"}, ["Bad-Name"]), ({"source": ""}, ["modelname"])]
)
def test_encoder_validates_names_and_shared_values_once(shared: dict, names: list[str]) -> None:
    with pytest.raises(InvalidEventError):
        events.BinaryEventEncoder(shared, names)


ENVELOPE = {"specversion": "1.0", "id": "s1", "source": "/s", "type": "t", "flag": True}
STRUCTURED = json.dumps({**ENVELOPE, "time": "2026-01-01T00:00:00Z", "data": {"a": 1}}).encode()
STRUCTURED_WITHOUT_TIME = json.dumps(ENVELOPE).encode()
EVERY_KIND_OF_RECORD = {
    "plain": (_headers(), b"{}"),
    "with-time-and-extensions": (
        _headers(ce_time=b"2026-11-29T07:00:00.5+02:00", ce_modelname=b"iris", ce_empty=b""),
        b"{}",
    ),
    "upper-case-names": ([("CE_ID" if n == "ce_id" else n, v) for n, v in _headers()], b"{}"),
    "no-content-type": (_headers(**{"content-type": None}), None),
    "empty-content-type": (_headers(**{"content-type": b""}), b"{}"),
    "structured": ([("content-type", b"application/cloudevents+json")], STRUCTURED),
    "structured-with-ce-headers": (
        [*_headers(), ("Content-Type", b"application/cloudevents+json; charset=utf-8")][1:],
        STRUCTURED,
    ),
    "structured-without-time": (
        [("content-type", b"application/cloudevents+json")],
        STRUCTURED_WITHOUT_TIME,
    ),
    "missing-id": (_headers(ce_id=None), b"{}"),
    "empty-id": (_headers(ce_id=b""), b"{}"),
    "empty-subject": (_headers(ce_subject=b""), b"{}"),
    "bad-specversion": (_headers(ce_specversion=b"0.3"), b"{}"),
    "bad-time": (_headers(ce_time=b"yesterday"), b"{}"),
    "naive-time": (_headers(ce_time=b"2026-01-01T00:00:00"), b"{}"),
    "duplicate": ([*_headers(), ("ce_ID", b"other")], b"{}"),
    "duplicate-content-type": ([*_headers(), ("Content-Type", b"text/plain")], b"{}"),
    "bad-extension-name": ([*_headers(), ("ce_x-foo", b"1")], b"{}"),
    "reserved-data": ([*_headers(), ("ce_data", b"1")], b"{}"),
    "ce-datacontenttype": ([*_headers(), ("ce_datacontenttype", b"text/plain")], b"{}"),
    "no-value": ([*_headers(), ("ce_namespace", None)], b"{}"),
    "not-utf8": (_headers(ce_source=b"\xff"), b"{}"),
    "not-utf8-content-type": (_headers(**{"content-type": b"\xff"}), b"{}"),
}


def _text(value: object) -> str:
    """CloudEvents' canonical text of an attribute value (spec: type system)."""
    return "true" if value is True else "false" if value is False else str(value)


def test_structured_values_become_their_canonical_text() -> None:
    parts = events.event_parts_from_kafka(*EVERY_KIND_OF_RECORD["structured"])
    assert parts.attributes["flag"] == "true"
    assert parts.attributes["time"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("name", list(EVERY_KIND_OF_RECORD))
def test_event_parts_accept_and_refuse_exactly_what_the_sdk_path_does(name: str) -> None:
    _assert_read_as_the_sdk_path_reads(*EVERY_KIND_OF_RECORD[name])


def _assert_read_as_the_sdk_path_reads(
    headers: list[tuple[str, bytes | None]], value: bytes | None
) -> None:
    try:
        expected = events.event_from_kafka(headers, value)
    except InvalidEventError as error:
        for _ in range(2):  # the second time, the header layout is remembered
            with pytest.raises(InvalidEventError) as refused:
                events.event_parts_from_kafka(headers, value)
            assert str(refused.value) == str(error)
        return
    given_time = b"time" in (value or b"") or any(n.lower() == "ce_time" for n, _ in headers)
    for _ in range(2):
        parts = events.event_parts_from_kafka(headers, value)
        # The SDK makes up a time (now) for an event that has none; the parts keep None.
        assert parts.time == (expected.get_time() if given_time else None)
        assert parts.data == events.payload_bytes(expected)
        texts = {k: v for k, v in parts.attributes.items() if k != "time"}
        assert texts == {k: _text(v) for k, v in expected.get_attributes().items() if k != "time"}
        if "time" in parts.attributes:
            assert events.parse_time(parts.attributes["time"]) == expected.get_time()


# Pieces the generated records below are made of: names and values that each break, or
# nearly break, one rule of the SDK's, in every mix the fixed cases above do not cover.
_ODD_NAMES = (
    "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type", "ce_subject",
    "ce_dataschema", "ce_datacontenttype", "ce_data", "ce_Foo", "ce_foo-bar", "ce_x1", "ce_",
    "CE_ID", "Content-Type", "ce_" + "a" * 30, "x-other", "ce_\u00fcmlaut",
)  # fmt: skip
_ODD_VALUES = (
    b"", b"1.0", b"0.3", b"x", b"\xff\xfe", None, b"2026-11-29T08:00:00+02:00",
    b"2026-11-29T08:00:00", b"2026-11-29T08:00:00.123456789Z", b"garbage",
    b"application/cloudevents+json", b"text/plain", b"application/json; charset=utf-8", b"  ",
    b"true", b"\xc3\xbc", b"\x00",
)  # fmt: skip
_ODD_BODIES = (b'{"instances": [[1]]}', b"", None, STRUCTURED_WITHOUT_TIME, b"\xff")


def _generated_record(rng: random.Random) -> tuple[list[tuple[str, bytes | None]], bytes | None]:
    headers = _headers()
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(headers) or 1)
        change = rng.randrange(5)
        if change == 0 and headers:
            headers.pop(at)
        elif change == 1:
            headers.insert(at, (rng.choice(_ODD_NAMES), rng.choice(_ODD_VALUES)))
        elif change == 2 and headers:
            headers[at] = (headers[at][0], rng.choice(_ODD_VALUES))
        elif change == 3 and headers:
            name = "".join(c.upper() if rng.random() < 0.5 else c for c in headers[at][0])
            headers[at] = (name, headers[at][1])
        elif headers:
            headers[at] = (rng.choice(_ODD_NAMES), headers[at][1])
    return headers, rng.choice(_ODD_BODIES)


def test_event_parts_read_generated_records_as_the_sdk_path_does() -> None:
    """3,000 records, each the plain one with one to three headers dropped, added, renamed,
    re-cased or given an odd value (110,000 of them passed when this was written)."""
    rng = random.Random(20261129)
    for _ in range(3000):
        _assert_read_as_the_sdk_path_reads(*_generated_record(rng))
