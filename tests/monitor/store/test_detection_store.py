"""Drift detection's storage on SQLite and PostgreSQL: instance ranges, references, the window
claim protocol (one winner, leases taken over, stale claimers refused), reports with their
features and outliers, late revisions, retention."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, select

from monitor.store import migrations
from monitor.store.detection_store import DetectionStore
from monitor.store.schema import drift_features, drift_reports, drift_windows, outliers
from monitor.store.store import Store
from monitor.store.windows import InstanceKey, InstanceRange, Reference
from tests.monitor.store.detection_helpers import (
    add_instances,
    claim_first,
    count_bounds,
    one_per_second,
    report,
)
from tests.monitor.store.helpers import T0, call, table_rows


@pytest.fixture
def detection(store: Store) -> DetectionStore:
    return DetectionStore(store)


def test_migration_0002_upgrades_a_0001_database_keeping_its_rows(database_url: str) -> None:
    store = Store(database_url)
    with store.write_transaction() as connection:
        command.upgrade(migrations.alembic_config(connection), "0001")
    store.write(list(call("r1")))

    store.upgrade()

    assert store.stats()["instances"] == 2
    assert DetectionStore(store).reports() == []
    store.close()


def test_instances_are_read_in_key_order_by_key_and_by_time(
    store: Store, detection: DetectionStore
) -> None:
    same_time = [(T0, "b", 1), (T0, "a", 0), (T0, "b", 0), (T0, "a", 1)]
    add_instances(store, "m", [*same_time, *one_per_second(5, start=1)])
    add_instances(store, "other", one_per_second(3, prefix="o"))
    everything = InstanceRange("m")

    assert detection.models() == ["m", "other"]
    assert detection.count_instances(everything) == 9
    assert detection.nth_instance_key(everything, 1) == InstanceKey(T0, "a", 0)
    assert detection.nth_instance_key(everything, 4) == InstanceKey(T0, "b", 1)
    assert detection.nth_instance_key(everything, 10) is None
    after = InstanceKey(T0, "a", 1)
    through = InstanceKey(T0 + timedelta(seconds=2), "r00002", 0)
    frame = detection.instances(InstanceRange("m", after=after, through=through))
    assert list(zip(frame["request_id"], frame["row_index"], strict=True)) == [
        ("b", 0), ("b", 1), ("r00001", 0), ("r00002", 0)
    ]  # fmt: skip
    assert list(frame.columns) == ["request_id", "row_index", "time", "x", "prediction"]
    timed = InstanceRange("m", start=T0 + timedelta(seconds=2), end=T0 + timedelta(seconds=4))
    assert detection.instances(timed)["request_id"].tolist() == ["r00002", "r00003"]
    assert detection.count_instances(InstanceRange("m", after=after, start=T0)) == 7


def test_a_reference_is_stored_once_per_version(detection: DetectionStore) -> None:
    key = InstanceKey(T0, "r1", 0)
    first = Reference("m", 1, "first 2", 2, ["x"], b"sketch", None, key, key)

    stored = detection.add_reference(first)
    again = detection.add_reference(Reference("m", 1, "first 2", 2, ["x"], b"other", b"d"))

    assert (stored.version, stored.sketch, stored.last) == (1, b"sketch", key)
    assert again.sketch == b"sketch"  # the first monitor's stays
    detection.add_reference(Reference("m", 2, "file ref.csv", 5, ["x", "y"], b"v2", b"det"))
    assert detection.reference("m") is not None
    assert detection.reference("m").version == 2  # type: ignore[union-attr]
    assert detection.reference("m", 1).sketch == b"sketch"  # type: ignore[union-attr]
    assert detection.reference("nobody") is None


def test_two_claimers_of_one_window_one_wins(store: Store, detection: DetectionStore) -> None:
    add_instances(store, "m", one_per_second(10))
    through = detection.nth_instance_key(InstanceRange("m"), 10)
    assert through is not None
    bounds = count_bounds(1, None, through)

    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(
            lambda n: detection.claim_new("m", bounds, 1, f"monitor-{n}#1", 30.0), range(4)
        ))  # fmt: skip

    winners = [claim for claim in claims if claim is not None]
    assert len(winners) == 1
    [row] = table_rows(store, "drift_windows")
    assert row["claimed_by"] == winners[0].claimed_by
    assert (row["state"], row["revision"], row["end_request_id"]) == ("claimed", 1, "r00009")


def test_a_claim_writes_its_report_features_and_outliers_in_one_go(
    store: Store, detection: DetectionStore
) -> None:
    add_instances(store, "m", one_per_second(4))
    claim = claim_first(detection, "m", InstanceKey(T0 + timedelta(seconds=3), "r00003", 0))
    outlier = {"request_id": "r00002", "row_index": 0, "time": T0 + timedelta(seconds=2),
               "score": 9.5, "threshold": 3.0, "method": "mahalanobis",
               "contributions": {"x": 1.0}}  # fmt: skip

    report_id = detection.finish(claim, report(4, drift=True, outliers=[outlier]))

    assert report_id is not None
    [stored] = detection.reports("m")
    assert {k: stored[k] for k in ("model", "instances", "dataset_drift", "share", "revision",
                                   "late", "outliers", "window_start", "window_end")} == {
        "model": "m", "instances": 4, "dataset_drift": True, "share": 1.0, "revision": 1,
        "late": 0, "outliers": 1, "window_start": T0 + timedelta(seconds=3),
        "window_end": T0 + timedelta(seconds=3),
    }  # fmt: skip
    assert stored["features"] == report(4, drift=True).features
    [found] = detection.outliers("m")
    assert {k: found[k] for k in outlier} == outlier
    [window] = table_rows(store, "drift_windows")
    assert (window["state"], window["instances"], window["late"]) == ("done", 4, 0)


def test_an_expired_lease_is_taken_over_and_the_stale_claimer_writes_nothing(
    store: Store, detection: DetectionStore
) -> None:
    add_instances(store, "m", one_per_second(4))
    stale = claim_first(detection, "m", InstanceKey(T0 + timedelta(seconds=3), "r00003", 0),
                        claimer="dead#1", lease_s=0.0)  # fmt: skip
    time.sleep(0.01)

    [expired] = detection.expired_claims()
    taken = detection.take_over(expired, "alive#1", 30.0)
    assert taken is not None and taken.revision == 1
    assert detection.take_over(expired, "third#1", 30.0) is None  # not expired any more

    assert detection.finish(stale, report(4)) is None  # the stale claimer's write is refused
    assert detection.reports() == []
    assert detection.finish(taken, report(4)) is not None
    assert detection.finish(taken, report(4)) is None  # and only once
    [stored] = detection.reports()
    assert stored["revision"] == 1
    assert detection.expired_claims() == []


def test_a_live_claim_is_not_taken_over(store: Store, detection: DetectionStore) -> None:
    add_instances(store, "m", one_per_second(2))
    claim_first(detection, "m", InstanceKey(T0 + timedelta(seconds=1), "r00001", 0))

    assert detection.expired_claims() == []


def test_late_instances_revise_a_done_window(store: Store, detection: DetectionStore) -> None:
    add_instances(store, "m", one_per_second(4))
    through = InstanceKey(T0 + timedelta(seconds=3), "r00003", 0)
    claim = claim_first(detection, "m", through)
    detection.finish(claim, report(4))
    add_instances(store, "m", [(T0 + timedelta(seconds=1), "late-1", 0),
                               (T0 + timedelta(seconds=2), "late-2", 0)])  # fmt: skip
    [done] = detection.recently_done(datetime.now(UTC) - timedelta(minutes=1), 10)
    assert detection.count_instances(done.bounds.instance_range("m")) == 6

    revision = detection.reclaim(done, "b#1", 30.0)
    assert detection.reclaim(done, "c#1", 30.0) is None  # one monitor revises it
    assert revision is not None and revision.revision == 2
    assert detection.finish(revision, report(6)) is not None

    latest, first = detection.reports("m")
    assert (latest["revision"], latest["instances"], latest["late"]) == (2, 6, 2)
    assert (first["revision"], first["instances"], first["late"]) == (1, 4, 0)
    [window] = table_rows(store, "drift_windows")
    assert (window["revision"], window["instances"], window["late"]) == (2, 6, 2)


def test_a_revision_replaces_the_windows_outliers(store: Store, detection: DetectionStore) -> None:
    add_instances(store, "m", one_per_second(2))
    claim = claim_first(detection, "m", InstanceKey(T0 + timedelta(seconds=1), "r00001", 0))
    outlier = {"request_id": "r00000", "row_index": 0, "time": T0, "score": 5.0,
               "threshold": 3.0, "method": "robust_z", "contributions": {"x": 1.0}}  # fmt: skip
    detection.finish(claim, report(2, outliers=[outlier]))
    [done] = detection.recently_done(datetime.now(UTC) - timedelta(minutes=1), 10)
    revision = detection.reclaim(done, "b#1", 30.0)
    assert revision is not None

    detection.finish(revision, report(2, outliers=[{**outlier, "score": 6.0}]))

    assert [o["score"] for o in detection.outliers("m")] == [6.0]


def test_retention_removes_old_windows_with_their_reports_but_a_models_newest(
    store: Store, detection: DetectionStore
) -> None:
    add_instances(store, "m", one_per_second(6))
    keys = [InstanceKey(T0 + timedelta(seconds=n), f"r{n:05d}", 0) for n in (1, 3, 5)]
    after = None
    for seq, through in enumerate(keys, start=1):
        claim = detection.claim_new("m", count_bounds(seq, after, through), 1, f"a#{seq}", 30)
        assert claim is not None
        outlier = {"request_id": through.request_id, "row_index": 0, "time": through.time,
                   "score": 5.0, "threshold": 3.0, "method": "robust_z",
                   "contributions": {"x": 1.0}}  # fmt: skip
        detection.finish(claim, report(2, outliers=[outlier]))
        after = through

    deleted = store.purge(before=T0 + timedelta(days=1), batch_rows=1)

    assert [w["seq"] for w in table_rows(store, "drift_windows")] == [3]  # the newest stays
    with store.engine.connect() as connection:
        left = {t.name: connection.scalar(select(func.count()).select_from(t))
                for t in (drift_reports, drift_features, outliers, drift_windows)}  # fmt: skip
    assert left == {"drift_reports": 1, "drift_features": 1, "outliers": 1, "drift_windows": 1}
    assert deleted == 2 * 4  # two windows, each with its report, feature and outlier
    assert store.purge(before=T0 - timedelta(days=1)) == 0
