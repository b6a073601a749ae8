"""The dead-letter topic: copies cut to fit, and a copy Kafka refuses for good never fatal."""

from __future__ import annotations

import hashlib

import pytest

from infermon.dead_letters import (
    HEADER_HEADERS_DROPPED,
    HEADER_ORIGINAL_BYTES,
    HEADER_ORIGINAL_SHA256,
    HEADER_VALUE_CUT_TO,
    MAX_ERROR_HEADER_CHARS,
)
from monitor.dead_letters import DeadLetterTopic, LetterRecord, letter_record
from monitor.store.records import DeadLetter
from tests.fixtures.broker import read_topic
from tests.fixtures.factories import TopicFactory

MAX_BYTES = 100_000


def letter(
    value: bytes | None = b"v",
    key: bytes | None = b"k",
    headers: list[tuple[str, bytes | None]] | None = None,
    error: str = "bad",
    offset: int = 3,
) -> DeadLetter:
    return DeadLetter("payloads", 0, offset, key, value, headers or [("h", b"1")], error,
                      "ValueError", "decode")  # fmt: skip


def record_bytes(record: LetterRecord) -> int:
    headers = sum(len(name) + len(value) for name, value in record.headers)
    return len(record.key or b"") + len(record.value or b"") + headers


def test_a_letter_that_fits_is_copied_whole() -> None:
    record = letter_record(letter(b"x" * 1000), MAX_BYTES)
    assert (record.key, record.value) == (b"k", b"x" * 1000)
    assert record.headers[0] == ("h", b"1")
    names = {name for name, _ in record.headers}
    assert HEADER_VALUE_CUT_TO not in names and HEADER_HEADERS_DROPPED not in names


def test_a_value_that_does_not_fit_is_cut_with_its_size_and_hash() -> None:
    value = bytes(range(256)) * 1000
    record = letter_record(letter(value), MAX_BYTES)
    headers = dict(record.headers)
    assert record.value is not None and value.startswith(record.value)
    assert headers[HEADER_VALUE_CUT_TO] == str(len(record.value)).encode()
    assert headers[HEADER_ORIGINAL_BYTES] == b"256000"
    assert headers[HEADER_ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert headers["h"] == b"1", "small original headers are kept"
    assert MAX_BYTES * 0.9 < record_bytes(record) <= MAX_BYTES


@pytest.mark.parametrize(
    "huge",
    [
        {"headers": [("x-huge", b"h" * 500_000), ("x-small", b"s")]},
        {"headers": [(f"x-{n}", b"h" * 100) for n in range(5000)]},
        {"key": b"k" * 500_000},
        {"error": "e" * 500_000},
        {"value": None, "key": None, "headers": [("x-huge", None), ("y", b"y" * 200_000)]},
    ],
    ids=["one header", "many headers", "key", "error message", "no value"],
)
def test_whatever_part_is_too_large_the_copy_fits(huge: dict) -> None:
    original = letter(**{"value": b"v" * 1000, **huge})
    record = letter_record(original, MAX_BYTES)
    assert record_bytes(record) <= MAX_BYTES
    headers = dict(record.headers)
    assert headers["__connect.errors.offset"] == b"3"
    assert len(headers["__connect.errors.exception.message"]) <= MAX_ERROR_HEADER_CHARS
    if "headers" in huge:
        assert HEADER_HEADERS_DROPPED in headers
        assert "y" not in headers and "x-huge" not in headers


def test_the_topic_takes_a_cut_copy_and_a_copy_it_refuses_is_counted_not_raised(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """The producer refuses a record above its message.max.bytes (1,000,000 by default): a
    limit set above it lets one through uncut, as a topic with a lower limit would refuse it."""
    topic = new_topic()
    config = {"bootstrap.servers": kafka_bootstrap}
    too_large = letter(b"x" * 1_500_000, offset=1)
    fitting = DeadLetterTopic(topic, config, max_bytes=900_000)
    assert fitting.send([too_large, letter(offset=2)]) == 0
    fitting.close()
    misconfigured = DeadLetterTopic(topic, config, max_bytes=2_000_000)
    assert misconfigured.send([too_large, letter(offset=3)]) == 1
    misconfigured.close()
    copies = read_topic(kafka_bootstrap, topic, 3, timeout_s=20)
    offsets = [dict(copy.headers())["__connect.errors.offset"] for copy in copies]
    assert sorted(offsets) == [b"1", b"2", b"3"], "the refused one is missing, nothing else"
    [cut] = [copy for copy in copies if copy.headers()[-1][0] == HEADER_ORIGINAL_SHA256]
    assert dict(cut.headers())[HEADER_ORIGINAL_BYTES] == b"1500000"
