"""The dashboard's writes: references stored as pending data, feedback labels upserted; the
migration that made room for them; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import insert, select

from monitor.store import detection_read, user_write
from monitor.store.detection_write import insert_reference
from monitor.store.migrations import alembic_config
from monitor.store.schema import drift_references, feedback
from monitor.store.store import Store
from monitor.store.user_write import Feedback, ReferenceRejectedError
from monitor.store.windows import DASHBOARD, MONITOR, Reference
from tests.monitor.store.detection_helpers import add_instances, one_per_second
from tests.monitor.store.helpers import T0, table_rows

FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0], "colour": ["red", "blue", None]})


def monitor_reference(version: int = 1) -> Reference:
    return Reference("m", version, "first 3", 3, ["x"], b"sketch", None)


def test_a_reference_is_stored_as_parquet_with_the_next_version(store: Store) -> None:
    with store.write_transaction() as connection:
        insert_reference(connection, monitor_reference(), T0)

    added = user_write.add_reference(store.engine, "m", FRAME, "upload csv sha256:00")
    again = user_write.add_reference(store.engine, "m", FRAME.head(1), "upload csv sha256:01")
    other = user_write.add_reference(store.engine, "other", FRAME, "upload csv sha256:00")

    assert (added.version, again.version, other.version) == (2, 3, 1)
    with store.engine.connect() as connection:
        stored = detection_read.reference(connection, "m", 2)
        newest_summarised = detection_read.reference(connection, "m", None, True)
        data = detection_read.reference_data(connection, "m", 2)
        monitor_data = detection_read.reference_data(connection, "m", 1)
    assert stored == added  # the data itself is not read with the reference
    assert stored is not None and stored.pending and stored.origin == DASHBOARD
    assert (stored.rows, stored.columns) == (3, ["x", "colour"])
    assert newest_summarised is not None and newest_summarised.version == 1
    assert newest_summarised.origin == MONITOR and monitor_data is None
    assert data is not None
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(data)), FRAME)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (pd.DataFrame(), "at least one row and one column"),
        (pd.DataFrame({"x": []}), "at least one row and one column"),
        (pd.DataFrame([[1, 2]], columns=["x", "x"]), "distinct"),
        (pd.DataFrame({"x": [1, "a", [2]]}), "cannot store the reference's rows"),
    ],
)
def test_data_that_cannot_be_a_reference_is_refused_with_its_reason(
    store: Store, frame: pd.DataFrame, reason: str
) -> None:
    with pytest.raises(ReferenceRejectedError, match=reason):
        user_write.add_reference(store.engine, "m", frame, "upload")
    assert table_rows(store, "drift_references") == []


def test_a_pinned_range_takes_its_instances_oldest_first(store: Store) -> None:
    add_instances(store, "m", one_per_second(10), y=5.0)

    pinned = user_write.pin_range(
        store.engine, "m", T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)
    )

    assert (pinned.rows, pinned.columns) == (3, ["x", "y", "prediction"])
    assert pinned.first is not None and pinned.first.request_id == "r00002"
    assert pinned.last is not None and pinned.last.request_id == "r00004"
    with store.engine.connect() as connection:
        data = detection_read.reference_data(connection, "m", 1)
        stored = detection_read.reference(connection, "m", 1)
    assert stored == pinned
    assert pd.read_parquet(io.BytesIO(data or b"")).to_dict("list") == {
        "x": [2.0, 3.0, 4.0], "y": [5.0] * 3, "prediction": [0, 1, 0],
    }  # fmt: skip


def test_a_range_without_instances_or_backwards_is_refused(store: Store) -> None:
    add_instances(store, "m", one_per_second(3))
    later = T0 + timedelta(hours=1)
    with pytest.raises(ReferenceRejectedError, match="no stored instance of model 'm'"):
        user_write.pin_range(store.engine, "m", later, later + timedelta(hours=1))
    with pytest.raises(ReferenceRejectedError, match="no stored instance of model 'n'"):
        user_write.pin_range(store.engine, "n", T0, later)
    with pytest.raises(ReferenceRejectedError, match="end must be after start"):
        user_write.pin_range(store.engine, "m", later, T0)
    assert table_rows(store, "drift_references") == []


def test_a_later_label_replaces_the_earlier_one(store: Store) -> None:
    stored = user_write.store_feedback(
        store.engine,
        [Feedback("a", 0, "cat"), Feedback("a", 1, 2.5), Feedback("a", 0, "dog")],
    )
    first = {(row["request_id"], row["row_index"]): row for row in table_rows(store, "feedback")}
    user_write.store_feedback(store.engine, [Feedback("a", 1, 7), Feedback("b", 0, "cat")])

    rows = table_rows(store, "feedback")
    assert stored == 2
    assert [(r["request_id"], r["row_index"], r["label"]) for r in rows] == [
        ("a", 0, "dog"), ("a", 1, 7), ("b", 0, "cat"),
    ]  # fmt: skip
    assert rows[1]["received_at"] > first["a", 1]["received_at"]
    assert rows[0]["received_at"] == first["a", 0]["received_at"]


def test_ten_thousand_labels_in_one_call(store: Store) -> None:
    labels = [Feedback(f"r{n}", n % 3, n % 5) for n in range(10_000)]

    assert user_write.store_feedback(store.engine, labels) == 10_000

    with store.engine.connect() as connection:
        stored = connection.execute(select(feedback.c.request_id, feedback.c.label)).all()
    assert sorted(stored) == sorted((f"r{n}", n % 5) for n in range(10_000))


def test_the_migration_keeps_the_references_stored_before_it(database_url: str) -> None:
    store = Store(database_url)
    with store.write_transaction() as connection:
        command.upgrade(alembic_config(connection), "0002")
        connection.execute(
            insert(drift_references).values(
                model="m", version=1, source="first 3", created_at=datetime.now(UTC), rows=3,
                columns=["x"], sketch=b"sketch",
            )
        )  # fmt: skip
    store.upgrade()

    with store.engine.connect() as connection:
        kept = detection_read.reference(connection, "m", 1)
    assert kept is not None and (kept.sketch, kept.origin) == (b"sketch", MONITOR)
    store.close()
