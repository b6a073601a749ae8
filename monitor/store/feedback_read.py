"""A model's performance: its predictions against the feedback labels, overall and per window.

Read side: SQLAlchemy, numpy and the schema only. Labels join their instances by (request_id,
row_index) when read, so a label stored before its inference counts once the inference is.

- The prediction of an instance is its prediction object's single output: KServe v1's
  `{"prediction": x}`, v2's first output. One that is not a single value (a list of
  probabilities) leaves its instance out.
- The task: regression when a label is written as a float (`2.5`, `3.0`) or a label or a
  prediction is a number with a fraction; else classification. Classes compare as text, so
  `1`, `1.0` and `"1"` are one class.
- Windows: the model's drift windows (count windows by instance key, time windows by time)
  when it has any in the range, else fixed buckets of time on a grid from the epoch, the
  shortest of `BUCKET_SECONDS` that makes at most `MAX_BUCKETS`. Only windows that hold a
  labelled instance are listed.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.engine import Connection

from monitor.store.schema import drift_windows, feedback, inferences, instances

BUCKET_SECONDS = (60, 300, 900, 3600, 6 * 3600, 86_400, 7 * 86_400)
MAX_BUCKETS = 100
MAX_WINDOWS = 1000  # the newest of the model's drift windows in the range
MAX_CONFUSION_CLASSES = 50  # more classes than this: no confusion matrix
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[datetime, str, int]


def model_known(connection: Connection, model: str) -> bool:
    """Whether any call or instance of `model` is stored (two index probes)."""
    return bool(
        connection.scalar(
            select(
                or_(
                    exists().where(inferences.c.model == model),
                    exists().where(instances.c.model == model),
                )
            )
        )
    )


@dataclass(frozen=True, slots=True)
class Labelled:
    """Labelled instances in key order, with their prediction and label."""

    keys: list[Key]
    predictions: list[Any]
    labels: list[Any]


def _single_output(prediction: Any) -> Any:
    if isinstance(prediction, dict):
        prediction = next(iter(prediction.values()), None)
    if isinstance(prediction, str | int | float) and not _non_finite(prediction):
        return prediction
    return None


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def labelled_instances(
    connection: Connection, model: str, since: datetime | None, until: datetime | None
) -> Labelled:
    query = (
        select(
            instances.c.time, instances.c.request_id, instances.c.row_index,
            instances.c.prediction, feedback.c.label,
        )
        .join(
            feedback,
            and_(
                feedback.c.request_id == instances.c.request_id,
                feedback.c.row_index == instances.c.row_index,
            ),
        )
        .where(instances.c.model == model)
    )  # fmt: skip
    if since is not None:
        query = query.where(instances.c.time >= since)
    if until is not None:
        query = query.where(instances.c.time < until)
    query = query.order_by(instances.c.time, instances.c.request_id, instances.c.row_index)
    keys: list[Key] = []
    predictions: list[Any] = []
    labels: list[Any] = []
    for time, request_id, row_index, prediction, label in connection.execute(query):
        value = _single_output(prediction)
        if value is None or _single_output(label) is None or isinstance(label, bool):
            continue  # no single predicted value, or a label the API would not take
        keys.append((time, request_id, row_index))
        predictions.append(value)
        labels.append(label)
    return Labelled(keys, predictions, labels)


def _has_fraction(value: Any) -> bool:
    return isinstance(value, float) and not value.is_integer()


def task_of(predictions: Sequence[Any], labels: Sequence[Any]) -> str:
    regression = any(type(label) is float for label in labels) or any(
        _has_fraction(value) for value in (*predictions, *labels)
    )
    return "regression" if regression else "classification"


def _class_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value))  # integral here: classification has no fractions
    return str(value)


def _class_order(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(int(text)), text)
    except ValueError:
        return (1, 0.0, text)


def classification_figures(predictions: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, and precision, recall and F1 averaged over classes (macro: each class in the
    labels or the predictions counts once; a ratio with nothing to divide by is 0)."""
    truth = [_class_text(label) for label in labels]
    guess = [_class_text(value) for value in predictions]
    classes = sorted(set(truth) | set(guess), key=_class_order)
    index = {name: position for position, name in enumerate(classes)}
    k = len(classes)
    true_codes = np.fromiter((index[c] for c in truth), dtype=np.int64, count=len(truth))
    guess_codes = np.fromiter((index[c] for c in guess), dtype=np.int64, count=len(guess))
    matrix = np.bincount(true_codes * k + guess_codes, minlength=k * k).reshape(k, k)
    hits = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, actual)
    f1 = _ratio(2 * hits, predicted + actual)
    return {
        "labelled": len(truth),
        "accuracy": float(hits.sum() / len(truth)),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "confusion": (
            {"labels": classes, "matrix": matrix.tolist()} if k <= MAX_CONFUSION_CLASSES else None
        ),
    }


def _ratio(part: np.ndarray[Any, Any], whole: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out = np.zeros(len(part), dtype=np.float64)
    np.divide(part, whole, out=out, where=whole > 0)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def regression_figures(predictions: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """Mean absolute error, root mean squared error and bias (mean prediction - label), over
    the instances whose label and prediction are both numbers."""
    pairs = [
        (float(p), float(y))
        for p, y in zip(predictions, labels, strict=True)
        if _is_number(p) and _is_number(y)
    ]
    if not pairs:
        return {"labelled": 0, "mae": None, "rmse": None, "bias": None}
    values = np.array(pairs, dtype=np.float64)
    errors = values[:, 0] - values[:, 1]
    return {
        "labelled": len(pairs),
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt(np.square(errors).mean())),
        "bias": float(errors.mean()),
    }


def figures(task: str, predictions: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    if task == "regression":
        return regression_figures(predictions, labels)
    return classification_figures(predictions, labels)


@dataclass(frozen=True, slots=True)
class Span:
    start: datetime
    end: datetime
    lo: int  # the labelled instances [lo, hi) of the key-ordered list
    hi: int


def _drift_spans(
    connection: Connection,
    model: str,
    since: datetime | None,
    until: datetime | None,
    keys: list[Key],
) -> list[Span]:
    query = select(drift_windows).where(drift_windows.c.model == model)
    if since is not None:
        query = query.where(drift_windows.c.window_end >= since)
    if until is not None:
        query = query.where(drift_windows.c.window_start < until)
    rows = connection.execute(query.order_by(drift_windows.c.seq.desc()).limit(MAX_WINDOWS))
    spans = []
    for row in reversed(rows.all()):
        w = row._mapping
        after = _window_key(w, "after")
        lo = 0 if after is None else bisect_right(keys, after)
        if w["kind"] == "count":
            through = _window_key(w, "end")
            hi = len(keys) if through is None else bisect_right(keys, through)
        else:  # a time window: [start, end), after its reference's stored instances
            lo = max(lo, bisect_left(keys, (w["window_start"],)))
            hi = bisect_left(keys, (w["window_end"],))
        spans.append(Span(w["window_start"], w["window_end"], lo, hi))
    return spans


def _window_key(window: Any, prefix: str) -> Key | None:
    time = window[f"{prefix}_time"]
    if time is None:
        return None
    return (time, window[f"{prefix}_request_id"], window[f"{prefix}_row_index"])


def bucket_seconds(first: datetime, last: datetime) -> int:
    span = (last - first).total_seconds()
    for seconds in BUCKET_SECONDS:
        if span / seconds < MAX_BUCKETS:
            return seconds
    return BUCKET_SECONDS[-1]


def _bucket_spans(keys: list[Key], seconds: int) -> list[Span]:
    spans = []
    lo = 0
    while lo < len(keys):
        offset = (keys[lo][0] - EPOCH) // timedelta(seconds=seconds)
        start = EPOCH + timedelta(seconds=offset * seconds)
        end = start + timedelta(seconds=seconds)
        hi = bisect_left(keys, (end,), lo)
        spans.append(Span(start, end, lo, hi))
        lo = hi
    return spans


def performance(
    connection: Connection,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """{"model", "task", "windows_from", "bucket_seconds", "overall", "windows"}: task None
    when no labelled instance is in the range; `windows_from` "drift windows" or "buckets"."""
    # Without any label stored the join is skipped: it would read every instance of the
    # range (seconds for a million) to find none.
    no_labels = connection.scalar(select(feedback.c.request_id).limit(1)) is None
    labelled = Labelled([], [], []) if no_labels else labelled_instances(
        connection, model, since, until)  # fmt: skip
    keys = labelled.keys
    if not keys:
        return {
            "model": model, "task": None, "windows_from": None, "bucket_seconds": None,
            "overall": {"labelled": 0}, "windows": [],
        }  # fmt: skip
    task = task_of(labelled.predictions, labelled.labels)
    spans = _drift_spans(connection, model, since, until, keys)
    seconds = None
    if not spans:
        seconds = bucket_seconds(keys[0][0], keys[-1][0])
        spans = _bucket_spans(keys, seconds)
    windows = []
    for span in spans:
        if span.hi <= span.lo:
            continue
        window = figures(
            task, labelled.predictions[span.lo : span.hi], labelled.labels[span.lo : span.hi]
        )
        if window["labelled"]:
            windows.append({"window_start": span.start, "window_end": span.end, **window})
    return {
        "model": model,
        "task": task,
        "windows_from": "buckets" if seconds is not None else "drift windows",
        "bucket_seconds": seconds,
        "overall": figures(task, labelled.predictions, labelled.labels),
        "windows": windows,
    }
