"""A model's performance from feedback labels joined with its predictions, overall and per
window, checked against scikit-learn and numpy; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from sqlalchemy import insert

from monitor.store import feedback_read, user_write
from monitor.store.detection_store import DetectionStore
from monitor.store.schema import instances
from monitor.store.store import Store
from monitor.store.user_write import Feedback
from monitor.store.windows import InstanceKey, WindowBounds
from tests.monitor.store.detection_helpers import count_bounds, report
from tests.monitor.store.helpers import T0


def store_predictions(store: Store, predictions: list[Any], *, model: str = "m",
                      start: datetime = T0, step: timedelta = timedelta(seconds=1),
                      prefix: str = "r") -> None:  # fmt: skip
    """One instance per prediction, `step` apart, as the response's row leaves it."""
    rows = [
        {"request_id": f"{prefix}{n:05d}", "row_index": 0, "model": model,
         "time": start + n * step, "features": {"x": float(n)},
         "prediction": value if isinstance(value, dict) else {"prediction": value}}
        for n, value in enumerate(predictions)
    ]  # fmt: skip
    with store.write_transaction() as connection:
        connection.execute(insert(instances), rows)


def label(store: Store, labels: list[Any], prefix: str = "r") -> None:
    user_write.store_feedback(
        store.engine, [Feedback(f"{prefix}{n:05d}", 0, value) for n, value in enumerate(labels)]
    )


def performance(store: Store, model: str = "m", **range_: datetime) -> dict[str, Any]:
    with store.engine.connect() as connection:
        return feedback_read.performance(connection, model, **range_)


def test_classification_figures_equal_scikit_learns(store: Store) -> None:
    rng = np.random.default_rng(3)
    truth = [str(c) for c in rng.choice(["cat", "dog", "fox"], 500, p=[0.5, 0.3, 0.2])]
    guess = [c if rng.random() < 0.7 else str(rng.choice(["cat", "dog", "emu"])) for c in truth]
    store_predictions(store, guess)
    label(store, truth)

    found = performance(store)

    overall = found["overall"]
    assert (found["task"], overall["labelled"]) == ("classification", 500)
    assert overall["accuracy"] == pytest.approx(accuracy_score(truth, guess), abs=1e-12)
    for name, metric in (("precision", precision_score), ("recall", recall_score),
                         ("f1", f1_score)):  # fmt: skip
        expected = metric(truth, guess, average="macro", zero_division=0)
        assert overall[name] == pytest.approx(expected, abs=1e-12), name
    classes = ["cat", "dog", "emu", "fox"]  # "emu" only ever predicted
    assert overall["confusion"] == {
        "labels": classes, "matrix": confusion_matrix(truth, guess, labels=classes).tolist(),
    }  # fmt: skip


def test_integer_classes_and_text_classes_are_the_same_classes(store: Store) -> None:
    store_predictions(store, [1, 2, 10, 2, 1.0])  # 1.0: a class written as a float
    label(store, ["1", 2, 10, 1, 1])

    found = performance(store)

    assert found["task"] == "classification"
    assert found["overall"]["accuracy"] == pytest.approx(0.8)
    assert found["overall"]["confusion"]["labels"] == ["1", "2", "10"]


def test_regression_figures_equal_numpys(store: Store) -> None:
    rng = np.random.default_rng(4)
    truth = rng.normal(10.0, 3.0, 300)
    guess = truth + rng.normal(0.5, 1.0, 300)
    store_predictions(store, [{"output-0": float(p)} for p in guess])  # a v2 answer's row
    label(store, [float(y) for y in truth])

    found = performance(store)

    errors = guess - truth
    assert found["task"] == "regression"
    assert found["overall"] == pytest.approx({
        "labelled": 300, "mae": np.abs(errors).mean(),
        "rmse": np.sqrt((errors**2).mean()), "bias": errors.mean(),
    }, abs=1e-9)  # fmt: skip


def test_integer_labels_of_fractional_predictions_are_regression(store: Store) -> None:
    store_predictions(store, [1.5, 2.0, 4.0])
    label(store, [1, 2, 3])

    found = performance(store)

    assert found["task"] == "regression"
    assert found["overall"]["mae"] == pytest.approx(0.5)
    assert found["overall"]["bias"] == pytest.approx(0.5)


def test_a_label_sent_before_its_inference_counts_once_it_is_stored(store: Store) -> None:
    label(store, ["a", "b"])
    assert performance(store)["overall"] == {"labelled": 0}
    assert performance(store)["task"] is None

    store_predictions(store, ["a", "a"])

    assert performance(store)["overall"]["labelled"] == 2
    assert performance(store)["overall"]["accuracy"] == 0.5


def test_a_later_label_replaces_the_earlier_one_in_the_figures(store: Store) -> None:
    store_predictions(store, ["a", "b"])
    label(store, ["a", "a"])
    assert performance(store)["overall"]["accuracy"] == 0.5

    label(store, ["a", "b"])

    assert performance(store)["overall"]["accuracy"] == 1.0


def test_instances_without_a_single_predicted_value_are_left_out(store: Store) -> None:
    store_predictions(store, ["a", [0.2, 0.8], None, {"prediction": {"class": "a"}}, "b"])
    label(store, ["a", "a", "a", "a", "a"])

    overall = performance(store)["overall"]

    assert overall["labelled"] == 2 and overall["accuracy"] == 0.5


def test_since_and_until_bound_the_instances_and_other_models_are_apart(store: Store) -> None:
    store_predictions(store, ["a"] * 10)
    store_predictions(store, ["b"] * 10, model="other", prefix="o")
    label(store, ["a"] * 5 + ["b"] * 5)
    label(store, ["b"] * 10, prefix="o")

    found = performance(store, since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=7))

    assert found["overall"]["labelled"] == 4 and found["overall"]["accuracy"] == 0.5
    assert performance(store, "other")["overall"]["accuracy"] == 1.0


def test_without_drift_windows_the_figures_come_in_time_buckets(store: Store) -> None:
    # 12:00:00 .. 12:29:50 every 10 s: 30 minutes make 30 one-minute buckets (at most 100).
    store_predictions(store, ["a", "b"] * 90, step=timedelta(seconds=10))
    label(store, ["a"] * 180)

    found = performance(store)

    assert (found["windows_from"], found["bucket_seconds"]) == ("buckets", 60)
    windows = found["windows"]
    assert [w["window_start"] for w in windows] == [T0 + timedelta(minutes=n) for n in range(30)]
    assert all(w["window_end"] - w["window_start"] == timedelta(minutes=1) for w in windows)
    assert [w["labelled"] for w in windows] == [6] * 30
    assert all(w["accuracy"] == 0.5 for w in windows)


def test_with_drift_windows_the_figures_follow_them(store: Store) -> None:
    store_predictions(store, ["a"] * 6 + ["b"] * 4)  # 12:00:00 .. 12:00:09
    label(store, ["a"] * 10)
    handle = DetectionStore(store)
    keys = [InstanceKey(T0 + timedelta(seconds=n), f"r{n:05d}", 0) for n in range(10)]
    bounds = WindowBounds("count", 1, keys[0].time, keys[4].time, through=keys[4])
    first = handle.claim_new("m", bounds, 1, "a#1", 30.0)
    assert first is not None and handle.finish(first, report(5)) is not None
    second = handle.claim_new("m", count_bounds(2, keys[4], keys[9]), 1, "a#2", 30.0)
    assert second is not None  # still claimed: its figures count all the same

    found = performance(store)

    assert found["windows_from"] == "drift windows" and found["bucket_seconds"] is None
    assert [(w["window_start"], w["window_end"], w["labelled"], w["accuracy"])
            for w in found["windows"]] == [
        (keys[0].time, keys[4].time, 5, 1.0), (keys[4].time, keys[9].time, 5, 0.2),
    ]  # fmt: skip


def test_time_windows_hold_the_instances_of_their_time(store: Store) -> None:
    store_predictions(store, ["a", "b", "a", "a"], step=timedelta(seconds=40))  # 0 40 80 120
    label(store, ["a"] * 4)
    handle = DetectionStore(store)
    minute = timedelta(minutes=1)
    for slot in (0, 1):  # [12:00, 12:01) and [12:01, 12:02); 12:02:00 is in neither
        start = T0 + slot * minute
        bounds = WindowBounds("tumbling", slot, start, start + minute)
        assert handle.claim_new("m", bounds, 1, f"a#{slot}", 30.0) is not None

    windows = performance(store)["windows"]

    assert [(w["window_start"], w["labelled"], w["accuracy"]) for w in windows] == [
        (T0, 2, 0.5), (T0 + minute, 1, 1.0),
    ]  # fmt: skip
