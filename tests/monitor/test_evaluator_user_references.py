"""References set from the dashboard (uploaded rows, pinned stored instances): pending until
the evaluator summarises them before the model's next window, which then compares with them;
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import update

from monitor.store import user_write
from monitor.store.detection_store import DetectionStore
from monitor.store.schema import drift_references
from monitor.store.store import Store
from monitor.store.windows import DASHBOARD, MONITOR
from tests.monitor.detection_data import instance_rows
from tests.monitor.test_evaluator import drifted, evaluator, oldest_first, store_rows

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHIFTED = frozenset({"a", "colour"})


def as_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a user uploads them: features and the prediction, one column each."""
    return pd.DataFrame([{**row["features"], **row["prediction"]} for row in rows])


def test_an_uploaded_reference_is_summarised_and_used_by_the_next_windows(store: Store) -> None:
    store_rows(store, instance_rows("m", T0, 600, seed=1))  # reference 200, then 2 windows
    assert evaluator(store).run_once() == 2
    shifted = as_frame(instance_rows("m", T0, 300, seed=5, shifted=SHIFTED))

    pending = user_write.add_reference(store.engine, "m", shifted, "upload csv sha256:ab")
    store_rows(store, instance_rows("m", T0 + timedelta(seconds=10), 400, seed=2, prefix="n"))
    assert evaluator(store).run_once() == 2
    assert evaluator(store).run_once() == 0  # the configured "first 200" does not come back

    assert pending.version == 2 and pending.pending and pending.origin == DASHBOARD
    reports = oldest_first(store)
    assert [r["reference_version"] for r in reports] == [1, 1, 2, 2]
    assert [drifted(r) for r in reports[:2]] == [[], []]
    assert all({"a", "colour"} <= set(drifted(r)) for r in reports[2:])
    stored = DetectionStore(store).reference("m")
    assert stored is not None and not stored.pending
    assert (stored.version, stored.source, stored.origin, stored.rows) == (
        2, "upload csv sha256:ab", DASHBOARD, 300,
    )  # fmt: skip
    assert stored.columns == ["a", "b", "c", "colour", "prediction"]
    first = DetectionStore(store).reference("m", 1)
    assert first is not None and first.origin == MONITOR


def test_pinned_stored_instances_become_the_reference(store: Store) -> None:
    store_rows(store, instance_rows("m", T0, 200, seed=1))
    store_rows(store, instance_rows("m", T0 + timedelta(seconds=3), 200, seed=2, prefix="s",
                                    shifted=SHIFTED))  # fmt: skip
    assert evaluator(store).run_once() == 1  # the shifted 200 against the first 200

    start, end = T0 + timedelta(seconds=3), T0 + timedelta(seconds=6)
    pinned = user_write.pin_range(store.engine, "m", start, end)
    store_rows(store, instance_rows("m", T0 + timedelta(seconds=10), 200, seed=3, prefix="n"))
    assert evaluator(store).run_once() == 1

    assert (pinned.version, pinned.rows) == (2, 200)
    assert pinned.last is not None and pinned.last.request_id == "s000199"
    assert pinned.source == f"window {start.isoformat()} {end.isoformat()}"
    reports = oldest_first(store)
    assert [r["reference_version"] for r in reports] == [1, 2]
    # Unshifted traffic drifts from the shifted reference pinned.
    assert {"a", "colour"} <= set(drifted(reports[0])) and {"a", "colour"} <= set(
        drifted(reports[1])
    )


def test_a_reference_that_cannot_be_summarised_leaves_the_previous_one_in_use(
    store: Store,
) -> None:
    store_rows(store, instance_rows("m", T0, 400, seed=1))
    assert evaluator(store).run_once() == 1
    user_write.add_reference(store.engine, "m", as_frame(instance_rows("m", T0, 50, seed=4)), "x")
    with store.write_transaction() as connection:  # rows no Parquet reader takes
        connection.execute(
            update(drift_references)
            .where(drift_references.c.version == 2)
            .values(data=b"not parquet")
        )
    store_rows(store, instance_rows("m", T0 + timedelta(seconds=10), 200, seed=2, prefix="n"))

    assert evaluator(store).run_once() == 1

    assert [r["reference_version"] for r in oldest_first(store)] == [1, 1]
    assert DetectionStore(store).reference("m", summarised_only=True).version == 1  # type: ignore[union-attr]
    newest = DetectionStore(store).reference("m")
    assert newest is not None and newest.version == 2 and newest.pending
