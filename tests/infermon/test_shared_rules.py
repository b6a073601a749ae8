"""The rules every component takes from `infermon` instead of writing its own: reasons cut to
fit, dead letters' headers, and event times as text."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from infermon import dead_letters, excerpts
from infermon.dead_letters import MAX_ERROR_HEADER_CHARS, context_headers, value_cut_headers
from infermon.events import UtcText, format_time
from infermon.excerpts import MAX_REASON_CHARS, quoted, shortened


def test_docstring_examples_run() -> None:
    assert doctest.testmod(excerpts).failed == 0


@given(st.text(max_size=700), st.integers(min_value=30, max_value=600))
def test_a_shortened_text_fits_its_limit_and_says_how_long_it_was(text: str, limit: int) -> None:
    short = shortened(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
    else:
        note = f"... ({len(text)} characters)"
        assert short.endswith(note)
        assert text.startswith(short.removesuffix(note))


def test_a_reason_is_cut_at_the_shared_limit() -> None:
    assert len(shortened("x" * 10_000)) == MAX_REASON_CHARS


def test_a_quoted_value_is_escaped_and_cut() -> None:
    assert quoted("a\r\nb") == "'a\\r\\nb'"
    assert quoted("x" * 1000, limit=4) == "'xxxx'... (1000 characters)"
    assert quoted(b"\x00" * 100, limit=20) == shortened(repr(b"\x00" * 100), 20)


def test_context_headers_are_kafka_connects_with_the_message_cut() -> None:
    headers = dict(
        context_headers("in", 2, 41, "group", "decode", "Bad", "e\udc80" * 5000, attempts="3")
    )
    assert headers["__connect.errors.topic"] == b"in"
    assert headers["__connect.errors.partition"] == b"2"
    assert headers["__connect.errors.offset"] == b"41"
    assert headers["__connect.errors.connector.name"] == b"group"
    assert headers["__connect.errors.stage"] == b"decode"
    assert headers["__connect.errors.exception.class.name"] == b"Bad"
    assert headers["__connect.errors.attempts"] == b"3"
    message = headers["__connect.errors.exception.message"].decode()
    assert len(message) <= MAX_ERROR_HEADER_CHARS
    assert message.startswith("e?e?") and message.endswith("(10000 characters)")


def test_a_cut_value_keeps_its_size_and_hash() -> None:
    headers = dict(value_cut_headers(b"v" * 1000, 10))
    assert headers[dead_letters.HEADER_VALUE_CUT_TO] == b"10"
    assert headers[dead_letters.HEADER_ORIGINAL_BYTES] == b"1000"
    assert len(headers[dead_letters.HEADER_ORIGINAL_SHA256]) == 64


moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(0))]),
)  # fmt: skip


@given(st.lists(moments, max_size=20))
def test_the_per_second_text_is_format_time(times: list[datetime]) -> None:
    text = UtcText()
    for moment in times:
        # twice: the second call is the one that reuses the second's text
        assert text(moment) == format_time(moment) == text(moment)


def test_format_time_is_rfc_3339_utc_with_z() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2024-05-06T05:08:09.000123Z"
    assert format_time(moment.replace(microsecond=0)) == "2024-05-06T05:08:09Z"
