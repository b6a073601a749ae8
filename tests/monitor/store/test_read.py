"""What the store gives back: instance frames, inference pages, stats; and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from monitor.store.records import DeadLetter
from monitor.store.store import Store
from tests.monitor.store.helpers import T0, call, event, request, response, table_rows


def test_latest_instances_has_key_feature_and_prediction_columns_newest_first(
    store: Store,
) -> None:
    rows = [{"sepal": 1.0, "petal": 2.0}, {"sepal": 3.0, "petal": 4.0}]
    answers = [{"class": 0, "score": 0.9}, {"class": 1, "score": 0.8}]
    store.write([request("old", rows, time=T0), response("old", answers)])
    later = T0 + timedelta(seconds=1)
    store.write([request("new", rows[:1], time=later), response("new", answers[:1], time=later)])
    store.write([*call("other-model", model="wine")])

    frame = store.latest_instances("iris")

    assert list(frame.columns) == [
        "request_id", "row_index", "time", "sepal", "petal", "prediction.class",
        "prediction.score",
    ]  # fmt: skip
    assert frame[["request_id", "row_index"]].values.tolist() == [
        ["new", 0], ["old", 0], ["old", 1],
    ]  # fmt: skip
    assert frame["sepal"].tolist() == [1.0, 1.0, 3.0]
    assert frame["prediction.class"].tolist() == [0, 0, 1]
    assert frame["time"].tolist() == [
        pd.Timestamp(later), pd.Timestamp(T0), pd.Timestamp(T0),
    ]  # fmt: skip
    assert str(frame["time"].dt.tz) == "UTC"
    assert len(store.latest_instances("iris", limit=2)) == 2


def test_latest_instances_of_half_known_calls_and_uneven_rows(store: Store) -> None:
    store.write([request("no-answer-yet", [{"a": 1}], time=T0 + timedelta(seconds=2))])
    store.write([response("no-question-yet", [{"p": 7}], time=T0 + timedelta(seconds=1))])
    store.write([request("extra-feature", [{"a": 2, "b": 3}], time=T0), response("extra-feature")])

    frame = store.latest_instances("iris")

    assert frame["request_id"].tolist()[:2] == ["no-answer-yet", "no-question-yet"]
    assert frame["a"][0] == 1 and pd.isna(frame["a"][1])
    assert pd.isna(frame["prediction.p"][0]) and frame["prediction.p"][1] == 7
    assert set(frame.columns) >= {"a", "b", "prediction.p", "prediction"}


def test_a_v1_answer_is_one_prediction_column(store: Store) -> None:
    store.write([*call("v1")])

    frame = store.latest_instances("iris")

    assert list(frame.columns) == [
        "request_id", "row_index", "time", "f0", "f1", "f2", "f3", "prediction",
    ]  # fmt: skip
    assert frame["prediction"].tolist() == [1, 2]


def test_a_feature_named_like_another_column_gets_a_prefix(store: Store) -> None:
    store.write([request("r", [{"time": 5, "prediction": 6}]), response("r", [{"prediction": 2}])])

    frame = store.latest_instances("iris")

    assert list(frame.columns) == [
        "request_id", "row_index", "time", "features.time", "features.prediction", "prediction",
    ]  # fmt: skip
    assert frame["features.time"].tolist() == [5]


def test_latest_instances_of_an_unknown_model_is_an_empty_frame(store: Store) -> None:
    frame = store.latest_instances("nobody")

    assert frame.empty and list(frame.columns) == ["request_id", "row_index", "time"]


def test_latest_inferences_pages_back_in_time(store: Store) -> None:
    for second in range(7):
        store.write([*call(f"call-{second}", at=T0 + timedelta(seconds=second))])
    store.write([*call("wine-call", at=T0 + timedelta(seconds=3), model="wine")])

    first = store.latest_inferences(limit=3, model="iris")
    second = store.latest_inferences(limit=3, model="iris", before=first[-1].time)
    everything = store.latest_inferences()

    assert [i.request_id for i in first] == ["call-6", "call-5", "call-4"]
    assert [i.request_id for i in second] == ["call-3", "call-2", "call-1"]
    assert len(everything) == 8 and everything[3].request_id == "wine-call"
    summary = first[0]
    assert summary.time == T0 + timedelta(seconds=6) and summary.time.tzinfo is not None
    assert (summary.model, summary.status_code, summary.batch_size) == ("iris", 200, 2)
    assert summary.has_request and summary.has_response and not summary.orphaned
    assert summary.latency_ms == 7.0


def test_latest_inferences_with_a_request_id_pages_through_calls_at_the_same_time(
    store: Store,
) -> None:
    store.write([request(f"same-{n}", time=T0) for n in range(5)])

    pages, before, before_id = [], None, None
    while page := store.latest_inferences(limit=2, before=before, before_request_id=before_id):
        pages.append([i.request_id for i in page])
        before, before_id = page[-1].time, page[-1].request_id

    assert pages == [["same-4", "same-3"], ["same-2", "same-1"], ["same-0"]]


def test_stats_count_rows_in_total_and_per_model(store: Store) -> None:
    store.write([*call("a"), *call("b"), *call("c", model="wine"), request("d", model=None)])
    store.write([event("other", "e", None)])

    stats = store.stats()

    assert stats == {
        "events": 8,
        "inferences": 4,
        "instances": 8,
        "orphans": 0,
        "batch_size_mismatches": 0,
        "dead_letters": 0,
        "models": {
            "": {"inferences": 1, "instances": 2},
            "iris": {"inferences": 2, "instances": 4},
            "wine": {"inferences": 1, "instances": 2},
        },
    }


def test_purge_deletes_only_what_is_older_and_in_small_batches(store: Store) -> None:
    old, new = T0 - timedelta(days=30), T0
    for n in range(7):
        store.write([*call(f"old-{n}", at=old + timedelta(minutes=n))])
    store.write([*call("new", at=new), event("other", "old-other", None, time=old)])

    deleted = store.purge(before=T0 - timedelta(days=1), batch_rows=3)

    # 7 calls: 7 inferences, 14 instances, 14 events; and the other event.
    assert deleted == 7 + 14 + 14 + 1
    assert [r["request_id"] for r in table_rows(store, "inferences")] == ["new"]
    assert {r["request_id"] for r in table_rows(store, "instances")} == {"new"}
    assert {r["request_id"] for r in table_rows(store, "events")} == {"new"}
    assert store.purge(before=T0 - timedelta(days=1)) == 0


def test_purge_deletes_dead_letters_stored_before_the_cutoff(store: Store) -> None:
    letters = [DeadLetter("payloads", 0, offset, b"k", b"not an event") for offset in range(5)]
    store.write([], letters)
    stored = datetime.now(UTC)

    assert store.purge(before=stored - timedelta(hours=1)) == 0
    assert store.stats()["dead_letters"] == 5
    assert store.purge(before=stored + timedelta(seconds=1), batch_rows=2) == 5
    assert store.stats()["dead_letters"] == 0


def test_purge_with_nothing_old_deletes_nothing(store: Store) -> None:
    store.write([*call("new", at=datetime.now(UTC))])

    assert store.purge(before=T0) == 0
    assert store.stats()["events"] == 2


@pytest.mark.parametrize("batch_rows", [0, 30_001])
def test_purge_refuses_batches_it_cannot_do(store: Store, batch_rows: int) -> None:
    with pytest.raises(ValueError, match="batch_rows must be 1 to 30000"):
        store.purge(before=T0, batch_rows=batch_rows)
