"""Fuzzing the ingest endpoint's parsing: random binary, structured and batch requests.

The app runs in-process (httpx's ASGI transport) in front of a real sink and broker, so each
request costs milliseconds. Whatever arrives: the answer is 202, 400 or 413, never a 5xx; a
refusal carries a reason; no request reaches the last-resort guard; and at the end the topic
holds exactly the events of the 202 answers (a refused request writes nothing, an accepted
event always fits the broker).
"""

from __future__ import annotations

import asyncio
import json
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from infermon import events
from logger.ingest import ingest_app
from logger.metrics import IngestMetrics
from logger.producer.metrics import SinkMetrics
from logger.producer.sink import EventSink
from logger.settings import IngestSettings
from tests.fixtures.broker import read_all, read_topic
from tests.fixtures.factories import TopicFactory

ANSWERS = {202, 400, 413}
T = TypeVar("T")
STRUCTURED_TYPE = "application/cloudevents+json"
HTTP_TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# Where a deeply nested JSON value is put into an envelope after json.dumps.
DEEP_MARK = "__deep__"

# Any code point, lone surrogates included (what JSON's \\uXXXX escapes can make).
any_text = st.text(st.characters(codec=None, categories=None), max_size=12)
edge_times = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T24:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2026-11-29T07:01:02.123456789Z",
        "2026-11-29T07:01:02",
        "2026-11-29T07:01:02+24:00",
        "0000-01-01T00:00:00Z",
        "yesterday",
        "",
    ]
)
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))
random_times = st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    offsets,
)
huge_text = st.integers(min_value=500_000, max_value=1_100_000).map(lambda size: "h" * size)
deep_json = st.integers(min_value=500, max_value=120_000).map(
    lambda depth: "[" * depth + "]" * depth
)
usual_text = st.text(string.ascii_letters + string.digits + "-_.:/ ", min_size=1, max_size=12)
odd_text = st.one_of(any_text, edge_times, random_times, huge_text)
usual_names = st.sampled_from(["namespace", "requestid", "partitionkey", "truncated", "x1"])
odd_names = st.one_of(st.sampled_from(["data", "Upper", "a_b", "id\n", ""]), any_text)


def _mostly(draw: st.DrawFn, usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> T:
    """`usual` four times in five: most requests must be near-valid to test what is accepted."""
    return draw(odd if draw(st.sampled_from(range(5))) == 0 else usual)


@dataclass
class FuzzRequest:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    mode: str

    def events_if_accepted(self) -> int:
        """How many events a 202 for this request writes."""
        if self.mode != "batch":
            return 1
        return len(json.loads(self.body))


def _header_bytes(text: str) -> bytes:
    """What a client can put in a header: any bytes but CR, LF and NUL."""
    encoded = text.encode("utf-8", "surrogatepass")
    return encoded.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")


def _header_name(text: str) -> bytes:
    """What an HTTP server lets through as a header name: token characters, lowered."""
    return "".join(c for c in text if c in HTTP_TOKEN_CHARACTERS).lower().encode()


odd_header_values = st.one_of(
    odd_text.map(_header_bytes),
    st.binary(max_size=12).map(lambda raw: _header_bytes(raw.decode("latin-1"))),
    st.sampled_from([b"%FF", b"%C3%28", b"%ED%A0%80", b"%E2%82%AC", "é".encode()]),
)


@st.composite
def binary_requests(draw: st.DrawFn) -> FuzzRequest:
    required = {"specversion": b"1.0", "id": b"fuzz", "source": b"/fuzz", "type": b"t"}
    headers: list[tuple[bytes, bytes]] = []
    for name, good in required.items():
        value = _mostly(draw, st.just(good), st.one_of(st.none(), odd_header_values))
        if value is not None:
            headers.append((b"ce-" + name.encode(), value))
    if draw(st.booleans()):
        time = _mostly(draw, random_times, edge_times)
        headers.append((b"ce-time", _header_bytes(time)))
    for _ in range(draw(st.integers(0, 3))):
        name = _header_name("ce-" + _mostly(draw, usual_names, odd_names))
        headers.append((name, _mostly(draw, usual_text.map(str.encode), odd_header_values)))
    content_type = _mostly(
        draw,
        st.sampled_from([b"application/json", b"text/plain"]),
        st.one_of(st.sampled_from([b"", b"application/cbor"]), st.none(), odd_header_values),
    )
    if content_type is not None:
        headers.append((b"content-type", content_type))
    body = _mostly(
        draw,
        st.binary(max_size=64),
        st.integers(min_value=900_000, max_value=1_300_000).map(lambda size: b"b" * size),
    )
    return FuzzRequest(draw(st.permutations(headers)), body, "binary")


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), any_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
odd_attribute_values = st.one_of(json_values, odd_text)


@st.composite
def envelopes(draw: st.DrawFn) -> object:
    if draw(st.sampled_from(range(10))) == 0:  # now and then not an object at all
        return draw(json_values)
    envelope: dict[str, object] = {}
    for name, good in {"specversion": "1.0", "id": "fuzz", "source": "/fuzz", "type": "t"}.items():
        value = _mostly(draw, st.just(good), st.one_of(st.none(), odd_attribute_values))
        if value is not None:
            envelope[name] = value
    if draw(st.booleans()):
        envelope["time"] = _mostly(draw, random_times, st.one_of(edge_times, json_values))
    for _ in range(draw(st.integers(0, 3))):
        name = _mostly(draw, usual_names, odd_names)
        envelope[name] = _mostly(draw, st.one_of(usual_text, st.integers()), odd_attribute_values)
    if draw(st.booleans()):
        envelope["datacontenttype"] = _mostly(
            draw, st.sampled_from(["application/json", "text/plain"]), odd_attribute_values
        )
    data_kind = draw(st.sampled_from(["none", "json", "json", "text", "base64", "deep"]))
    if data_kind == "json":
        envelope["data"] = draw(json_values)
    elif data_kind == "text":
        envelope["data"] = _mostly(draw, usual_text, st.one_of(any_text, huge_text))
    elif data_kind == "base64":
        envelope["data_base64"] = _mostly(draw, st.just("aGk="), odd_attribute_values)
    elif data_kind == "deep":
        envelope["data"] = DEEP_MARK
    return envelope


def _json_body(value: object, deep: str) -> bytes:
    # ensure_ascii writes a lone surrogate as an escape, as a sender's JSON library might.
    return json.dumps(value).replace(f'"{DEEP_MARK}"', deep).encode()


def _mangled(draw: st.DrawFn, body: bytes) -> bytes:
    """`body`, now and then cut short or replaced by bytes or deep nesting."""
    match draw(st.sampled_from(range(10))):
        case 0:
            return body[: draw(st.integers(0, len(body)))]
        case 1:
            return draw(st.one_of(st.binary(max_size=64), deep_json.map(str.encode)))
        case _:
            return body


@st.composite
def structured_requests(draw: st.DrawFn) -> FuzzRequest:
    body = _json_body(draw(envelopes()), draw(deep_json))
    body = _mangled(draw, body)
    content_type = _mostly(
        draw,
        st.sampled_from([STRUCTURED_TYPE, STRUCTURED_TYPE + "; charset=UTF-8"]),
        st.just("application/cloudevents+xml"),
    )
    return FuzzRequest([(b"content-type", content_type.encode())], body, "structured")


@st.composite
def batch_requests(draw: st.DrawFn) -> FuzzRequest:
    batch = draw(st.lists(envelopes(), max_size=3))
    body = _json_body(batch, draw(deep_json))
    body = _mangled(draw, body)
    headers = [(b"content-type", events.BATCH_CONTENT_TYPE.encode())]
    return FuzzRequest(headers, body, "batch")


any_request = st.one_of(binary_requests(), structured_requests(), batch_requests())


class InProcessIngest:
    """The ingest app and a real sink on one event loop, driven request by request."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.registry = CollectorRegistry()
        self.settings = IngestSettings(kafka_bootstrap=bootstrap, topic=topic, spool_dir="")
        self.sink = EventSink(self.settings, SinkMetrics(self.registry), spool=None)
        app = ingest_app(self.sink, self.settings, IngestMetrics(self.registry))
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ingest"
        )
        self.sink_task = self.loop.create_task(self.sink.run())
        self.accepted_events = 0
        self.outcomes: Counter[tuple[str, int]] = Counter()

    def post(self, request: FuzzRequest) -> httpx.Response:
        return self.loop.run_until_complete(
            self.client.post("/", content=request.body, headers=request.headers)
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.loop.run_until_complete(self.sink.close(timeout_s=20))
        self.loop.run_until_complete(self.sink_task)
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture
def in_process_ingest(kafka_bootstrap: str, new_topic: TopicFactory) -> Iterator[InProcessIngest]:
    ingest = InProcessIngest(kafka_bootstrap, new_topic())
    yield ingest
    if not ingest.loop.is_closed():
        ingest.close()


def test_no_input_gets_a_5xx_and_the_topic_holds_exactly_what_was_accepted(
    in_process_ingest: InProcessIngest, kafka_bootstrap: str
) -> None:
    ingest = in_process_ingest

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(any_request)
    def answer_is_202_or_a_refusal_with_a_reason(request: FuzzRequest) -> None:
        answer = ingest.post(request)
        ingest.outcomes[(request.mode, answer.status_code)] += 1
        assert answer.status_code in ANSWERS, (answer.status_code, answer.text)
        if answer.status_code == 202:
            ingest.accepted_events += request.events_if_accepted()
        else:
            reason = answer.json()["error"]
            assert isinstance(reason, str) and reason
        assert ingest.metric("infermon_ingest_requests_unforeseen_total") == 0

    answer_is_202_or_a_refusal_with_a_reason()
    for mode in ("binary", "structured", "batch"):  # the fuzzer explored both sides
        assert ingest.outcomes[(mode, 202)] and ingest.outcomes[(mode, 400)], ingest.outcomes
    ingest.close()
    accepted = ingest.accepted_events
    assert accepted > 0, "the fuzzer never produced a valid event"
    assert ingest.metric("infermon_events_produced_total") == accepted
    assert ingest.metric("infermon_events_failed_total") == 0
    on_topic = read_topic(kafka_bootstrap, ingest.settings.topic, accepted, timeout_s=30)
    assert len(on_topic) == accepted
    assert len(read_all(kafka_bootstrap, ingest.settings.topic, idle_s=1.0)) == accepted
