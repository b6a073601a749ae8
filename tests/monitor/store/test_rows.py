"""The batch merge's pure parts: JSON that every database takes, exact latencies, safe text."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from monitor.store.rows import BatchRows, latency_ms, storable_text, to_json
from monitor.store.schema import as_utc, sqlite_time_text


@pytest.mark.parametrize(
    "value",
    [
        {"f0": 6.8, "f1": -2, "name": "café ☕", "nested": [1, {"a": None}], "ok": True},
        [1.5e-300, 12345678901234567890, ""],
        {},
    ],
)
def test_json_is_compact_utf8_and_reads_back_the_same(value: object) -> None:
    encoded = to_json(value)

    assert encoded == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(encoded) == value


def test_json_beyond_the_fast_encoder_still_encodes() -> None:
    huge, surrogate = 2**70, "\ud800"  # orjson refuses both; the standard library takes them
    assert json.loads(to_json({"n": huge, "s": surrogate, 1: "key"})) == {
        "n": huge,
        "s": surrogate,
        "1": "key",
    }


def test_non_finite_numbers_become_null_and_odd_types_text() -> None:
    odd = {"x": math.nan, "y": [math.inf, -math.inf, 1.0]}
    assert to_json(odd) == '{"x":null,"y":[null,null,1.0]}'
    assert to_json({"when": datetime(2025, 1, 1)}) == '{"when":"2025-01-01T00:00:00"}'


def test_latency_is_exact_to_the_microsecond() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)

    assert latency_ms(start, start + timedelta(seconds=1, microseconds=123_457)) == 1123.457
    assert latency_ms(start, start - timedelta(microseconds=1)) == -0.001


def test_sqlite_time_text_is_utc_fixed_width_and_sorts_like_time() -> None:
    utc = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)
    noon_plus_2 = datetime.fromisoformat("2025-06-01T14:00:00+02:00")

    assert sqlite_time_text(utc) == "2025-01-01 01:00:00.000000"
    assert sqlite_time_text(noon_plus_2) == "2025-06-01 12:00:00.000000"
    assert sqlite_time_text(datetime(2025, 6, 1, 12)) == "2025-06-01 12:00:00.000000"  # naive: UTC
    assert as_utc(noon_plus_2) == datetime(2025, 6, 1, 12, tzinfo=UTC)


def test_storable_text_replaces_nul_and_lone_surrogates_only() -> None:
    rows = BatchRows(events=[("a\x00b", "\ud800x", "fine ☕", 1, b"\x00")], inferences=[],
                     instances=[], dead_letters=[])  # fmt: skip

    [row] = storable_text(rows).events

    assert row == ("a\ufffdb", "\ufffdx", "fine ☕", 1, b"\x00")
