"""monitor.payloads: inference payload bytes -> exploded rows, and never an exception."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from monitor.payloads import (
    MAX_PARSED_BYTES,
    MAX_PARSED_ROW_BYTES,
    ParsedPayload,
    parse_request,
    parse_response,
)

JSON = "application/json"


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def tensor(name: str, shape: list[int], datatype: str, data: Any, **extra: Any) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data, **extra}


def v2_request(*inputs: dict) -> bytes:
    return encode({"id": "call-1", "inputs": list(inputs)})


def v2_response(*outputs: dict) -> bytes:
    return encode(
        {"model_name": "m", "model_version": "1", "id": "call-1", "outputs": list(outputs)}
    )


def rows_of(parsed: ParsedPayload, kind: str) -> list[dict[str, Any]]:
    assert parsed.error is None, parsed.error
    assert parsed.kind == kind
    assert parsed.rows is not None
    return parsed.rows


def assert_raw(parsed: ParsedPayload, error_part: str) -> None:
    assert parsed.kind == "raw"
    assert parsed.rows is None
    assert parsed.error is not None
    assert error_part in parsed.error


# --- requests that explode -------------------------------------------------------------------

V1_REQUESTS = [
    pytest.param(
        {"instances": [[6.8, 2.8], [6.0, 3.4]]},
        [{"f0": 6.8, "f1": 2.8}, {"f0": 6.0, "f1": 3.4}],
        id="v1-list-instances",
    ),
    pytest.param(
        {"instances": [[[1, 2], 3]]}, [{"f0": [1, 2], "f1": 3}], id="v1-nested-element-stays-list"
    ),
    pytest.param(
        {"instances": [{"age": 40, "income": 2.5}, {"age": 31}]},
        [{"age": 40, "income": 2.5}, {"age": 31}],
        id="v1-dict-instances",
    ),
    pytest.param(
        {"instances": [1, "a", None]}, [{"f0": 1}, {"f0": "a"}, {"f0": None}], id="v1-scalars"
    ),
    pytest.param(
        {"instances": [{"image": {"b64": "aGk="}}]}, [{"image": {"b64": "aGk="}}], id="v1-b64-dict"
    ),
    pytest.param({"instances": []}, [], id="v1-no-instances"),
    pytest.param({"inputs": [[1, 2]]}, [{"f0": 1, "f1": 2}], id="v1-inputs-list"),
    pytest.param({"inputs": [{"shape": "circle"}]}, [{"shape": "circle"}], id="v1-inputs-dicts"),
    pytest.param(
        {"instances": [list(range(1100))]},
        [{f"f{i}": i for i in range(1100)}],
        id="v1-wide-instance",
    ),
]


@pytest.mark.parametrize(("document", "expected"), V1_REQUESTS)
def test_v1_requests_give_one_row_per_instance(document: Any, expected: list[dict]) -> None:
    assert rows_of(parse_request(encode(document), JSON), "v1") == expected


V2_REQUESTS = [
    pytest.param([tensor("x", [2], "INT64", [1, 2])], [{"x": 1}, {"x": 2}], id="scalar-per-row"),
    pytest.param(
        [tensor("x", [2, 3], "FP64", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
        [{"x[0]": 1.0, "x[1]": 2.0, "x[2]": 3.0}, {"x[0]": 4.0, "x[1]": 5.0, "x[2]": 6.0}],
        id="flat-data",
    ),
    pytest.param(
        [tensor("x", [2, 3], "FP64", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])],
        [{"x[0]": 1.0, "x[1]": 2.0, "x[2]": 3.0}, {"x[0]": 4.0, "x[1]": 5.0, "x[2]": 6.0}],
        id="nested-data",
    ),
    pytest.param(
        [tensor("x", [2, 3], "INT32", [[1, 2], [3, 4], [5, 6]])],
        [{"x[0]": 1, "x[1]": 2, "x[2]": 3}, {"x[0]": 4, "x[1]": 5, "x[2]": 6}],
        id="nesting-reshaped-like-numpy",
    ),
    pytest.param([tensor("x", [2, 1], "INT8", [7, 8])], [{"x[0]": 7}, {"x[0]": 8}], id="width-1"),
    pytest.param(
        [tensor("x", [1, 2, 2], "UINT8", [[[1, 2], [3, 4]]])],
        [{"x[0,0]": 1, "x[0,1]": 2, "x[1,0]": 3, "x[1,1]": 4}],
        id="multi-index",
    ),
    pytest.param(
        [tensor("text", [2], "BYTES", ["héllo", ""])],
        [{"text": "héllo"}, {"text": ""}],
        id="bytes",
    ),
    pytest.param(
        [tensor("flag", [3], "BOOL", [True, False, 1])],
        [{"flag": True}, {"flag": False}, {"flag": True}],
        id="bool-and-0-1",
    ),
    pytest.param(
        [tensor("x", [3], "FP32", [1, 2.5, None])],
        [{"x": 1.0}, {"x": 2.5}, {"x": None}],
        id="fp-ints-and-null",
    ),
    pytest.param([tensor("x", [1], "INT64", [2.0])], [{"x": 2}], id="int-integral-float"),
    pytest.param([tensor("x", [0, 3], "FP32", [])], [], id="empty-batch"),
    pytest.param(
        [tensor("x", [1], "FP16", [0.5], parameters={"content_type": "np"})],
        [{"x": 0.5}],
        id="tensor-parameters",
    ),
]


@pytest.mark.parametrize(("inputs", "expected"), V2_REQUESTS)
def test_v2_requests_honour_shape_and_datatype(inputs: list[dict], expected: list[dict]) -> None:
    rows = rows_of(parse_request(v2_request(*inputs), JSON), "v2")
    assert rows == expected
    for row, want in zip(rows, expected, strict=True):
        assert [type(v) for v in row.values()] == [type(v) for v in want.values()]


def test_v2_request_explodes_every_input_of_every_rank() -> None:
    a = tensor("a", [2, 2, 3], "INT32", list(range(12)))
    b = tensor("b", [2], "FP32", [7, 8])
    rows = rows_of(parse_request(v2_request(a, b), JSON), "v2")
    assert len(rows) == 2
    assert list(rows[0]) == [f"a[{i},{j}]" for i in range(2) for j in range(3)] + ["b"]
    assert [rows[0]["a[0,0]"], rows[1]["a[0,0]"]] == [0, 6]
    assert [rows[0]["a[1,2]"], rows[1]["a[1,2]"]] == [5, 11]
    assert [rows[0]["b"], rows[1]["b"]] == [7.0, 8.0]


DATAFRAMES = [
    pytest.param(
        {"dataframe_split": {"columns": ["x", "y"], "data": [[1, 10], [2, 20]]}},
        "dataframe_split",
        [{"x": 1, "y": 10}, {"x": 2, "y": 20}],
        id="split",
    ),
    pytest.param(
        {"dataframe_split": {"index": [7, 9], "columns": ["x"], "data": [[1], [2]]}},
        "dataframe_split",
        [{"x": 1}, {"x": 2}],
        id="split-with-index",
    ),
    pytest.param(
        {"dataframe_split": {"columns": [0, 1.5], "data": [["a", "b"]]}},
        "dataframe_split",
        [{"0": "a", "1.5": "b"}],
        id="split-number-columns",
    ),
    pytest.param(
        {"dataframe_records": [{"x": 1, "y": 10}, {"x": 2}]},
        "dataframe_records",
        [{"x": 1, "y": 10}, {"x": 2}],
        id="records",
    ),
    pytest.param(
        {"dataframe_records": [{"x": 1}], "params": {"temperature": 0.1}},
        "dataframe_records",
        [{"x": 1}],
        id="records-mlflow-params",
    ),
]


@pytest.mark.parametrize(("document", "kind", "expected"), DATAFRAMES)
def test_dataframe_requests_use_column_names(document: Any, kind: str, expected: list) -> None:
    assert rows_of(parse_request(encode(document), JSON), kind) == expected


# --- requests that stay raw ------------------------------------------------------------------

BAD_TENSORS = [  # id, then the one input's shape, datatype, data, and what the error says
    ("count-mismatch", [2, 3], "FP32", [1.0] * 5, "'x' has 5 values for shape [2, 3] (6 expected)"),
    ("fp-string", [1], "FP32", ["1.5"], "input 'x' FP32 data holds a str"),
    ("fp-bool", [1], "FP64", [True], "FP64 data holds a bool"),
    ("fp-huge-int", [1], "FP32", [10**400], "FP32 data holds an int beyond float range"),
    ("int-fraction", [1], "INT32", [1.5], "INT32 data holds a float"),
    ("int-string", [1], "UINT8", ["1"], "UINT8 data holds a str"),
    ("int-bool", [1], "INT64", [False], "INT64 data holds a bool"),
    ("bool-two", [1], "BOOL", [2], "BOOL data holds a int"),
    ("bytes-number", [1], "BYTES", [104], "BYTES data holds a int"),
    ("datatype", [1], "FP128", [1.0], "input 'x' has unsupported datatype 'FP128'"),
    ("no-batch-dim", [], "FP32", [1.0], "shape must be a list of 1 to 64 int64 sizes"),
    ("negative-dim", [-1], "FP32", [1.0], "shape must be"),
    ("bool-dim", [True], "FP32", [1.0], "shape must be"),
    ("dim-over-int64", [2**63], "FP32", [1.0], "shape must be"),
    ("scalar-data", [1], "FP32", 1.0, "input 'x' data is not a list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "datatype", "data", "error_part"),
    [pytest.param(*case, id=name) for name, *case in BAD_TENSORS],
)
def test_v2_tensors_that_break_the_rules_stay_raw(
    shape: Any, datatype: str, data: Any, error_part: str
) -> None:
    assert_raw(parse_request(v2_request(tensor("x", shape, datatype, data)), JSON), error_part)


REJECTED_REQUESTS = [
    pytest.param(
        v2_request(tensor("a", [2], "FP32", [1, 2]), tensor("b", [3], "FP32", [1, 2, 3])),
        "inputs have different batch sizes: a=2, b=3",
        id="batch-mismatch",
    ),
    pytest.param(
        v2_request({"name": "x", "shape": [1], "datatype": "FP32"}),
        "data is not a list",
        id="no-data",
    ),
    pytest.param(
        v2_request({"shape": [1], "datatype": "FP32", "data": [1]}),
        "input has no name",
        id="no-name",
    ),
    pytest.param(
        v2_request(tensor("x", [1], "FP32", [1.0]), tensor("x", [1], "FP32", [2.0])),
        "input names collide",
        id="duplicate-names",
    ),
    pytest.param(
        v2_request(tensor("x", [1], "FP32", [], parameters={"binary_data_size": 4})),
        "binary tensor data",
        id="binary-data-parameter",
    ),
    pytest.param(
        encode({"dataframe_split": {"columns": ["x", "y"], "data": [[1]]}}),
        "rows must be lists of 2 values",
        id="split-short-row",
    ),
    pytest.param(
        encode({"dataframe_split": {"index": [0], "columns": ["x"], "data": [[1], [2]]}}),
        "index does not match",
        id="split-index-length",
    ),
    pytest.param(
        encode({"dataframe_split": {"columns": ["x", "x"], "data": [[1, 2]]}}),
        "duplicate columns",
        id="split-duplicate-columns",
    ),
    pytest.param(encode({"dataframe_split": [[1]]}), "not an object", id="split-not-object"),
    pytest.param(encode({"dataframe_records": [{"x": 1}, 2]}), "non-object", id="records-scalar"),
    pytest.param(encode({"instances": {"x": 1}}), "instances is not a list", id="instances-dict"),
    pytest.param(encode({"inputs": {"x": [1]}}), "inputs is not a list", id="inputs-dict"),
    pytest.param(
        encode({"data": {"ndarray": [[1]]}}), "unrecognised payload shape", id="unknown-object"
    ),
    pytest.param(encode([[1, 2]]), "unrecognised payload shape", id="top-level-list"),
    pytest.param(encode({"error": "boom"}), "unrecognised payload shape", id="error-as-request"),
]


@pytest.mark.parametrize(("body", "error_part"), REJECTED_REQUESTS)
def test_requests_that_cannot_be_exploded_stay_raw_with_a_reason(
    body: bytes, error_part: str
) -> None:
    assert_raw(parse_request(body, JSON), error_part)


# --- bytes that are not JSON -----------------------------------------------------------------

# The JSON header, then the tensor's bytes: -1.0 (not UTF-8) and 0.0 (UTF-8 NULs).
BINARY_HEADER = encode(
    {"inputs": [tensor("x", [1], "FP32", [], parameters={"binary_data_size": 4})]}
)
BINARY_TENSOR_BODY = BINARY_HEADER + b"\x00\x00\x80\xbf"

NOT_JSON = [
    pytest.param(
        b'{"instances": [[1]]}',
        "application/octet-stream",
        "binary content type application/octet-stream",
        id="octet-stream",
    ),
    pytest.param(b"\x89PNG\r\n", "image/png", "binary content type image/png", id="image"),
    pytest.param(b"\x0a\x01x", "application/x-protobuf", "binary content type", id="protobuf"),
    pytest.param(b"\x00\x00", "application/grpc+proto", "binary content type", id="grpc"),
    pytest.param(
        b"{}", "Application/Octet-Stream; q=1", "application/octet-stream", id="media-type-case"
    ),
    pytest.param(BINARY_TENSOR_BODY, None, "v2 binary tensor body", id="v2-binary-tensor-body"),
    pytest.param(BINARY_HEADER + bytes(4), None, "v2 binary tensor body", id="v2-binary-zeros"),
    pytest.param(b'{"instances": ["\xff"]}', JSON, "invalid UTF-8 at byte 16", id="invalid-utf8"),
    pytest.param('{"instances": [1]}'.encode("utf-16"), JSON, "invalid UTF-8", id="utf16"),
    pytest.param(b'{"instances": [1,]}', JSON, "invalid JSON: Expecting value", id="invalid-json"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, JSON, "nested too deeply", id="deep-nesting"),
    pytest.param(b"[" + b"9" * 5000 + b"]", JSON, "invalid JSON: Exceeds the limit", id="huge-int"),
]


@pytest.mark.parametrize(("body", "content_type", "error_part"), NOT_JSON)
def test_binary_and_malformed_bodies_stay_raw(
    body: bytes, content_type: str | None, error_part: str
) -> None:
    assert_raw(parse_request(body, content_type), error_part)
    assert_raw(parse_response(body, content_type), error_part)


@pytest.mark.parametrize("body", [b"", b" \r\n\t"], ids=["empty", "whitespace"])
def test_empty_bodies_are_empty(body: bytes) -> None:
    for parse in (parse_request, parse_response):
        assert parse(body, JSON) == ParsedPayload(kind="empty", rows=None, error=None)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/json; charset=utf-8"], ids=str
)
def test_json_is_parsed_whatever_the_text_content_type(content_type: str | None) -> None:
    assert parse_request(b'{"instances": [[1]]}', content_type).rows == [{"f0": 1}]


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    assert parse_request(b'\xef\xbb\xbf{"instances": [[1]]}', JSON).rows == [{"f0": 1}]


# --- responses -------------------------------------------------------------------------------

RESPONSES = [
    pytest.param(
        encode({"predictions": [3.0, 7.0]}),
        "v1",
        [{"prediction": 3.0}, {"prediction": 7.0}],
        id="v1-scalars",
    ),
    pytest.param(
        encode({"predictions": [[0.1, 0.9]]}), "v1", [{"prediction": [0.1, 0.9]}], id="v1-lists"
    ),
    pytest.param(
        encode({"predictions": [{"label": "cat", "score": 0.9}]}),
        "v1",
        [{"label": "cat", "score": 0.9}],
        id="v1-dicts",
    ),
    pytest.param(
        encode({"outputs": [1, 2]}), "v1", [{"prediction": 1}, {"prediction": 2}], id="v1-outputs"
    ),
    pytest.param(
        v2_response(tensor("sum", [2], "FP64", [3.0, 7.0])),
        "v2",
        [{"sum": 3.0}, {"sum": 7.0}],
        id="v2-sum",
    ),
    pytest.param(
        v2_response(
            tensor("label", [2], "BYTES", ["a", "b"]),
            tensor("p", [2, 2], "FP32", [[0.1, 0.9], [0.8, 0.2]]),
        ),
        "v2",
        [{"label": "a", "p[0]": 0.1, "p[1]": 0.9}, {"label": "b", "p[0]": 0.8, "p[1]": 0.2}],
        id="v2-multi-output",
    ),
    pytest.param(
        encode({"outputs": [tensor("y", [1], "INT64", [4])]}),
        "v2",
        [{"y": 4}],
        id="v2-no-model-name",
    ),
    pytest.param(encode({"model_name": "m", "outputs": []}), "v2", [], id="v2-no-outputs"),
]


@pytest.mark.parametrize(("body", "kind", "expected"), RESPONSES)
def test_responses_give_one_row_per_prediction(body: bytes, kind: str, expected: list) -> None:
    assert rows_of(parse_response(body, JSON), kind) == expected


REJECTED_RESPONSES = [
    pytest.param(encode({"error": "Model iris is not ready"}), "error response", id="error"),
    pytest.param(
        v2_response(tensor("y", [2], "FP32", [1.0]), tensor("z", [1], "FP32", [1.0])),
        "output 'y' has 1 values for shape [2] (2 expected)",
        id="v2-count-mismatch",
    ),
    pytest.param(
        v2_response(tensor("y", [2], "FP32", [1, 2]), tensor("z", [1], "FP32", [1])),
        "outputs have different batch sizes: y=2, z=1",
        id="v2-batch-mismatch",
    ),
    pytest.param(encode({"predictions": 3}), "predictions is not a list", id="predictions-scalar"),
    pytest.param(
        encode({"dataframe_records": [{"x": 1}]}), "unrecognised payload shape", id="dataframe"
    ),
    pytest.param(encode({"detail": [{"msg": "x"}]}), "unrecognised payload shape", id="unknown"),
]


@pytest.mark.parametrize(("body", "error_part"), REJECTED_RESPONSES)
def test_responses_that_cannot_be_exploded_stay_raw(body: bytes, error_part: str) -> None:
    assert_raw(parse_response(body, JSON), error_part)


# --- robustness ------------------------------------------------------------------------------

KEYS = ["instances", "inputs", "outputs", "predictions", "dataframe_split", "dataframe_records",
        "columns", "data", "index", "name", "shape", "datatype", "parameters", "model_name",
        "error", "binary_data_size"]  # fmt: skip
DATATYPES = ["BOOL", "INT8", "UINT64", "FP16", "FP32", "FP64", "BYTES", "fp32", "X"]
CONTENT_TYPES = [None, JSON, "text/plain", "application/octet-stream", "image/jpeg", ""]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Shapes close to real payloads, with the wrong types in the wrong places."""
    choice = rng.randrange(10 if depth < 5 else 5)
    if choice == 0:
        return rng.choice([None, True, False, 0, 1, -1, 2**70, 0.5, float("nan"), float("inf")])
    if choice == 1:
        return rng.choice(["", "x", "é", "a[0]", "\x00"])
    if choice == 2:
        return rng.choice(DATATYPES)
    if choice in (3, 4):
        return [rng.randrange(-1, 4) for _ in range(rng.randrange(4))]
    if choice in (5, 6):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 7:
        return random_tensor(rng, depth)
    return {rng.choice(KEYS): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_tensor(rng: random.Random, depth: int) -> dict:
    """Mostly well formed, so the explode paths run too; sometimes not."""
    shape = [rng.randrange(-1, 4) for _ in range(rng.randrange(4))]
    count = math.prod(shape) if rng.random() < 0.8 else rng.randrange(5)
    value = rng.choice([0.5, 1, True, "s", None, [1]])
    data = [value] * max(count, 0)
    if rng.random() < 0.3:
        data = [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    elif data and shape and shape[0] > 0 and rng.random() < 0.5:
        width = max(len(data) // shape[0], 1)
        data = [data[i : i + width] for i in range(0, len(data), width)]  # nested by row
    name = rng.choice(["a", "b", "", "a[0]"])
    return tensor(name, shape, rng.choice(DATATYPES), data)


def check_invariants(parsed: ParsedPayload) -> None:
    assert parsed.kind in {"v1", "v2", "dataframe_split", "dataframe_records", "raw", "empty"}
    assert (parsed.rows is None) == (parsed.kind in {"raw", "empty"})
    assert (parsed.error is not None) == (parsed.kind == "raw")
    for row in parsed.rows or []:
        assert type(row) is dict
        assert all(type(key) is str for key in row)


def test_random_json_never_raises() -> None:
    rng = random.Random(20261129)
    exploded: set[str] = set()
    for _ in range(20_000):
        document = {rng.choice(KEYS): random_json(rng) for _ in range(rng.randrange(1, 3))}
        if rng.random() < 0.3:
            document["inputs" if rng.random() < 0.5 else "outputs"] = [
                random_tensor(rng, 0) for _ in range(rng.randrange(1, 3))
            ]
        body = json.dumps(document).encode()
        for parse in (parse_request, parse_response):
            parsed = parse(body, rng.choice(CONTENT_TYPES))
            check_invariants(parsed)
            if parsed.rows:
                exploded.add(parsed.kind)
    assert exploded >= {"v1", "v2", "dataframe_records"}  # the generator reaches the explode paths


def test_random_and_mutated_bytes_never_raise() -> None:
    rng = random.Random(7)
    seeds = [
        v2_request(tensor("a", [2, 2], "FP32", [1, 2, 3, 4])),
        encode({"instances": [[1]]}),
        BINARY_TENSOR_BODY,
        b"",
    ]
    for _ in range(20_000):
        if rng.random() < 0.5:
            body = rng.randbytes(rng.randrange(64))
        else:
            body = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                if body:
                    body[rng.randrange(len(body))] = rng.randrange(256)
            body = bytes(body)
        for parse in (parse_request, parse_response):
            check_invariants(parse(body, rng.choice(CONTENT_TYPES)))


# --- at most max_rows rows exploded; large bodies cut before they are parsed ----------------

LARGE = MAX_PARSED_BYTES + 100_000  # parsed only once cut
KEEP = 25
Document = Callable[[int], dict[str, Any]]


def _large(document: dict[str, Any]) -> bytes:
    """`document` with a string member that brings it above the size parsed whole."""
    body = encode(document)
    return encode({**document, "pad": "x" * (LARGE - len(body))})


def _rows_for(make: Document) -> int:
    """A row count that makes `make`'s body larger than is parsed whole."""
    rows = 64
    while len(encode(make(rows))) <= LARGE:
        rows *= 2
    return rows


CUT_CASES: dict[str, tuple[Callable[..., ParsedPayload], Document]] = {
    "v1 instances": (parse_request, lambda n: {"instances": [[i, i] for i in range(n)]}),
    "v1 instances holding brackets in strings": (
        parse_request, lambda n: {"instances": [[f'a"],[{i}', "\\\\]"] for i in range(n)]}
    ),
    "v1 predictions": (parse_response, lambda n: {"predictions": list(range(n))}),
    "dataframe_records": (
        parse_request, lambda n: {"dataframe_records": [{"a": i} for i in range(n)]}
    ),
    "v1 inputs after another array": (
        parse_request, lambda n: {"pad": list(range(n)), "inputs": [[i] for i in range(n)]}
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CUT_CASES)
def test_a_large_payload_is_cut_to_max_rows_before_it_is_parsed(case: str) -> None:
    parse, make = CUT_CASES[case]
    rows = _rows_for(make)
    cut = parse(encode(make(rows)), JSON, max_rows=KEEP)
    expected = parse(encode(make(KEEP)), JSON, max_rows=KEEP)
    assert expected.rows is not None and len(expected.rows) == KEEP, expected.error
    assert cut.kind == expected.kind
    assert cut.rows == expected.rows, "the first rows, exactly as a whole parse makes them"
    assert cut.not_exploded == rows - KEEP
    assert cut.error is not None and f"{rows - KEEP} rows not exploded" in cut.error


@pytest.mark.parametrize(
    "body",
    [
        encode({"instances": [[i, "a"] for i in range(60)]}),
        encode({"predictions": list(range(60))}),
        v2_request(tensor("x", [60, 2], "INT64", list(range(120)))),
        encode({"dataframe_split": {"columns": ["a"], "data": [[i] for i in range(60)]}}),
    ],
    ids=["v1 request", "v1 response", "v2", "dataframe_split"],
)
def test_at_most_max_rows_are_exploded_and_the_rest_counted(body: bytes) -> None:
    parse = parse_response if b"predictions" in body else parse_request
    whole = parse(body, JSON)
    cut = parse(body, JSON, max_rows=KEEP)
    assert whole.rows is not None and len(whole.rows) == 60, whole.error
    assert (cut.kind, cut.rows) == (whole.kind, whole.rows[:KEEP])
    assert cut.not_exploded == 60 - KEEP
    assert cut.error is not None and f"{60 - KEEP} rows not exploded" in cut.error


def test_a_payload_within_max_rows_is_exploded_whole_without_a_reason() -> None:
    parsed = parse_request(encode({"instances": [[1], [2]]}), JSON, max_rows=2)
    assert (parsed.rows, parsed.not_exploded, parsed.error) == ([{"f0": 1}, {"f0": 2}], 0, None)


def test_a_v2_shape_claiming_a_huge_batch_of_empty_rows_explodes_at_most_max_rows() -> None:
    """shape [10**18, 0] holds no values: 10**18 empty rows, once, before the cap."""
    parsed = parse_request(v2_request(tensor("x", [10**18, 0], "FP32", [])), JSON, max_rows=5)
    assert parsed.rows == [{}] * 5
    assert parsed.not_exploded == 10**18 - 5


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [' + b"[1]," * 600_000 + b"[1]",  # the array is never closed
        b'{"instances": [["' + b'\\"' * 1_200_000 + b"]]}",  # nor is the string
    ],
    ids=["array", "string"],
)
def test_a_large_body_that_is_not_valid_json_stays_raw_without_being_parsed(body: bytes) -> None:
    started = time.perf_counter()
    parsed = parse_request(body, JSON, max_rows=10)
    assert time.perf_counter() - started < 5, "linear in the body's size"
    assert (parsed.kind, parsed.rows) == ("raw", None)
    assert parsed.error is not None and "never closed" in parsed.error


def test_a_large_payload_of_large_rows_is_cut_to_the_bytes_parsed_too() -> None:
    body = encode({"instances": [["x" * 1000] for _ in range(3000)]})
    parsed = parse_request(body, JSON, max_rows=10_000)
    assert parsed.rows is not None
    kept = len(parsed.rows)
    row_bytes = len(encode(["x" * 1000])) + len(", ")
    assert (kept - 1) * row_bytes <= MAX_PARSED_ROW_BYTES < (kept + 1) * row_bytes
    assert parsed.rows[0] == {"f0": "x" * 1000}
    assert parsed.not_exploded == 3000 - kept


@pytest.mark.parametrize(
    "document",
    [
        {"inputs": [tensor("x", [40, 2], "INT64", list(range(80)))]},
        {"dataframe_split": {"columns": ["a"], "data": [[n] for n in range(40)]}},
    ],
    ids=["v2", "dataframe_split"],
)
def test_a_large_payload_whose_rows_are_not_a_top_level_array_is_not_exploded(
    document: dict[str, Any],
) -> None:
    """Its rows cannot be cut without parsing it whole, which would cost up to ~25x its
    size: it is kept raw, with the reason."""
    body = _large(document)
    parsed = parse_request(body, JSON)
    assert (parsed.kind, parsed.rows) == ("raw", None)
    assert parsed.error is not None and f"payload of {len(body)} bytes" in parsed.error


def test_a_large_v2_list_of_more_tensors_than_rows_kept_is_not_exploded() -> None:
    """Cut before parsing as if it held rows, a v2 list would lose tensors: kept raw."""
    tensors = [tensor(f"t{n}", [1, 8000], "INT64", [7] * 8000) for n in range(100)]
    body = v2_request(*tensors)
    assert len(body) > MAX_PARSED_BYTES
    parsed = parse_request(body, JSON, max_rows=25)
    assert (parsed.kind, parsed.rows) == ("raw", None)
    assert parsed.error == "inputs holds more tensors than rows are exploded"
