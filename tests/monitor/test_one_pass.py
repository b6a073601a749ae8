"""The compiled one-pass path makes exactly the rows of decode + batch_rows, or declines."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from infermon import events
from monitor import one_pass as one_pass_module
from monitor.decode import decode
from monitor.store.layout import MERGES, ROW_COLUMNS, LayoutMismatchError
from monitor.store.records import DeadLetter, StoredEvent
from monitor.store.rows import batch_rows
from monitor.store.schema import as_utc, sqlite_time_text
from monitor.store.store import Store
from tests.monitor.test_decode import FakeMessage

one_pass = pytest.importorskip(
    "monitor._one_pass", reason="built only where a C compiler was at hand at install"
)
one_pass_rows = one_pass.one_pass_rows

MAX_EVENT_BYTES = 4096
MAX_ROWS = 2  # below the generated payloads' 3 rows at most: both paths cut them alike
MAX_BATCH_ROWS = 10_000
MAX_BATCH_BYTES = 1_000_000
LIMITS = (MAX_EVENT_BYTES, MAX_ROWS, MAX_BATCH_ROWS, MAX_BATCH_BYTES)
STORED_AT = datetime(2026, 11, 29, 9, 30, 0, 250_000, tzinfo=UTC)
TYPES = (events.KSERVE_REQUEST_TYPE, events.KSERVE_RESPONSE_TYPE,
         events.SELDON_REQUEST_TYPE, events.SELDON_RESPONSE_TYPE)  # fmt: skip


def _pick(rng: random.Random, *choices: object, usual: float = 0.85) -> object:
    """The first choice most of the time, any of the others now and then."""
    return choices[0] if rng.random() < usual else rng.choice(choices[1:])


def _request_body(rng: random.Random) -> bytes:
    width = rng.randint(1, 4)
    rows = [[rng.choice([rng.random(), rng.randint(-5, 5)]) for _ in range(width)]
            for _ in range(rng.randint(0, 3))]  # fmt: skip
    body = _pick(
        rng,
        {"instances": rows},
        {"instances": [{"a": 1, "b": [2]}, {"a": 3}]},
        {"instances": [[1, 2], [3]]},
        {"inputs": rows},
        {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
        b"",
        b"not json",
        b'{"instances": [[NaN, 1]]}',
        {"instances": "x"},
        usual=0.6,
    )
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _response_body(rng: random.Random) -> bytes:
    predictions = [rng.choice([rng.random(), None, {"p": 1}]) for _ in range(rng.randint(0, 3))]
    body = _pick(
        rng,
        {"predictions": predictions},
        {"outputs": [0.5]},
        {"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]},
        {"error": "boom"},
        b"",
        b"\xff\xfe",
        usual=0.6,
    )
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _time(rng: random.Random, call: int, side: int) -> str | None:
    second = f"2026-11-29T08:{call % 60:02d}:{(call * 7 + side) % 60:02d}"
    return _pick(  # type: ignore[return-value]
        rng,
        f"{second}.{rng.randint(0, 999_999):06d}Z",
        f"{second}Z",
        f"{second}.5Z",
        f"{second}.123456789Z",
        f"{second}+00:00",
        f"{second}+02:00",
        f"{second}",
        None,
        "yesterday",
        usual=0.7,
    )


def _extensions(rng: random.Random, call: int, event_type: str) -> dict[str, str]:
    optional = {
        "requestid": f"call-{call}", "modelname": rng.choice(["m", "other", ""]),
        "path": rng.choice(["/v1/models/m:predict", "/v2/models/n/infer", "/x"]),
        "inferenceservicename": "svc", "namespace": rng.choice(["ns", ""]),
        "component": "predictor", "protocol": rng.choice(["v1", "v2"]),
        "statuscode": rng.choice(["200", "500", "99999999999", "abc"]),
        "latencyms": rng.choice(["1.25", "nan", "inf", "x"]), "truncated": "true",
        "modelid": "seldon-model",
    }  # fmt: skip
    chosen = {name: value for name, value in optional.items() if rng.random() < 0.5}
    if "truncated" in chosen and rng.random() < 0.8:
        del chosen["truncated"]
    if event_type.startswith("io.seldon"):
        chosen["requestid"] = f"call-{call}"
    return chosen


def _record(rng: random.Random, call: int, side: int, offset: int) -> FakeMessage:
    event_type = _pick(rng, TYPES[side], TYPES[side + 2], "com.example.other", usual=0.8)
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", f"id-{call}".encode()),
        ("ce_source", _pick(rng, b"logger", b"http://kserve")), ("ce_type", event_type.encode()),
    ]  # fmt: skip
    time = _time(rng, call, side)
    if time is not None:
        headers.append(("ce_time", time.encode()))
    content_type = _pick(rng, b"application/json", b"application/octet-stream", None)
    if content_type is not None:
        headers.append(("content-type", content_type))
    for name, value in _extensions(rng, call, str(event_type)).items():
        headers.append((f"ce_{name}", value.encode()))
    if rng.random() < 0.12:
        headers = _defective(rng, headers)
    body = _request_body(rng) if side == 0 else _response_body(rng)
    if rng.random() < 0.02:
        body = b"x" * (MAX_EVENT_BYTES + 1)
    return FakeMessage(body, headers, offset_number=offset)


def _defective(
    rng: random.Random, headers: list[tuple[str, bytes | None]]
) -> list[tuple[str, bytes | None]]:
    """One of the defects that the one pass's own reading of the headers must notice."""
    at = {name: index for index, (name, _) in enumerate(headers)}
    defect = rng.randrange(7)
    if defect == 0:
        return [h for h in headers if h[0] != "ce_id"]  # a dead letter
    if defect == 1:
        return [*headers, ("ce_source", b"again")]  # a duplicate: the SDK decides
    changed = list(headers)
    name, value = rng.choice([
        ("ce_type", b"\xff\xfe"), ("ce_source", None), ("ce_specversion", b"0.3"),
        ("ce_id", b""), ("ce_source", b""), ("content-type", b"application/cloudevents+json"),
        ("content-type", b""),
    ])  # fmt: skip
    if name in at:
        changed[at[name]] = (name, value)
    else:
        changed.append((name, value))
    return changed


def _batch(rng: random.Random, first_call: int) -> list[FakeMessage]:
    records: list[FakeMessage] = []
    for call in range(first_call, first_call + rng.randint(1, 4)):
        sides = _pick(rng, [0, 1], [1, 0], [0], [1], [0, 0], [0, 1, 1], usual=0.6)
        for side in sides:  # type: ignore[attr-defined]
            records.append(_record(rng, call, side, len(records)))
    if rng.random() < 0.05:
        records.append(records[0])  # the same record twice, as a replay brings it
    return records


@pytest.mark.parametrize(
    ("times_as_text", "time_value"), [(True, sqlite_time_text), (False, as_utc)],
    ids=["sqlite", "postgresql"],
)  # fmt: skip
def test_generated_batches_make_the_same_rows_as_the_general_path(
    times_as_text: bool, time_value: Callable[[datetime], Any]
) -> None:
    rng = random.Random(20261129)
    outcomes: Counter[str] = Counter()
    for batch_number in range(2500):
        records = _batch(rng, batch_number * 10)
        decoded = [decode(record, MAX_EVENT_BYTES, MAX_ROWS) for record in records]
        rows = one_pass_rows(records, *LIMITS, time_value(STORED_AT), times_as_text)
        if rows is None:
            outcomes["declined"] += 1
            continue
        assert not any(isinstance(event, DeadLetter) for event in decoded)
        stored = [event for event in decoded if isinstance(event, StoredEvent)]
        assert rows == batch_rows(stored, [], STORED_AT, time_value), records
        outcomes["one pass"] += 1
        calls = Counter(event.request_id for event in stored)
        outcomes["with both sides"] += any(count == 2 for count in calls.values())
        outcomes["with one side"] += any(count == 1 for count in calls.values())
        outcomes["not exploded"] += any(event.rows is None for event in stored)
        outcomes["rows cut"] += any(event.rows_not_exploded for event in stored)
    # Both outcomes, and the one-pass batches varied, or the comparison proves little.
    assert outcomes["one pass"] >= 400, outcomes
    assert outcomes["declined"] >= 400, outcomes
    assert min(outcomes["with both sides"], outcomes["with one side"]) >= 100, outcomes
    assert outcomes["not exploded"] >= 50, outcomes
    assert outcomes["rows cut"] >= 50, outcomes


def test_a_batch_with_a_dead_letter_an_unknown_type_or_an_odd_header_is_declined() -> None:
    rng = random.Random(7)
    good = _record(rng, 1, 0, 0)
    good.header_list = [h for h in good.header_list if not h[0].startswith("ce_time")]
    good.header_list.append(("ce_time", b"2026-11-29T08:00:00Z"))
    good.header_list = [h for h in good.header_list if h[0] != "ce_type"]
    good.header_list.append(("ce_type", events.KSERVE_REQUEST_TYPE.encode()))
    assert one_pass_rows([good], *LIMITS, "t", True) is not None
    no_id = FakeMessage(good.value_bytes, [h for h in good.header_list if h[0] != "ce_id"])
    assert one_pass_rows([good, no_id], *LIMITS, "t", True) is None
    other = FakeMessage(good.value_bytes, [
        *[h for h in good.header_list if h[0] != "ce_type"], ("ce_type", b"com.example.x")
    ])  # fmt: skip
    assert one_pass_rows([other, good], *LIMITS, "t", True) is None
    for odd_header in (["ce_extra", b"x"], ("ce_extra",), ("ce_extra", b"x", b"y")):
        odd = FakeMessage(good.value_bytes, [*good.header_list, odd_header])  # type: ignore[list-item]
        assert one_pass_rows([good, odd], *LIMITS, "t", True) is None, odd_header


def test_a_failing_one_pass_hands_the_batch_to_the_general_path(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    records = _batch(random.Random(3), 0)

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the one pass")

    monkeypatch.setattr(one_pass_module, "one_pass_rows", broken)
    assert one_pass_module.prepare_records(store, records, MAX_EVENT_BYTES) is None
    assert "decoding it record by record" in caplog.text
    assert "a bug in the one pass" in caplog.text


def _request_at(time: bytes, call: int, rows: int = 1) -> FakeMessage:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", f"call-{call}".encode()), ("ce_source", b"/s"),
        ("ce_type", events.KSERVE_REQUEST_TYPE.encode()), ("ce_time", time),
        ("content-type", b"application/json"),
    ]  # fmt: skip
    body = json.dumps({"instances": [[n] for n in range(rows)]}).encode()
    return FakeMessage(body, headers, offset_number=call)


@pytest.mark.parametrize("time", [b"0001-01-01T00:00:00+01:00", b"9999-12-31T23:59:59-01:00"])
def test_a_time_with_no_utc_equivalent_is_declined_and_dead_lettered_by_the_general_path(
    time: bytes,
) -> None:
    """Offsets at the ends of the years 1-9999: converting them to UTC overflows."""
    records = [_request_at(b"2026-11-29T08:00:00Z", 1), _request_at(time, 2)]
    assert one_pass_rows(records, *LIMITS, "t", True) is None
    good, bad = (decode(record, MAX_EVENT_BYTES) for record in records)
    assert isinstance(good, StoredEvent)
    assert isinstance(bad, DeadLetter)
    assert "outside the years 1-9999 once in UTC" in bad.error


def test_a_batch_exploding_more_rows_than_its_budget_is_declined() -> None:
    records = [_request_at(b"2026-11-29T08:00:00Z", call, rows=2) for call in range(3)]
    assert one_pass_rows(records, MAX_EVENT_BYTES, MAX_ROWS, 6, 10**6, "t", True) is not None
    assert one_pass_rows(records, MAX_EVENT_BYTES, MAX_ROWS, 5, 10**6, "t", True) is None


def test_a_batch_holding_more_bytes_than_its_budget_is_declined() -> None:
    records = [_request_at(b"2026-11-29T08:00:00Z", call) for call in range(3)]
    total = sum(len(record.value_bytes or b"") for record in records)
    assert one_pass_rows(records, MAX_EVENT_BYTES, MAX_ROWS, 10, total, "t", True) is not None
    assert one_pass_rows(records, MAX_EVENT_BYTES, MAX_ROWS, 10, total - 1, "t", True) is None


def test_the_compiled_rows_are_the_store_s_declared_layout_and_merge_rules() -> None:
    assert {
        t: ROW_COLUMNS[t] for t in ("events", "inferences", "instances")
    } == one_pass.ROW_COLUMNS
    assert {
        table: {column: rule.value for column, rule in rules.items()}
        for table, rules in MERGES.items()
    } == one_pass.MERGES
    one_pass_module.check_compiled(one_pass)  # what importing monitor.one_pass did


@pytest.mark.parametrize("stale", ["no declaration", "columns swapped", "a rule changed"])
def test_a_build_older_than_the_store_s_layout_is_refused(stale: str) -> None:
    """A compiled module left from before a layout change would write values into the wrong
    columns: `monitor.one_pass` refuses it at import, saying how it differs."""
    columns = dict(one_pass.ROW_COLUMNS)
    merges = {table: dict(rules) for table, rules in one_pass.MERGES.items()}
    if stale == "columns swapped":
        model, namespace = columns["inferences"][1:3]
        columns["inferences"] = ("request_id", namespace, model, *columns["inferences"][3:])
    if stale == "a rule changed":
        merges["instances"]["prediction"] = "request first"
    build = SimpleNamespace(one_pass_rows=one_pass_rows, ROW_COLUMNS=columns, MERGES=merges)
    if stale == "no declaration":
        build = SimpleNamespace(one_pass_rows=one_pass_rows, __file__="_one_pass.so")
    with pytest.raises(LayoutMismatchError, match="rebuild it") as raised:
        one_pass_module.check_compiled(build)
    assert {"no declaration": "declares no row layout", "columns swapped": "inferences rows",
            "a rule changed": "['prediction']"}[stale] in str(raised.value)  # fmt: skip
