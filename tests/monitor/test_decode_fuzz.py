"""Fuzzing the monitor's record decoding and row making: whatever a producer writes to the
topic (header sets, values and bytes, times at the edges of the representable range, bad
UTF-8, huge or odd values), no exception escapes, and every record is either stored or
dead-lettered. The compiled one pass, where it takes a batch, makes the general path's rows.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from infermon import events
from monitor.decode import decode
from monitor.one_pass import one_pass_rows
from monitor.service import DecodedBatch
from monitor.store.records import DeadLetter, StoredEvent
from monitor.store.rows import batch_rows
from monitor.store.schema import dead_letters as dead_letters_table
from monitor.store.schema import events as events_table
from monitor.store.schema import sqlite_time_text
from monitor.store.store import Store
from tests.monitor.test_decode import FakeMessage

MAX_EVENT_BYTES = 50_000
MAX_ROWS = 3
MAX_BATCH_ROWS = 8
MAX_BATCH_BYTES = 40_000
STORED_AT = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
_topics = itertools.count()

TIMES = [
    b"2026-11-29T07:00:00Z", b"2026-11-29T07:00:00.123456789Z", b"2026-11-29T08:00:00+01:00",
    b"0001-01-01T00:00:00+01:00", b"9999-12-31T23:59:59-01:00", b"0001-01-01T00:00:00Z",
    b"9999-12-31T23:59:59.999999Z", b"0001-01-01T00:00:00-23:59", b"9999-12-31T23:59:59+23:59",
    b"2026-11-29T07:00:00", b"2026-13-01T00:00:00Z", b"yesterday", b"", b"\xff\xfe",
]  # fmt: skip
TYPES = [events.KSERVE_REQUEST_TYPE, events.KSERVE_RESPONSE_TYPE, events.SELDON_REQUEST_TYPE,
         "com.example.other", ""]  # fmt: skip
BODIES = [
    {"instances": [[1, 2], [3, 4]]}, {"instances": [[n] for n in range(7)]},
    {"predictions": [1, 2, 3, 4, 5]}, {"instances": [{"a": 1}, 2, [3]]},
    {"inputs": [{"name": "x", "shape": [4, 1], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
    {"inputs": [{"name": "x", "shape": [10**18, 0], "datatype": "FP32", "data": []}]},
    {"outputs": [{"name": "y", "shape": [2], "datatype": "INT64", "data": [1.5, "a"]}]},
    {"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3], [4]]}},
    {"dataframe_records": [{"a": 1}] * 5}, {"error": "boom"}, [], "text", None,
]  # fmt: skip

odd_bytes = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"a\x00b"]),
    st.builds(lambda chunk, times: chunk * times, st.binary(min_size=1, max_size=4),
              st.integers(1, 30_000)),
)  # fmt: skip
texts = st.one_of(st.text(max_size=20).map(lambda text: text.encode("utf-8", "surrogatepass")),
                  odd_bytes)  # fmt: skip
bodies = st.one_of(
    st.sampled_from(BODIES).map(lambda body: json.dumps(body).encode()),
    st.sampled_from(BODIES).map(lambda body: json.dumps(body).encode()),
    odd_bytes,
    st.sampled_from([b'{"instances": [[NaN, 1]]}', b'{"instances": [[1e999]]}',
                     b'{"instances": [["\\ud800"]]}', b"\xef\xbb\xbf{}", b'{"instances": [[1]']),
)  # fmt: skip


def mostly(usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes] = texts
           ) -> st.SearchStrategy[bytes]:  # fmt: skip
    """A usual value nine times in ten, else an odd one."""
    return st.integers(0, 9).flatmap(lambda pick: usual if pick else odd)


header_values = {
    "ce_specversion": mostly(st.just(b"1.0"), st.sampled_from([b"0.3", b""]) | texts),
    "ce_id": mostly(st.sampled_from([b"call-1", b"call-2", b"call-3"])),
    "ce_source": mostly(st.sampled_from([b"/s", b"/t"]), st.just(b"") | texts),
    "ce_type": mostly(st.sampled_from([t.encode() for t in TYPES])),
    "ce_time": mostly(st.sampled_from(TIMES[:2]), st.sampled_from(TIMES[2:]) | texts),
    "content-type": mostly(
        st.just(b"application/json"),
        st.sampled_from([b"application/cloudevents+json", b"application/octet-stream", b""])
        | texts,
    ),
    "ce_requestid": mostly(st.sampled_from([b"call-1", b"call-2"])),
    "ce_modelname": mostly(st.sampled_from([b"m", b""])),
    "ce_truncated": mostly(st.just(b"false"), st.just(b"true")),
    "ce_statuscode": mostly(st.just(b"200"), st.sampled_from([b"99999999999999999999", b"-1"])),
    "ce_latencyms": mostly(st.just(b"1.5"), st.sampled_from([b"nan", b"inf", b"1e999"]) | texts),
}


@st.composite
def records(draw: st.DrawFn) -> FakeMessage:
    """A binary-mode event with some headers missing, changed, repeated or added, or a
    structured-mode one, or any bytes at all."""
    headers: list[tuple[str, bytes | None]] = []
    for name, values in header_values.items():
        if draw(st.integers(0, 39)):  # most headers there, any of them missing
            headers.append((name, draw(values)))
    if not draw(st.integers(0, 4)):
        extra_name = draw(st.sampled_from(["ce_id", "CE_TIME", "ce_data", "x-other", "ce_", ""]))
        headers.append((extra_name, draw(st.none() | texts)))
    structured = {"specversion": "1.0", "id": "s-1", "source": "/s", "type": TYPES[0],
                  "time": draw(st.sampled_from(TIMES)).decode(errors="replace"),
                  "data": draw(st.sampled_from(BODIES))}  # fmt: skip
    value = draw(mostly(bodies, st.just(json.dumps(structured).encode())))
    order = draw(st.permutations(headers)) if draw(st.booleans()) else headers
    return FakeMessage(value, list(order), key_bytes=draw(st.none() | texts))


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "monitor.db"
    with Store(f"sqlite:///{path}") as store:
        store.upgrade()
        yield store


class TopicMessage(FakeMessage):
    """A FakeMessage on a topic of its own, so that examples never share dead-letter keys."""

    topic_name = "payloads"

    def topic(self) -> str:
        return self.topic_name


def _on_topic(messages: list[FakeMessage], topic: str) -> list[FakeMessage]:
    placed = []
    for offset, message in enumerate(messages):
        moved = TopicMessage(message.value_bytes, message.header_list, message.key_bytes, offset)
        moved.topic_name = topic
        placed.append(moved)
    return placed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])  # fmt: skip
@given(batch=st.lists(records(), min_size=1, max_size=6))
def test_every_record_is_stored_or_dead_lettered_and_nothing_escapes(
    batch: list[FakeMessage], sqlite_store: Store
) -> None:
    messages = _on_topic(batch, f"fuzz-{next(_topics)}")
    decoded = [decode(message, MAX_EVENT_BYTES, MAX_ROWS) for message in messages]
    assert all(isinstance(item, StoredEvent | DeadLetter) for item in decoded)
    for item in decoded:
        event(type(item).__name__ if isinstance(item, StoredEvent) else f"dead: {item.stage}")
    if one_pass_rows is not None:
        rows = one_pass_rows(messages, MAX_EVENT_BYTES, MAX_ROWS, MAX_BATCH_ROWS,
                             MAX_BATCH_BYTES, sqlite_time_text(STORED_AT), True)  # fmt: skip
        event(f"one pass {'declined' if rows is None else 'took the batch'}")
        if rows is not None:
            assert not any(isinstance(item, DeadLetter) for item in decoded)
            stored = [item for item in decoded if isinstance(item, StoredEvent)]
            assert rows == batch_rows(stored, [], STORED_AT, sqlite_time_text)

    taken = 0
    while taken < len(messages):  # as the service does: in more than one batch if need be
        part = DecodedBatch.of(
            messages[taken:], MAX_EVENT_BYTES, MAX_ROWS, MAX_BATCH_ROWS, MAX_BATCH_BYTES
        )
        part.prepare(sqlite_store)
        sqlite_store.write_prepared(part.prepared)
        taken += part.records
    _assert_each_stored_or_dead_lettered(sqlite_store, messages, decoded)


def _assert_each_stored_or_dead_lettered(
    store: Store, messages: list[FakeMessage], decoded: list[StoredEvent | DeadLetter]
) -> None:
    topic = messages[0].topic()
    with store.engine.connect() as connection:
        lettered = set(connection.scalars(
            select(dead_letters_table.c.kafka_offset)
            .where(dead_letters_table.c.kafka_topic == topic)
        ))  # fmt: skip
        for item in decoded:
            if isinstance(item, DeadLetter):
                assert item.offset in lettered, item
                continue
            key = (item.source, item.event_id, item.type)
            stored = connection.execute(
                select(events_table.c.kafka_offset).where(
                    events_table.c.source == key[0], events_table.c.event_id == key[1],
                    events_table.c.type == key[2],
                )
            ).first()  # fmt: skip
            # Stored now, or earlier by an event of the same key (the first copy wins).
            assert stored is not None or item.offset in lettered, item
