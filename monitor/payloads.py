"""Inference payload bytes -> one dict per batch row (pure: no SQL, no Kafka, no HTTP).

Shapes are those KServe's model server takes and gives: v1 (`{"instances": [...]}` and
`{"predictions": [...]}`), v2 / Open Inference Protocol (`inputs` and `outputs`, each with
name, shape, datatype and data), and pandas split/records frames as MLflow sends them. Unlike
Seldon Core v1's request logger, which reads only `inputs[0]` and `outputs[0]`, every v2
tensor is exploded, and a batch-size mismatch is reported instead of guessed. Bad input never
raises: it comes back as kind "raw" with the reason.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from monitor.store.records import PayloadKind

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_ROWS",
    "DEFAULT_MAX_ROWS",
    "ParsedPayload",
    "parse_request",
    "parse_response",
]

Row = dict[str, Any]

# Content types whose bodies are not JSON text, whatever they contain.
_BINARY_MEDIA = frozenset({"application/octet-stream"})
_BINARY_MEDIA_PREFIXES = ("image/", "audio/", "video/")
_BINARY_MEDIA_MARKERS = ("protobuf", "grpc", "binary")  # vnd.sagemaker-triton.binary+json too
# The v2 binary tensor extension: a JSON header whose tensors name the size of the binary
# part that follows it (Triton's binary tensor data extension).
_BINARY_TENSOR_KEY = "binary_data_size"
# numpy 2 arrays have at most 64 dimensions; more is surely not a tensor. Sizes are int64 in
# the v2 protobuf, which also keeps prod(shape) printable (Python's 4300-digit str limit).
_MAX_DIMS = 64
_MAX_DIM = 2**63 - 1
_NAME_IN_ERROR_MAX = 64
# Feature names are cached per (tensor name, slice shape); big slices are rare, keep them out.
_CACHED_NAMES_MAX = 1024
# Rows exploded from one payload, at most; the rest are counted. A row costs ~450 bytes
# exploded (its dict, its JSON text, its table row) against as little as 4 in the payload.
DEFAULT_MAX_ROWS = 10_000
# Rows exploded from the payloads of one consumer batch, at most: they are held until the
# batch is stored, and two batches are held at once (one written, one prepared).
DEFAULT_MAX_BATCH_ROWS = 50_000
# Record bytes in one consumer batch, at most: the values are held, and copied by the driver.
DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024
# Parsed, JSON costs up to ~25x its size ("[1]," is a 64-byte list and a pointer). A larger
# payload has its top-level arrays (v1 `instances`, `predictions`, ...) cut to the rows kept
# and to this size before it is parsed; one still larger (v2 tensors, dataframe_split, whose
# rows are not a top-level array) is not exploded.
MAX_PARSED_BYTES = 2 * 1024 * 1024
MAX_PARSED_ROW_BYTES = MAX_PARSED_BYTES // 2  # of one array of rows; the rest is the others
# A JSON string (skipped whole), a quote that opens none (never closed), or a byte that
# opens, closes or separates a value.
_JSON_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*+"|"|[\[\]{},]')
# The members whose arrays may hold rows, as their JSON text: the ones cut before parsing.
_ROW_KEYS = {
    f'"{key}"'.encode(): key
    for key in ("instances", "inputs", "predictions", "outputs", "dataframe_records")
}
_OPENING = frozenset(b"[{")
_CLOSING = frozenset(b"]}")
_COMMA = ord(",")
_STRING = ord('"')
_ARRAY = ord("[")


@dataclass(slots=True)  # not frozen: built once per event, and frozen costs 3x to build
class ParsedPayload:
    kind: PayloadKind
    rows: list[dict[str, Any]] | None  # one dict per batch row; None when not exploded
    error: str | None = None  # why it was not exploded (kind "raw") or not whole, for the store
    not_exploded: int = 0  # rows beyond the most exploded from one payload, counted only


class _Rejected(Exception):
    """Internal: the payload cannot be exploded; the message becomes `ParsedPayload.error`."""


def parse_request(
    body: bytes, content_type: str | None, max_rows: int = DEFAULT_MAX_ROWS
) -> ParsedPayload:
    """Explode a request body into feature rows: v1, v2, dataframe_split or dataframe_records;
    at most `max_rows` of them, the rest counted in `not_exploded`."""
    return _parse(body, content_type, _request_rows, max_rows)


def parse_response(
    body: bytes, content_type: str | None, max_rows: int = DEFAULT_MAX_ROWS
) -> ParsedPayload:
    """Explode a response body into prediction rows: v1 or v2; at most `max_rows`."""
    return _parse(body, content_type, _response_rows, max_rows)


_EMPTY = ParsedPayload(kind="empty", rows=None)
Cut = dict[str, int]  # rows cut out before parsing, by the top-level key that held them
_NOTHING_CUT: Cut = {}
Explode = Callable[[Any, int, Cut], tuple[PayloadKind, list[Row], int]]


def _parse(body: bytes, content_type: str | None, explode: Explode, max_rows: int
           ) -> ParsedPayload:  # fmt: skip
    if not body or body.isspace():
        return _EMPTY
    cut = _NOTHING_CUT
    try:
        if len(body) > MAX_PARSED_BYTES:
            body, cut = _within_parsed_bytes(body, content_type, max_rows)
        kind, rows, count = explode(_load(body, content_type), max_rows, cut)
    except _Rejected as rejected:
        return ParsedPayload(kind="raw", rows=None, error=str(rejected))
    not_exploded = count - len(rows)
    if not_exploded:
        return ParsedPayload(kind, rows, _not_exploded_reason(not_exploded, max_rows), not_exploded)
    return ParsedPayload(kind=kind, rows=rows)


def _not_exploded_reason(not_exploded: int, max_rows: int) -> str:
    return (
        f"{not_exploded} rows not exploded: at most {max_rows} are exploded from one payload"
        " (--max-instances-per-payload)"
    )


def _within_parsed_bytes(body: bytes, content_type: str | None, max_rows: int
                         ) -> tuple[bytes, Cut]:  # fmt: skip
    """A body too large to parse whole, cut to what will be exploded, and how many rows were
    cut out; _Rejected if it cannot be cut to MAX_PARSED_BYTES."""
    media = _binary_media(content_type) if content_type else None
    if media is not None:
        raise _Rejected(f"binary content type {media}")
    size = len(body)
    body, cut = _cut_row_arrays(body, max_rows, MAX_PARSED_ROW_BYTES)
    if len(body) > MAX_PARSED_BYTES:
        raise _Rejected(
            f"a payload of {size} bytes is exploded only when its rows are a top-level array"
            f" (v1 instances, predictions, dataframe_records); it is above {MAX_PARSED_BYTES}"
        )
    return body, cut


def _cut_row_arrays(body: bytes, keep: int, budget: int) -> tuple[bytes, Cut]:
    """A large JSON object with each array of rows directly under it (`instances`,
    `predictions`, `dataframe_records`, ...) cut to its first `keep` elements, or fewer that
    end within `budget` bytes of its start; and how many were cut out, by key. Scans byte by
    byte, so only for bodies too large to parse whole; anything else is left as it is."""
    start = len(body) - len(body.lstrip())
    if body[start : start + 1] != b"{":
        return body, _NOTHING_CUT
    pieces: list[bytes] = []
    cut: Cut = {}
    copied_to = depth = commas = kept = 0
    array_start = cut_at = -1
    key = b""
    expect_key = False
    for match in _JSON_STRUCTURE.finditer(body, start):
        position = match.start()
        char = body[position]
        if char == _STRING:
            if match.end() - position == 1:  # stop here: a scan from each quote left is n^2
                raise _Rejected("invalid JSON: a string is never closed")
            if depth == 1 and expect_key:
                key, expect_key = match.group(), False
            continue
        if char in _OPENING:
            depth += 1
            expect_key = depth == 1
            if depth == 2 and char == _ARRAY and key in _ROW_KEYS:
                array_start, commas, cut_at = position, 0, -1
        elif char in _CLOSING:
            if depth == 2 and array_start >= 0:
                elements = commas + 1 if body[array_start + 1 : position].strip() else 0
                if cut_at >= 0:
                    pieces.append(body[copied_to:cut_at])
                    copied_to = position
                    cut[_ROW_KEYS[key]] = elements - kept
                array_start = -1
            depth -= 1
        elif char == _COMMA:
            expect_key = depth == 1
            if depth == 2 and array_start >= 0:
                commas += 1
                if cut_at < 0 and (commas == keep or position - array_start > budget):
                    cut_at, kept = position, commas  # the elements before this comma are kept
    if depth:  # parsed, it would be refused only at its end, after building it all
        raise _Rejected("invalid JSON: a bracket or brace is never closed")
    if not pieces:
        return body, _NOTHING_CUT
    pieces.append(body[copied_to:])
    return b"".join(pieces), cut


# --- bytes -> JSON ---------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _binary_media(content_type: str) -> str | None:
    media = content_type.partition(";")[0].strip().lower()
    binary = (
        media in _BINARY_MEDIA
        or media.startswith(_BINARY_MEDIA_PREFIXES)
        or any(marker in media for marker in _BINARY_MEDIA_MARKERS)
    )
    return media if binary else None


def _load(body: bytes, content_type: str | None) -> Any:
    media = _binary_media(content_type) if content_type else None
    if media is not None:
        raise _Rejected(f"binary content type {media}")
    try:
        return orjson.loads(body)  # ~4x the standard library's speed on small bodies
    except orjson.JSONDecodeError:
        pass  # NaN, a BOM, huge integers, lone surrogates or bad JSON: the slower, laxer parser
    try:
        text = body.decode("utf-8-sig")  # RFC 8259 section 8.1: a BOM may be ignored
    except UnicodeDecodeError as error:
        raise _Rejected(
            _binary_tensor_body(body) or f"invalid UTF-8 at byte {error.start}"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise _Rejected("invalid JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, or an integer beyond Python's digit limit
        raise _Rejected(_binary_tensor_body(body) or f"invalid JSON: {error}") from None


def _binary_tensor_body(body: bytes) -> str | None:
    """Only asked once plain JSON failed: a v2 JSON header followed by raw tensor bytes."""
    if body.lstrip().startswith(b"{") and f'"{_BINARY_TENSOR_KEY}"'.encode() in body:
        return "v2 binary tensor body is not exploded"
    return None


# --- shapes ----------------------------------------------------------------------------------


def _first_rows(items: list[Any], max_rows: int) -> list[Any]:
    return items if len(items) <= max_rows else items[:max_rows]


def _request_rows(doc: Any, max_rows: int, cut: Cut) -> tuple[PayloadKind, list[Row], int]:
    """(kind, at most `max_rows` rows, the payload's row count, `cut` out before parsing
    included)."""
    if type(doc) is dict:
        if "instances" in doc:
            instances = _list(doc["instances"], "instances")
            rows = _instance_rows(_first_rows(instances, max_rows))
            return "v1", rows, len(instances) + cut.get("instances", 0)
        if "inputs" in doc:
            inputs = _list(doc["inputs"], "inputs")
            if _is_v2(inputs):
                _whole_tensor_list(cut, "inputs")
                return "v2", *_tensor_rows(inputs, "input", max_rows)
            rows = _instance_rows(_first_rows(inputs, max_rows))
            return "v1", rows, len(inputs) + cut.get("inputs", 0)
        if "dataframe_split" in doc:
            return "dataframe_split", *_split_rows(doc["dataframe_split"], max_rows)
        if "dataframe_records" in doc:
            records = _records_rows(doc["dataframe_records"])
            count = len(records) + cut.get("dataframe_records", 0)
            return "dataframe_records", _first_rows(records, max_rows), count
    raise _Rejected("unrecognised payload shape")


def _response_rows(doc: Any, max_rows: int, cut: Cut) -> tuple[PayloadKind, list[Row], int]:
    if type(doc) is dict:
        if "predictions" in doc:
            predictions = _list(doc["predictions"], "predictions")
            rows = _prediction_rows(_first_rows(predictions, max_rows))
            return "v1", rows, len(predictions) + cut.get("predictions", 0)
        if "outputs" in doc:
            outputs = _list(doc["outputs"], "outputs")
            if _is_v2(outputs) or (outputs == [] and "model_name" in doc):
                _whole_tensor_list(cut, "outputs")
                return "v2", *_tensor_rows(outputs, "output", max_rows)
            rows = _prediction_rows(_first_rows(outputs, max_rows))
            return "v1", rows, len(outputs) + cut.get("outputs", 0)
        if "error" in doc:
            raise _Rejected("error response")
    raise _Rejected("unrecognised payload shape")


def _whole_tensor_list(cut: Cut, key: str) -> None:
    if cut.get(key):  # the list was cut as if it held rows, but it holds tensors
        raise _Rejected(f"{key} holds more tensors than rows are exploded")


def _list(value: Any, key: str) -> list[Any]:
    if type(value) is not list:
        raise _Rejected(f"{key} is not a list")
    return value


def _is_v2(items: list[Any]) -> bool:
    """v2 tensors are objects with a datatype, or a shape and data; v1 rows rarely are."""
    return any(
        type(item) is dict and ("datatype" in item or ("shape" in item and "data" in item))
        for item in items
    )


def _make_positional_names(width: int) -> tuple[str, ...]:
    return tuple(f"f{i}" for i in range(width))


_cached_positional_names = lru_cache(maxsize=256)(_make_positional_names)


def positional_names(width: int) -> tuple[str, ...]:
    if width <= _CACHED_NAMES_MAX:
        return _cached_positional_names(width)
    return _make_positional_names(width)


def _instance_rows(instances: list[Any]) -> list[Row]:
    if instances and type(instances[0]) is list:  # the usual batch: lists of one width
        width = len(instances[0])
        if all(type(instance) is list and len(instance) == width for instance in instances):
            names = positional_names(width)
            return [dict(zip(names, instance, strict=True)) for instance in instances]
    rows: list[Row] = []
    for instance in instances:
        kind = type(instance)
        if kind is list:
            rows.append(dict(zip(positional_names(len(instance)), instance, strict=True)))
        elif kind is dict:
            rows.append(instance)
        else:
            rows.append({"f0": instance})
    return rows


def _prediction_rows(predictions: list[Any]) -> list[Row]:
    return [p if type(p) is dict else {"prediction": p} for p in predictions]


def _split_rows(frame: Any, max_rows: int) -> tuple[list[Row], int]:
    """pandas `to_json(orient="split")`: the index names rows, so it is checked, not kept."""
    if type(frame) is not dict:
        raise _Rejected("dataframe_split is not an object")
    columns = _list(frame.get("columns"), "dataframe_split.columns")
    data = _list(frame.get("data"), "dataframe_split.data")
    if not all(type(c) in (str, int, float) for c in columns):
        raise _Rejected("dataframe_split.columns must be strings or numbers")
    names = [c if type(c) is str else str(c) for c in columns]
    if len(set(names)) != len(names):
        raise _Rejected("dataframe_split has duplicate columns")
    index = frame.get("index")
    if index is not None and (type(index) is not list or len(index) != len(data)):
        raise _Rejected("dataframe_split.index does not match its data")
    rows: list[Row] = []
    for values in data:
        if type(values) is not list or len(values) != len(names):
            raise _Rejected(f"dataframe_split rows must be lists of {len(names)} values")
        if len(rows) < max_rows:
            rows.append(dict(zip(names, values, strict=True)))
    return rows, len(data)


def _records_rows(records: Any) -> list[Row]:
    rows = _list(records, "dataframe_records")
    if not all(type(row) is dict for row in rows):
        raise _Rejected("dataframe_records holds a non-object")
    return rows


# --- v2 tensors ------------------------------------------------------------------------------


class _Tensor(NamedTuple):
    name: str
    batch: int
    names: tuple[str, ...]  # one feature per element of a batch row, row-major
    values: list[Any]  # flat, row-major, converted to Python types


def _tensor_rows(specs: list[Any], role: str, max_rows: int) -> tuple[list[Row], int]:
    """(at most `max_rows` rows, the batch size)."""
    tensors = [_tensor(spec, role) for spec in specs]
    batch = tensors[0].batch if tensors else 0
    if any(t.batch != batch for t in tensors):
        sizes = ", ".join(f"{t.name[:_NAME_IN_ERROR_MAX]}={t.batch}" for t in tensors)
        raise _Rejected(f"{role}s have different batch sizes: {sizes}")
    rows: list[Row] = [{} for _ in range(min(batch, max_rows))]
    for t in tensors:
        if len(t.names) == 1:
            (feature,) = t.names
            for row, value in zip(rows, t.values, strict=False):  # _tensor checked the count
                row[feature] = value
        else:
            values = iter(t.values)
            for row in rows:  # zip stops when the names run out: one row's slice each time
                row.update(zip(t.names, values, strict=False))
    if rows and len(rows[0]) != sum(len(t.names) for t in tensors):
        raise _Rejected(f"{role} names collide")  # two tensors of one name, most likely
    return rows, batch


def _tensor(spec: Any, role: str) -> _Tensor:
    if type(spec) is not dict:
        raise _Rejected(f"{role} is not an object")
    name = spec.get("name")
    if type(name) is not str or not name:
        raise _Rejected(f"{role} has no name")
    label = f"{role} {name[:_NAME_IN_ERROR_MAX]!r}"
    parameters = spec.get("parameters")
    if type(parameters) is dict and _BINARY_TENSOR_KEY in parameters:
        raise _Rejected(f"{label} is v2 binary tensor data")
    datatype = spec.get("datatype")
    converter = _CONVERTERS.get(datatype) if type(datatype) is str else None
    if converter is None:
        shown = repr(datatype[:_NAME_IN_ERROR_MAX]) if type(datatype) is str else "none"
        raise _Rejected(f"{label} has unsupported datatype {shown}")
    shape = spec.get("shape")
    if (
        type(shape) is not list
        or not 0 < len(shape) <= _MAX_DIMS
        or not all(type(d) is int and 0 <= d <= _MAX_DIM for d in shape)
    ):
        raise _Rejected(f"{label} shape must be a list of 1 to {_MAX_DIMS} int64 sizes")
    values = _list(spec.get("data"), f"{label} data")
    types = set(map(type, values))
    if list in types:  # nested: any nesting is accepted, as numpy's reshape would
        values = _flatten(values)
        types = set(map(type, values))
    count = math.prod(shape)
    if len(values) != count:
        raise _Rejected(f"{label} has {len(values)} values for shape {shape} ({count} expected)")
    as_is, convert = converter
    if not types <= as_is:
        values = convert(values, f"{label} {datatype} data")
    batch = shape[0]
    width = count // batch if batch else 0
    names = _feature_names(name, tuple(shape[1:]), width) if width else ()
    return _Tensor(name, batch, names, values)


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major; iterative, so nesting is bounded only by the JSON parser."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _feature_names(name: str, slice_shape: tuple[int, ...], width: int) -> tuple[str, ...]:
    if width <= _CACHED_NAMES_MAX and len(name) <= _NAME_IN_ERROR_MAX:
        return _cached_feature_names(name, slice_shape)
    return _make_feature_names(name, slice_shape)


def _make_feature_names(name: str, slice_shape: tuple[int, ...]) -> tuple[str, ...]:
    """A scalar slice is `name`; shape [k] gives `name[0]`..; higher ranks `name[i,j]`."""
    if not slice_shape:
        return (name,)
    if len(slice_shape) == 1:
        return tuple(f"{name}[{i}]" for i in range(slice_shape[0]))
    indices = itertools.product(*(range(d) for d in slice_shape))
    return tuple(f"{name}[{','.join(map(str, index))}]" for index in indices)


_cached_feature_names = lru_cache(maxsize=512)(_make_feature_names)


# Each converter runs only when the data holds a type other than the one it would return.


def _rejected_value(label: str, value: Any) -> _Rejected:
    return _Rejected(f"{label} holds a {type(value).__name__}")


def _floats(values: list[Any], label: str) -> list[Any]:
    """FP data: ints become floats; null stays None (orjson and pandas write NaN as null)."""
    floats: list[float | None] = []
    for v in values:
        kind = type(v)
        if kind is float or v is None:
            floats.append(v)
        elif kind is int:
            try:
                floats.append(float(v))
            except OverflowError:
                raise _Rejected(f"{label} holds an int beyond float range") from None
        else:
            raise _rejected_value(label, v)
    return floats


def _ints(values: list[Any], label: str) -> list[Any]:
    """INT/UINT data: an integral float (1.0) becomes an int; 1.5 or "1" is rejected."""
    ints: list[int] = []
    for v in values:
        kind = type(v)
        if kind is int:
            ints.append(v)
        elif kind is float and v.is_integer():
            ints.append(int(v))
        else:
            raise _rejected_value(label, v)
    return ints


def _bools(values: list[Any], label: str) -> list[Any]:
    """BOOL data: 0 and 1 are accepted too (clients that cast bools to ints)."""
    bools: list[bool] = []
    for v in values:
        if type(v) is bool:
            bools.append(v)
        elif type(v) is int and v in (0, 1):
            bools.append(v == 1)
        else:
            raise _rejected_value(label, v)
    return bools


def _strings(values: list[Any], label: str) -> list[Any]:
    """BYTES in JSON are text already (the parser decoded the UTF-8); anything else is wrong."""
    raise _rejected_value(label, next(v for v in values if type(v) is not str))


_Converter = tuple[frozenset[type], Callable[[list[Any], str], list[Any]]]
_CONVERTERS: dict[str, _Converter] = {
    "BOOL": (frozenset({bool}), _bools),
    **dict.fromkeys(
        ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"),
        (frozenset({int}), _ints),
    ),
    **dict.fromkeys(("FP16", "FP32", "FP64", "BF16"), (frozenset({float}), _floats)),
    "BYTES": (frozenset({str}), _strings),
}
