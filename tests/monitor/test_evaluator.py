"""The drift evaluator in process, on SQLite and PostgreSQL: references, count and time
windows, exactly once between evaluators, claims taken over, late revisions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import insert

from monitor.detection_config import DetectionConfig, ModelDetection, ReferenceSpec, WindowSpec
from monitor.evaluator import DriftEvaluator, EvaluatorSettings
from monitor.store.detection_store import DetectionStore
from monitor.store.schema import instances
from monitor.store.store import Store
from monitor.store.windows import InstanceRange, WindowReport
from tests.monitor.detection_data import instance_rows
from tests.monitor.store.detection_helpers import count_bounds

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SMALL = ModelDetection(reference=ReferenceSpec(instances=200), window=WindowSpec(instances=200))


def store_rows(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.write_transaction() as connection:
        connection.execute(insert(instances), rows)


def evaluator(store: Store, detection: ModelDetection = SMALL, **settings: Any) -> DriftEvaluator:
    chosen = {"settle_s": 0.0, "late_check_s": 0.0, **settings}
    return DriftEvaluator(DetectionStore(store), DetectionConfig(default=detection),
                          EvaluatorSettings(**chosen))  # fmt: skip


def drifted(report: dict[str, Any]) -> list[str]:
    return [feature["column"] for feature in report["features"] if feature["drift"]]


def oldest_first(store: Store, model: str = "m") -> list[dict[str, Any]]:
    return sorted(DetectionStore(store).reports(model, limit=1000),
                  key=lambda r: (r["window_start"], r["revision"]))  # fmt: skip


def test_first_instances_become_the_reference_and_shifted_windows_flag_their_features(
    store: Store,
) -> None:
    normal = instance_rows("m", T0, 600, seed=1)
    shifted = instance_rows("m", T0 + timedelta(seconds=6), 400, seed=2, prefix="s",
                            shifted=frozenset({"a", "colour"}))  # fmt: skip
    store_rows(store, normal + shifted)

    assert evaluator(store).run_once() == 4

    reports = oldest_first(store)
    assert [r["instances"] for r in reports] == [200] * 4
    assert [drifted(r) for r in reports] == [[], [], ["a", "colour", "prediction"],
                                             ["a", "colour", "prediction"]]  # fmt: skip
    assert [r["dataset_drift"] for r in reports] == [False, False, True, True]  # 3 of 5
    reference = DetectionStore(store).reference("m")
    assert reference is not None and reference.source == "first 200"
    assert reference.last is not None and reference.last.request_id == "r000199"
    first = DetectionStore(store).instances(InstanceRange("m", after=reference.last), 1)
    assert reports[0]["window_start"] == first["time"][0].to_pydatetime()


def test_a_window_waits_for_its_instances_to_settle(store: Store) -> None:
    now = datetime.now(UTC)
    store_rows(store, instance_rows("m", now - timedelta(seconds=60), 400, seed=1,
                                    step=timedelta(seconds=0.05)))  # fmt: skip
    store_rows(store, instance_rows("m", now - timedelta(seconds=5), 200, seed=2, prefix="n"))

    assert evaluator(store, settle_s=30.0).run_once() == 1  # the second is too recent
    assert evaluator(store, settle_s=0.0).run_once() == 1


def test_tumbling_windows_lie_on_the_grid_and_skip_empty_slots(store: Store) -> None:
    minute = timedelta(minutes=1)
    reference = instance_rows("m", T0, 200, seed=1)  # T0 .. T0 + 2 s
    busy = instance_rows("m", T0 + 2 * minute + timedelta(seconds=5), 30, seed=2, prefix="x",
                         step=timedelta(seconds=3))  # 90 s: two slots  # fmt: skip
    later = instance_rows("m", T0 + 10 * minute, 5, seed=3, prefix="y")
    store_rows(store, reference + busy + later)
    detection = ModelDetection(reference=ReferenceSpec(instances=200),
                               window=WindowSpec("tumbling", length=minute))  # fmt: skip

    evaluator(store, detection).run_once()

    windows = [(r["window_start"], r["window_end"], r["instances"]) for r in oldest_first(store)]
    assert windows == [
        (T0 + 2 * minute, T0 + 3 * minute, 19),  # 12:02:05 .. 12:02:59
        (T0 + 3 * minute, T0 + 4 * minute, 11),
        (T0 + 10 * minute, T0 + 11 * minute, 5),
    ]


def test_sliding_windows_overlap_by_their_step(store: Store) -> None:
    minute = timedelta(minutes=1)
    reference = instance_rows("m", T0, 200, seed=1)
    traffic = instance_rows("m", T0 + minute, 40, seed=2, prefix="x", step=timedelta(seconds=3))
    store_rows(store, reference + traffic)  # 12:01:00 .. 12:02:57, 20 a minute
    sliding = WindowSpec("sliding", length=2 * minute, step=minute)
    detection = ModelDetection(reference=ReferenceSpec(instances=200), window=sliding)

    evaluator(store, detection).run_once()

    windows = [(r["window_start"], r["instances"]) for r in oldest_first(store)]
    # The first window also holds the reference's minute, without the reference itself.
    assert windows == [(T0, 20), (T0 + minute, 40), (T0 + 2 * minute, 20)]


def test_a_file_reference_and_windows_from_the_first_instance(store: Store, tmp_path: Path
                                                              ) -> None:  # fmt: skip
    reference = pd.DataFrame([row["features"] for row in instance_rows("m", T0, 300, seed=9)])
    reference.to_csv(tmp_path / "reference.csv", index=False)
    store_rows(store, instance_rows("m", T0, 400, seed=1))
    detection = ModelDetection(reference=ReferenceSpec("file", path=tmp_path / "reference.csv"),
                               window=WindowSpec(instances=200))  # fmt: skip

    assert evaluator(store, detection).run_once() == 2

    stored = DetectionStore(store).reference("m")
    assert stored is not None and stored.rows == 300 and stored.last is None
    assert [drifted(r) for r in oldest_first(store)] == [[], []]


def test_two_evaluators_evaluate_each_window_once(store: Store) -> None:
    store_rows(store, instance_rows("m", T0, 2200, seed=1))
    evaluators = [evaluator(store), evaluator(store)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda e=e: counts.append(e.run_once()))
               for e in evaluators]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reports = oldest_first(store)
    assert sum(counts) == len(reports) == 10
    assert [r["revision"] for r in reports] == [1] * 10
    assert sum(r["instances"] for r in reports) == 2000  # each instance once


def test_an_abandoned_claim_is_taken_over(store: Store) -> None:
    store_rows(store, instance_rows("m", T0, 400, seed=1))
    detection = DetectionStore(store)
    evaluator(store).run_once()  # reference and window 1
    assert len(oldest_first(store)) == 1
    store_rows(store, instance_rows("m", T0 + timedelta(seconds=4), 200, seed=2, prefix="s"))
    last = detection.last_window("m")
    assert last is not None and last.bounds.through is not None
    through = detection.nth_instance_key(InstanceRange("m", after=last.bounds.through), 200)
    assert through is not None
    dead = detection.claim_new("m", count_bounds(2, last.bounds.through, through), 1,
                               "dead-monitor#1", lease_s=0.0)  # fmt: skip
    assert dead is not None

    assert evaluator(store).run_once() == 1

    reports = oldest_first(store)
    assert [(r["revision"], r["instances"]) for r in reports] == [(1, 200), (1, 200)]
    nothing = WindowReport(0, False, 0.0, 0, 0, 0.5, "none", None)
    assert detection.finish(dead, nothing) is None  # the dead claimer's report is refused


def test_late_instances_revise_their_window(store: Store) -> None:
    store_rows(store, instance_rows("m", T0, 600, seed=1))  # reference, two windows
    evaluator(store).run_once()
    first, second = oldest_first(store)
    late_time = first["window_start"] + timedelta(milliseconds=5)  # inside window 1
    store_rows(store, instance_rows("m", late_time, 7, seed=5, prefix="late",
                                    step=timedelta(microseconds=1)))  # fmt: skip

    assert evaluator(store).run_once() == 1

    reports = oldest_first(store)
    assert [(r["window_start"], r["revision"], r["instances"], r["late"]) for r in reports] == [
        (first["window_start"], 1, 200, 0),
        (first["window_start"], 2, 207, 7),
        (second["window_start"], 1, 200, 0),
    ]
    assert evaluator(store).run_once() == 0  # nothing more came


@pytest.mark.parametrize("kind", ["first", "range"])
def test_no_window_before_the_reference_is_all_stored(store: Store, kind: str) -> None:
    now = datetime.now(UTC)
    store_rows(store, instance_rows("m", now - timedelta(seconds=30), 150, seed=1))
    not_over = ReferenceSpec(
        "range", start=now - timedelta(minutes=1), end=now + timedelta(hours=1)
    )
    spec = ReferenceSpec(instances=200) if kind == "first" else not_over

    assert evaluator(store, ModelDetection(reference=spec)).run_once() == 0
    assert DetectionStore(store).reference("m") is None
