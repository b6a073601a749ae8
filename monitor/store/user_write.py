"""What the dashboard writes: references set by a user, and feedback labels.

The only write module the dashboard imports. It loads SQLAlchemy, pandas (pyarrow for
Parquet), the schema and the read side; no driver, no migration tool.

A reference set here is stored as data, never summarised here: its rows as Parquet, with a
new version and no sketch. The monitor's evaluator summarises it (drift sketch, outlier
detector) before the model's next window, and windows compare with it from then on.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from monitor.store import read
from monitor.store.engine import WRITE_TRANSACTION
from monitor.store.schema import drift_references, feedback
from monitor.store.windows import DASHBOARD, InstanceKey, InstanceRange, Reference

# Pinned stored instances: the range's oldest up to this many (as a configured range).
MAX_PINNED_INSTANCES = 100_000
# Label rows per INSERT: 4 parameters each, within SQLite's 32,766 per statement.
_FEEDBACK_ROWS_PER_STATEMENT = 5000
# A new version may race another writer (a monitor building its configured reference).
_VERSION_ATTEMPTS = 5

Label = str | int | float


class ReferenceRejectedError(ValueError):
    """The data cannot be a reference; the message says why, for the user."""


@dataclass(frozen=True, slots=True)
class Feedback:
    """The ground truth of one instance: a class (string or integer) or a number."""

    request_id: str
    row_index: int
    label: Label


@contextmanager
def _write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes (on SQLite it takes the write lock up front)."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{WRITE_TRANSACTION: True})
        with connection.begin():
            yield connection


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as Parquet; a column Parquet cannot hold (values of mixed types) is named."""
    if frame.empty or len(frame.columns) == 0:
        raise ReferenceRejectedError("a reference needs at least one row and one column")
    names = [str(column) for column in frame.columns]
    if len(set(names)) != len(names):
        raise ReferenceRejectedError("a reference's column names must be distinct")
    frame = frame.set_axis(names, axis=1).reset_index(drop=True)
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except (ValueError, TypeError, NotImplementedError) as error:  # pyarrow's errors
        raise ReferenceRejectedError(f"cannot store the reference's rows: {error}") from None
    return buffer.getvalue()


def add_reference(
    engine: Engine,
    model: str,
    frame: pd.DataFrame,
    source: str,
    first: InstanceKey | None = None,
    last: InstanceKey | None = None,
) -> Reference:
    """`frame`'s rows stored as the model's next reference version, pending its summary."""
    data = parquet_bytes(frame)
    columns = [str(column) for column in frame.columns]
    for attempt in range(_VERSION_ATTEMPTS):
        now = datetime.now(UTC)
        try:
            with _write_transaction(engine) as connection:
                version = _next_version(connection, model)
                connection.execute(
                    insert(drift_references).values(
                        model=model, version=version, source=source, created_at=now,
                        rows=len(frame), columns=columns, sketch=None, outlier_detector=None,
                        origin=DASHBOARD, data=data, **_keys(first, last),
                    )
                )  # fmt: skip
        except sa_exc.IntegrityError:
            if attempt + 1 == _VERSION_ATTEMPTS:
                raise
            continue  # another writer took that version: the next one
        return Reference(
            model, version, source, len(frame), columns, None, None, first, last, now, DASHBOARD
        )
    raise AssertionError("unreachable")


def _next_version(connection: Connection, model: str) -> int:
    newest = connection.scalar(
        select(func.max(drift_references.c.version)).where(drift_references.c.model == model)
    )
    return 1 if newest is None else int(newest) + 1


def _keys(first: InstanceKey | None, last: InstanceKey | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for prefix, key in (("first", first), ("last", last)):
        time, request_id, row_index = (None, None, None) if key is None else key
        values |= {
            f"{prefix}_time": time,
            f"{prefix}_request_id": request_id,
            f"{prefix}_row_index": row_index,
        }
    return values


def upload_source(kind: str, content: bytes) -> str:
    """What an uploaded reference says it came from: its format and a digest of its bytes."""
    return f"upload {kind} sha256:{hashlib.sha256(content).hexdigest()[:16]}"


def pin_range(engine: Engine, model: str, start: datetime, end: datetime) -> Reference:
    """The model's stored instances in [start, end) (its oldest `MAX_PINNED_INSTANCES`) as its
    next reference version; windows of time then take instances after the last of them."""
    if end <= start:
        raise ReferenceRejectedError("end must be after start")
    with engine.connect() as connection:
        frame = read.instances_in(
            connection, InstanceRange(model, start=start, end=end), MAX_PINNED_INSTANCES
        )
    if frame.empty:
        raise ReferenceRejectedError(
            f"no stored instance of model {model!r} in [{start.isoformat()}, {end.isoformat()})"
        )
    rows = frame.drop(columns=list(read.INSTANCE_KEY_COLUMNS))
    source = f"window {start.isoformat()} {end.isoformat()}"
    return add_reference(engine, model, rows, source, _key_of(frame, 0), _key_of(frame, -1))


def _key_of(frame: pd.DataFrame, row: int) -> InstanceKey:
    return InstanceKey(
        frame["time"].iloc[row].to_pydatetime(),
        str(frame["request_id"].iloc[row]),
        int(frame["row_index"].iloc[row]),
    )


def store_feedback(engine: Engine, labels: Sequence[Feedback]) -> int:
    """Upserts the labels (a later one for an instance replaces the earlier, in this call and
    across calls); returns how many instances were labelled."""
    now = datetime.now(UTC)
    latest = {(item.request_id, item.row_index): item.label for item in labels}
    rows = [
        {"request_id": request_id, "row_index": row_index, "label": label, "received_at": now}
        for (request_id, row_index), label in latest.items()
    ]
    with _write_transaction(engine) as connection:
        upsert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        for start in range(0, len(rows), _FEEDBACK_ROWS_PER_STATEMENT):
            statement = upsert(feedback).values(rows[start : start + _FEEDBACK_ROWS_PER_STATEMENT])
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[feedback.c.request_id, feedback.c.row_index],
                    set_={
                        "label": statement.excluded.label,
                        "received_at": statement.excluded.received_at,
                    },
                )
            )
    return len(rows)
