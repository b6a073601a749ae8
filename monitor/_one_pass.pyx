# cython: language_level=3, boundscheck=False, wraparound=False, infer_types=True
"""The usual batch, from Kafka records to rows in one pass, compiled.

`decode` and `rows.batch_rows` handle every record there is, through a `StoredEvent`
per record and an `_Inference` per call, in Python; that was two thirds of the monitor's CPU
per event. Most batches are plainer: binary-mode events of header names seen before, each
once, at most one request and one response per call, times in UTC. For those this builds the
very same rows (tests/monitor/test_one_pass.py compares them on generated batches) without
the intermediate objects. It does in C only what pays (BENCHMARKS.md): reading the header
texts (a copy of `events._binary_attributes`), the SQLite time text, and v1 `instances` of
equal-width lists and v1 `predictions`; JSON text is orjson's, as `rows.to_json` makes
it first; every other rule is the general path's own helper, called from here. A record it
is not sure about sends the whole batch back to the general path: `one_pass_rows` returns
None.

PostgreSQL batches take it too, with times as datetimes instead of SQLite's text.
Built by setup.py where a C compiler is at hand; without it the monitor takes the general
path for every batch (~1.3x the CPU per event, BENCHMARKS.md).
"""

from cpython.datetime cimport (
    PyDateTime_DATE_GET_HOUR,
    PyDateTime_DATE_GET_MICROSECOND,
    PyDateTime_DATE_GET_MINUTE,
    PyDateTime_DATE_GET_SECOND,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    datetime,
    import_datetime,
)
from cpython.unicode cimport PyUnicode_DecodeASCII

from datetime import UTC

import orjson

from infermon.events import binary_header_layout
from monitor import payloads
from monitor.decode import (
    EVENT_KINDS,
    HEADERS_NOT_COUNTED_BELOW_BYTES,
    float_or_none,
    model_of,
    parsed_payload,
    status_code_of,
)
from monitor.store.rows import BatchRows, finite, int32, latency_ms, to_json

import_datetime()

cdef object fromisoformat = datetime.fromisoformat
cdef object orjson_loads = orjson.loads
cdef object orjson_dumps = orjson.dumps
cdef object positional_names = payloads.positional_names

# What a call's request or response contributes, by position (a tuple is the cheapest record).
cdef enum:
    MODEL = 0
    NAMESPACE = 1
    SERVICE = 2
    COMPONENT = 3
    PROTOCOL = 4
    TIME = 5
    TIME_TEXT = 6
    STATUS = 7
    LATENCY = 8
    ROWS = 9
    PAYLOAD_KIND = 10
    ENCODED_ROWS = 11


# The rows this module builds, column by column in the order of its tuples below, and the
# merge rules (`monitor.store.layout.Merge` values) its `inference_row` and `instance_rows`
# apply to a call's two sides. `monitor.one_pass` checks both against the store's declaration
# when it imports this, so a build older than the store's layout is refused, not trusted.
ROW_COLUMNS = {
    "events": (
        "source", "event_id", "type", "kind", "request_id", "model", "time", "stored_at",
        "content_type", "attributes", "payload", "payload_bytes", "payload_kind", "parse_error",
        "truncated", "kafka_topic", "kafka_partition", "kafka_offset",
    ),
    "inferences": (
        "request_id", "model", "namespace", "inference_service", "component", "protocol",
        "time", "request_time", "response_time", "latency_ms", "status_code", "batch_size",
        "request_rows", "response_rows", "batch_size_mismatch", "has_request", "has_response",
        "orphaned", "request_payload_kind", "response_payload_kind",
    ),
    "instances": ("request_id", "row_index", "model", "time", "features", "prediction"),
}
MERGES = {
    "inferences": {
        "request_id": "key", "model": "request first", "namespace": "request first",
        "inference_service": "request first", "component": "request first",
        "protocol": "request first", "time": "request side", "request_time": "first",
        "response_time": "first", "latency_ms": "first, else derived", "status_code": "first",
        "batch_size": "derived", "request_rows": "first", "response_rows": "first",
        "batch_size_mismatch": "derived", "has_request": "either", "has_response": "either",
        "orphaned": "until response", "request_payload_kind": "first",
        "response_payload_kind": "first",
    },
    "instances": {
        "request_id": "key", "row_index": "key", "model": "request first",
        "time": "request side", "features": "first", "prediction": "first",
    },
}


cdef int[7] TIME_FIELD_WIDTHS = [4, 2, 2, 2, 2, 2, 6]
cdef const char* TIME_SEPARATORS = b"-- ::."  # after each field but the last


cdef str sqlite_time(datetime moment):
    """'YYYY-MM-DD HH:MM:SS.ffffff', written digit by digit: snprintf's format parsing cost
    more than the rest of this function."""
    cdef int[7] fields = [
        PyDateTime_GET_YEAR(moment), PyDateTime_GET_MONTH(moment), PyDateTime_GET_DAY(moment),
        PyDateTime_DATE_GET_HOUR(moment), PyDateTime_DATE_GET_MINUTE(moment),
        PyDateTime_DATE_GET_SECOND(moment), PyDateTime_DATE_GET_MICROSECOND(moment),
    ]
    cdef char text[26]
    cdef int field, digit, value, end = 0
    for field in range(7):
        if field:
            text[end] = TIME_SEPARATORS[field - 1]
            end += 1
        value = fields[field]
        end += TIME_FIELD_WIDTHS[field]
        for digit in range(end - 1, end - 1 - TIME_FIELD_WIDTHS[field], -1):
            text[digit] = <char>(48 + value % 10)  # '0' + the lowest digit left
            value //= 10
    return PyUnicode_DecodeASCII(text, end, NULL)


# The header name lists met last, with their layouts, most recent first: a topic carries a
# few (a request's and a response's), and comparing names is cheaper than hashing them.
cdef list recent_layouts = []
cdef Py_ssize_t RECENT_LAYOUTS = 4


cdef object layout_of(list headers):
    global recent_layouts
    cdef Py_ssize_t count = len(headers), index
    cdef tuple names
    cdef list recent = recent_layouts  # replaced, never changed: safe to walk unchecked
    for entry in recent:
        names = <tuple>(<tuple>entry)[0]
        if len(names) != count:
            continue
        for index in range(count):
            header = headers[index]
            if type(header) is not tuple or len(<tuple>header) != 2 \
                    or (<tuple>header)[0] != names[index]:
                break
        else:
            return (<tuple>entry)[1]
    for header in headers:
        if type(header) is not tuple or len(<tuple>header) != 2:
            return None  # not what confluent-kafka hands out: the general path decides
    names = tuple([header[0] for header in headers])
    layout = binary_header_layout(names)
    recent_layouts = [(names, layout), *recent[: RECENT_LAYOUTS - 1]]
    return layout


cdef dict attributes_of(list headers):
    """The attribute texts as `events._binary_attributes` reads them, else None."""
    cdef Py_ssize_t index
    layout = layout_of(headers)
    if layout is None:
        return None
    cdef dict attributes = {}
    cdef object raw
    for index, name in layout.attributes:
        raw = headers[index][1]  # headers come from outside: no unchecked casts
        if type(raw) is not bytes:
            return None
        try:
            attributes[name] = (<bytes>raw).decode()
        except UnicodeDecodeError:
            return None
    if layout.content_type is not None:
        raw = headers[layout.content_type][1]
        if type(raw) is not bytes:
            return None
        try:
            content_type = (<bytes>raw).decode()
        except UnicodeDecodeError:
            return None
        if content_type and content_type.lower().startswith("application/cloudevents"):
            return None
        attributes["datacontenttype"] = content_type
    if attributes["specversion"] != "1.0":
        return None
    for name in layout.non_empty:
        if not attributes[name]:
            return None
    return attributes


cdef str json_text(object value):
    """`rows.to_json`, whose first step is this; it takes what orjson refuses."""
    try:
        return (<bytes>orjson_dumps(value)).decode()
    except TypeError:
        return to_json(value)


cdef tuple explode(str kind, bytes payload, object content_type, bint truncated,
                   Py_ssize_t max_rows):
    """(payload kind, rows or None, error, rows not exploded) as `decode.parsed_payload`
    gives them."""
    if not truncated and (content_type is None or content_type == "application/json") \
            and payload and payload[0] == 123:  # '{'
        try:
            document = orjson_loads(payload)
        except orjson.JSONDecodeError:
            document = None
        if type(document) is dict:
            rows = v1_request_rows(<dict>document, max_rows) if kind == "request" \
                else v1_response_rows(<dict>document, max_rows)
            if rows is not None:
                return "v1", rows, None, 0
    parsed = parsed_payload(kind, payload, content_type, truncated, max_rows)
    return parsed.kind, parsed.rows, parsed.error, parsed.not_exploded


cdef list v1_request_rows(dict document, Py_ssize_t max_rows):
    instances = document.get("instances")
    if type(instances) is not list or not instances or len(<list>instances) > max_rows:
        return None
    first = (<list>instances)[0]
    if type(first) is not list:
        return None
    cdef Py_ssize_t width = len(<list>first)
    for instance in <list>instances:
        if type(instance) is not list or len(<list>instance) != width:
            return None
    cdef tuple names = positional_names(width)
    cdef Py_ssize_t index
    cdef list rows = []
    cdef dict row
    for instance in <list>instances:
        row = {}  # dict(zip(...)) costs twice this loop
        for index in range(width):
            row[names[index]] = (<list>instance)[index]
        rows.append(row)
    return rows


cdef list v1_response_rows(dict document, Py_ssize_t max_rows):
    if "predictions" not in document:
        return None
    predictions = document["predictions"]
    if type(predictions) is not list or len(<list>predictions) > max_rows:
        return None
    return [p if type(p) is dict else {"prediction": p} for p in <list>predictions]


cdef tuple usual_record(message, Py_ssize_t max_event_bytes):
    """(payload, attribute texts, time) of a binary-mode record `decode` would accept as it
    is, with a time in UTC; None for anything else."""
    value = message.value()
    if type(value) is not bytes:
        return None
    size = len(<bytes>value)
    if size >= HEADERS_NOT_COUNTED_BELOW_BYTES or size > max_event_bytes:
        return None
    headers = message.headers()
    if type(headers) is not list or not headers:
        return None
    attributes = attributes_of(<list>headers)
    if attributes is None:
        return None
    time_text = attributes.get("time")
    if time_text is None:
        return None
    try:
        time = fromisoformat(time_text)
    except ValueError:
        return None
    if time.tzinfo is not UTC:
        return None
    return value, attributes, time


def one_pass_rows(messages, Py_ssize_t max_event_bytes, Py_ssize_t max_rows,
                  Py_ssize_t max_batch_rows, Py_ssize_t max_batch_bytes, stored_at,
                  bint times_as_text):
    """The rows `batch_rows` makes of these records, at most `max_rows` exploded from each
    payload, or None if any record is unusual or the batch explodes more than
    `max_batch_rows` rows or holds more than `max_batch_bytes` (the general path splits it).

    Times go to the database as SQLite's text (`times_as_text`) or as the aware UTC datetimes
    they were read as (PostgreSQL); `stored_at` is already in that form.
    """
    cdef list event_rows = []
    cdef set keys = set()
    cdef dict calls = {}  # request id -> [request, response]
    cdef list with_rows = []  # request ids in the order their first rows arrived
    cdef dict attributes
    cdef list side
    cdef Py_ssize_t index, exploded = 0, batch_bytes = 0
    for message in messages:
        record = usual_record(message, max_event_bytes)
        if record is None:
            return None
        value, attributes, time = record
        size = len(<bytes>value)
        batch_bytes += size
        if batch_bytes > max_batch_bytes:
            return None
        source = attributes["source"]
        event_id = attributes["id"]
        event_type = attributes["type"]
        kind = EVENT_KINDS.get(event_type)
        key = (source, event_id, event_type)
        if kind is None or key in keys:
            return None
        keys.add(key)
        request_id = attributes.get("requestid") or event_id
        found = calls.get(request_id)
        if found is None:
            side = [None, None]
            calls[request_id] = side
        else:
            side = <list>found
        index = 0 if kind == "request" else 1
        if side[index] is not None:
            return None
        content_type = attributes.get("datacontenttype")
        truncated = attributes.get("truncated") == "true"
        payload_kind, rows, error, not_exploded = explode(
            kind, <bytes>value, content_type, truncated, max_rows)
        if rows:
            exploded += len(rows)
            if exploded > max_batch_rows:
                return None
        model = model_of(attributes)
        time_value = sqlite_time(<datetime>time) if times_as_text else time
        event_rows.append((
            source, event_id, event_type, kind, request_id, model, time_value, stored_at,
            content_type, json_text(attributes), value, size, payload_kind, error, truncated,
            message.topic() or "", int32(message.partition() or 0), message.offset() or 0,
        ))
        encoded = [json_text(row) for row in rows] if rows else None
        other = side[1 - index]
        if encoded is not None and (other is None or (<tuple>other)[ENCODED_ROWS] is None):
            with_rows.append(request_id)  # where batch_rows first meets rows of this call
        if index == 1:
            status = int32(status_code_of(attributes, kind))
            latency = finite(float_or_none(attributes.get("latencyms") or None))
        else:
            status = latency = None
        side[index] = (
            model, attributes.get("namespace") or None,
            attributes.get("inferenceservicename") or None,
            attributes.get("component") or None, attributes.get("protocol") or None, time,
            time_value, status, latency,
            None if rows is None else row_count(len(rows), not_exploded), payload_kind, encoded,
        )
    return BatchRows(
        events=event_rows,
        inferences=[inference_row(request_id, sides[0], sides[1])
                    for request_id, sides in calls.items()],
        instances=[row for request_id in with_rows
                   for row in instance_rows(request_id, calls[request_id])],
        dead_letters=[],
    )


cdef object row_count(object exploded, object not_exploded):
    """`rows.row_count`: exploded or not, within the column's int32."""
    return int32(exploded + not_exploded) if not_exploded else exploded


cdef object either(object request, object response, int field):
    if request is not None and (<tuple>request)[field] is not None:
        return (<tuple>request)[field]
    return None if response is None else (<tuple>response)[field]


cdef tuple inference_row(object request_id, object request, object response):
    request_time = None if request is None else (<tuple>request)[TIME]
    response_time = None if response is None else (<tuple>response)[TIME]
    latency = None if response is None else (<tuple>response)[LATENCY]
    if latency is None and request_time is not None and response_time is not None:
        latency = latency_ms(request_time, response_time)
    request_rows = None if request is None else (<tuple>request)[ROWS]
    response_rows = None if response is None else (<tuple>response)[ROWS]
    first = request if request is not None else response
    return (
        request_id, either(request, response, MODEL), either(request, response, NAMESPACE),
        either(request, response, SERVICE), either(request, response, COMPONENT),
        either(request, response, PROTOCOL), (<tuple>first)[TIME_TEXT],
        None if request is None else (<tuple>request)[TIME_TEXT],
        None if response is None else (<tuple>response)[TIME_TEXT],
        latency, None if response is None else (<tuple>response)[STATUS],
        request_rows if request_rows is not None else response_rows,
        request_rows, response_rows,
        request_rows is not None and response_rows is not None and request_rows != response_rows,
        request is not None, response is not None, False,
        None if request is None else (<tuple>request)[PAYLOAD_KIND],
        None if response is None else (<tuple>response)[PAYLOAD_KIND],
    )


cdef list instance_rows(object request_id, list sides):
    request, response = sides[0], sides[1]
    features = () if request is None else ((<tuple>request)[ENCODED_ROWS] or ())
    predictions = () if response is None else ((<tuple>response)[ENCODED_ROWS] or ())
    cdef Py_ssize_t count_features = len(features), count_predictions = len(predictions)
    cdef Py_ssize_t index
    cdef list rows = []
    for index in range(max(count_features, count_predictions)):
        prediction = predictions[index] if index < count_predictions else None
        if index >= count_features:
            rows.append((request_id, index, (<tuple>response)[MODEL],
                         (<tuple>response)[TIME_TEXT], None, prediction))
            continue
        model = (<tuple>request)[MODEL] if prediction is None \
            else either(request, response, MODEL)
        rows.append((request_id, index, model, (<tuple>request)[TIME_TEXT], features[index],
                     prediction))
    return rows
