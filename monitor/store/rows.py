"""A write batch merged in Python before it meets the database (no SQL here).

Each event becomes one `events` row, and its side of an inference: one `inferences` row per
request id and one `instances` row per (request id, row index). Events of the same call in the
same batch are folded together here with exactly the rules the SQL upserts apply to rows
already stored (both implement `layout.MERGES`; `write.py` generates its SQL from it), so a
call written in one batch or in two, in either order, ends up the same.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

import orjson

from monitor.store.layout import INFERENCE_COLUMNS, INSTANCE_COLUMNS
from monitor.store.records import DeadLetter, StoredEvent
from monitor.store.schema import as_utc

Row = tuple[Any, ...]
# How a datetime is handed to the database driver: aware datetime or SQLite text.
TimeValue = Callable[[datetime], Any]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_ONE_MICROSECOND = timedelta(microseconds=1)
_strict_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def to_json(value: Any) -> str:
    """Compact JSON that PostgreSQL accepts too: NaN and infinities become null."""
    try:
        return orjson.dumps(value).decode()  # writes NaN and infinities as null
    except TypeError:  # non-text keys, integers beyond 64 bits, lone surrogates
        pass
    try:
        return _strict_json.encode(value)
    except ValueError:
        return _strict_json.encode(_without_non_finite(value))
    except TypeError:
        return json.dumps(_without_non_finite(value), separators=(",", ":"), default=str)


def _without_non_finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _without_non_finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_non_finite(item) for item in value]
    return value


def int32(value: int | None) -> int | None:
    """An int the INTEGER columns take; anything else (a bogus status code) is unknown."""
    return value if value is None or _INT32_MIN <= value <= _INT32_MAX else None


def finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def latency_ms(request_time: datetime, response_time: datetime) -> float:
    """Exact to the microsecond, computed the same way in SQL (write.LATENCY_MS)."""
    return ((response_time - request_time) // _ONE_MICROSECOND) / 1000


def row_count(event: StoredEvent) -> int | None:
    """The payload's rows, exploded or not; None when it was not exploded at all."""
    if event.rows is None:
        return None
    if event.rows_not_exploded:  # a v2 shape may claim any count: the column takes int32
        return int32(len(event.rows) + event.rows_not_exploded)
    return len(event.rows)


def _first(value: Any, other: Any) -> Any:
    """SQL's COALESCE of two."""
    return value if value is not None else other


class _Inference:
    """One request id's inference row while the batch is folded.

    `time` is already in the driver's form; request_time and response_time stay datetimes
    (for the latency) until `row` looks their driver form up in the batch's `time_values`.
    """

    __slots__ = INFERENCE_COLUMNS

    def __init__(self, event: StoredEvent, time: datetime | None, time_value: Any) -> None:
        is_request = event.kind == "request"
        rows = row_count(event)
        self.request_id = event.request_id
        self.model = event.model
        self.namespace = event.namespace
        self.inference_service = event.inference_service
        self.component = event.component
        self.protocol = event.protocol
        self.time = time_value
        self.request_time = time if is_request else None
        self.response_time = None if is_request else time
        self.latency_ms = None if is_request else finite(event.latency_ms)
        self.status_code = None if is_request else int32(event.status_code)
        self.request_rows = rows if is_request else None
        self.response_rows = None if is_request else rows
        self.has_request = is_request
        self.has_response = not is_request
        self.orphaned = False
        self.request_payload_kind = event.payload_kind if is_request else None
        self.response_payload_kind = None if is_request else event.payload_kind

    def add(self, event: StoredEvent, time: datetime | None, time_value: Any) -> None:
        """The SQL upsert's rules (layout.MERGES): `self` is the row stored, `event` the one
        arriving; the DERIVED columns are made by `row`.

        The same as merging `_Inference(event, time, time_value)` in, without building it.
        """
        rows = row_count(event)
        if event.kind == "request":  # a request's description of the call wins
            self.model = event.model if event.model is not None else self.model
            self.namespace = event.namespace if event.namespace is not None else self.namespace
            self.inference_service = _first(event.inference_service, self.inference_service)
            self.component = event.component if event.component is not None else self.component
            self.protocol = event.protocol if event.protocol is not None else self.protocol
            if not self.has_request:
                self.time = time_value
            self.request_time = _first(self.request_time, time)
            self.request_rows = _first(self.request_rows, rows)
            self.has_request = True
            self.request_payload_kind = _first(self.request_payload_kind, event.payload_kind)
            return
        self.model = _first(self.model, event.model)
        self.namespace = _first(self.namespace, event.namespace)
        self.inference_service = _first(self.inference_service, event.inference_service)
        self.component = _first(self.component, event.component)
        self.protocol = _first(self.protocol, event.protocol)
        self.response_time = _first(self.response_time, time)
        self.latency_ms = _first(self.latency_ms, finite(event.latency_ms))
        self.status_code = _first(self.status_code, int32(event.status_code))
        self.response_rows = _first(self.response_rows, rows)
        self.has_response = True
        self.orphaned = False
        self.response_payload_kind = _first(self.response_payload_kind, event.payload_kind)

    def row(self, time_values: dict[datetime, Any]) -> Row:
        """The row, by column name; once: the times become their driver form."""
        request_time, response_time = self.request_time, self.response_time
        if self.latency_ms is None and request_time is not None and response_time is not None:
            self.latency_ms = latency_ms(request_time, response_time)
        if request_time is not None:
            self.request_time = time_values[request_time]
        if response_time is not None:
            self.response_time = time_values[response_time]
        request_rows, response_rows = self.request_rows, self.response_rows
        self.batch_size = request_rows if request_rows is not None else response_rows
        self.batch_size_mismatch = (
            request_rows is not None and response_rows is not None and request_rows != response_rows
        )
        row: Row = _inference_row(self)  # a tuple of the columns, in their order
        return row


_inference_row = attrgetter(*INFERENCE_COLUMNS)
# Instance rows are lists while the batch is folded: these columns' places in them.
_MODEL, _TIME, _FEATURES, _PREDICTION = map(
    INSTANCE_COLUMNS.index, ("model", "time", "features", "prediction")
)


def _merge_instances(known: list[list[Any]], arriving: list[list[Any]]) -> None:
    """The SQL upsert's rules (layout.MERGES) per instance row, stored and arriving.

    Rows that only one side has are kept as they are (a batch size mismatch).
    """
    for index, e in enumerate(arriving):
        if index >= len(known):
            known.append(e)
            continue
        t = known[index]
        if e[_FEATURES] is not None:  # the request's row arrives
            t[_MODEL] = _first(e[_MODEL], t[_MODEL])
            if t[_FEATURES] is None:
                t[_TIME] = e[_TIME]  # the request's time replaces the response's
                t[_FEATURES] = e[_FEATURES]
        else:
            t[_MODEL] = _first(t[_MODEL], e[_MODEL])
        if t[_PREDICTION] is None:
            t[_PREDICTION] = e[_PREDICTION]


@dataclass(frozen=True, slots=True)
class BatchRows:
    """Rows ready for the database, each key once, each a tuple in its table's column order
    (`layout.ROW_COLUMNS`)."""

    events: list[Row]
    inferences: list[Row]
    instances: list[Row]
    dead_letters: list[Row]


def batch_rows(
    stored: Sequence[StoredEvent],
    letters: Sequence[DeadLetter],
    stored_at: datetime,
    time_value: TimeValue,
) -> BatchRows:
    events: dict[tuple[str, str, str], Row] = {}
    calls: dict[str, _Inference] = {}
    call_rows: dict[str, list[list[Any]]] = {}
    time_values: dict[datetime, Any] = {}
    stored_at_value = time_value(stored_at)
    for event in stored:
        key = (event.source, event.event_id, event.type)
        if key in events:
            continue  # the first copy of an event wins, as the database's DO NOTHING does
        time = event.time
        if time is None:
            value = stored_at_value
        else:
            time = as_utc(time)
            value = time_values[time] = time_value(time)
        events[key] = (  # layout.EVENT_COLUMNS
            event.source, event.event_id, event.type, event.kind, event.request_id, event.model,
            value, stored_at_value, event.content_type, to_json(event.attributes),
            event.payload, len(event.payload), event.payload_kind, event.parse_error,
            event.truncated, event.topic, int32(event.partition), event.offset,
        )  # fmt: skip
        if event.kind == "other":
            continue
        request_id = event.request_id
        known = calls.get(request_id)
        if known is None:
            calls[request_id] = _Inference(event, time, value)
        else:
            known.add(event, time, value)
        if event.rows:
            model = event.model
            if event.kind == "request":  # layout.INSTANCE_COLUMNS
                rows = [
                    [request_id, index, model, value, encoded, None]
                    for index, encoded in enumerate(map(to_json, event.rows))
                ]
            else:
                rows = [
                    [request_id, index, model, value, None, encoded]
                    for index, encoded in enumerate(map(to_json, event.rows))
                ]
            known_rows = call_rows.get(request_id)
            if known_rows is None:
                call_rows[request_id] = rows
            else:
                _merge_instances(known_rows, rows)
    return BatchRows(
        events=list(events.values()),
        inferences=[call.row(time_values) for call in calls.values()],
        instances=[tuple(row) for rows in call_rows.values() for row in rows],
        dead_letters=[dead_letter_row(letter, stored_at_value) for letter in letters],
    )


def headers_json(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """Header values as text when they are UTF-8, else base64; a null value stays null."""
    encoded: list[dict[str, str | None]] = []
    for name, value in headers:
        if value is None:
            encoded.append({"name": name, "text": None})
            continue
        try:
            encoded.append({"name": name, "text": value.decode()})
        except UnicodeDecodeError:
            encoded.append({"name": name, "base64": base64.b64encode(value).decode()})
    return to_json(encoded)


def dead_letter_row(letter: DeadLetter, stored_at_value: Any) -> Row:
    return (  # layout.DEAD_LETTER_COLUMNS
        letter.topic, int32(letter.partition), letter.offset, letter.key, letter.value,
        headers_json(letter.headers), letter.error, letter.error_class, letter.stage,
        stored_at_value,
    )  # fmt: skip


def _storable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates, e.g. from "\ud800" in a structured event
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def storable_text(rows: BatchRows) -> BatchRows:
    """Text every database takes: U+0000 (PostgreSQL refuses it) and lone surrogates (not
    UTF-8) become U+FFFD. Only for a batch that failed on them: the usual one has none."""

    def scrub(table: list[Row]) -> list[Row]:
        return [tuple(_storable(v) if isinstance(v, str) else v for v in row) for row in table]

    return BatchRows(
        scrub(rows.events), scrub(rows.inferences), scrub(rows.instances), scrub(rows.dead_letters)
    )
