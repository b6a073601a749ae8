"""The monitor's store: payload events, inferences and their instances in SQL.

`Store(database_url)` works on PostgreSQL (`postgresql+psycopg://`, psycopg 3) and SQLite
(`sqlite:///path`). Every method runs its own short transaction; `write` puts a whole
consumer batch in one, so a batch is stored entirely or not at all and a replay changes
nothing. A database that cannot be reached raises `StoreUnavailableError`: wait and retry, the
same Store reconnects by itself.

>>> store = Store("sqlite:///infermon.db")  # doctest: +SKIP
>>> store.upgrade()  # doctest: +SKIP
>>> store.write(events, dead_letters).events_new  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import psycopg
from alembic.util import CommandError
from sqlalchemy import Column, Engine, Table, select, text, tuple_, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from monitor.store import detection_write, migrations, read
from monitor.store.engine import WRITE_TRANSACTION, create_store_engine
from monitor.store.records import DeadLetter, StoredEvent
from monitor.store.rows import BatchRows, TimeValue, batch_rows, storable_text
from monitor.store.schema import (
    AWAITING_RESPONSE,
    as_utc,
    events,
    inferences,
    instances,
    sqlite_time_text,
)
from monitor.store.schema import dead_letters as dead_letters_table
from monitor.store.write import UnstorableTextError, WriteResult, write_postgresql, write_sqlite

log = logging.getLogger(__name__)

__all__ = [
    "PreparedBatch",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "WriteResult",
]


class StoreError(Exception):
    """The database failed the store: a missing schema, a bug. Retrying will not help."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached (down, unreachable, locked): pause, then retry."""


# SQLite's OperationalError also covers mistakes ("no such table"); only these are transient.
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o error", "disk is full")
_POSTGRESQL_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(original, sqlite3.OperationalError):
        return any(sign in str(original).lower() for sign in _SQLITE_TRANSIENT)
    if isinstance(original, psycopg.InterfaceError):
        return True
    if isinstance(original, psycopg.Error):
        # By SQLSTATE class: a connection lost (no state, or 08), a transaction rolled back
        # (40: deadlock, serialization), resources short (53: disk full), a lock or object
        # busy (55), the server shutting down (57) or failing (58). The rest, e.g. 54 (an index
        # row over PostgreSQL's size limit), fails again however often it is tried.
        state = original.sqlstate
        return state is None or state[:2] in _POSTGRESQL_TRANSIENT_CLASSES
    return isinstance(
        error,
        sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError
        | sa_exc.TimeoutError,
    )  # fmt: skip


@contextmanager
def database_errors_as_store_errors() -> Iterator[None]:
    try:
        yield
    except (sa_exc.SQLAlchemyError, psycopg.Error, sqlite3.Error) as error:
        if _is_unavailable(error):
            raise StoreUnavailableError(f"database unavailable: {error}") from error
        raise StoreError(f"database error: {error}") from error


# Events merged in Python and sent per round of statements. PostgreSQL spends ~15% more
# server CPU per event at 1,000 than at 5,000; SQLite's multi-row INSERTs fill up whole.
# bench/monitor_store.py.
SUB_BATCH_EVENTS = 5000
# purge() binds one parameter per request id; SQLite takes at most 32,766 in a statement.
MAX_PURGE_BATCH_ROWS = 30_000


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A consumer batch merged into rows by `Store.prepare`: pure Python, no database yet, so
    the consumer can prepare the next batch while the database stores this one."""

    parts: list[BatchRows]  # sub-batches, written in order in one transaction
    events: int  # events in the batch, duplicates included
    inferences: int  # distinct inferences touched
    instances: int  # distinct instance rows touched


class Store:
    """Synchronous; one Store per process is enough (it holds a connection pool)."""

    def __init__(self, database_url: str) -> None:
        self._engine: Engine = create_store_engine(database_url)
        self._dialect = self._engine.dialect.name
        self._time_value = sqlite_time_text if self._dialect == "sqlite" else as_utc
        self._write_rows = write_sqlite if self._dialect == "sqlite" else write_postgresql

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def time_value(self) -> TimeValue:
        """How this database's driver takes a datetime: aware UTC, or SQLite's text."""
        return self._time_value

    def close(self) -> None:
        """Closes the pooled connections; the Store reconnects if used again."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def upgrade(self) -> None:
        """Migrate the schema to the newest revision; nothing to do when it is there already."""
        with database_errors_as_store_errors(), self.write_transaction() as connection:
            try:
                migrations.upgrade(connection)
            except CommandError as error:  # e.g. a revision from a newer infermon
                raise StoreError(f"cannot migrate the database: {error}") from error

    def write(
        self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter] = ()
    ) -> WriteResult:
        """Stores a consumer batch in one transaction; replaying it changes nothing."""
        return self.write_prepared(self.prepare(events, dead_letters))

    def prepare(
        self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter] = ()
    ) -> PreparedBatch:
        """The first half of `write`, which touches no database."""
        stored_at = datetime.now(UTC)
        parts: list[BatchRows] = []
        calls: set[str] = set()
        instance_keys: set[tuple[str, int]] = set()
        for start in range(0, len(events), SUB_BATCH_EVENTS):
            letters = dead_letters if start == 0 else ()
            part = events[start : start + SUB_BATCH_EVENTS]
            parts.append(batch_rows(part, letters, stored_at, self._time_value))
        if not events and dead_letters:
            parts.append(batch_rows((), dead_letters, stored_at, self._time_value))
        if len(parts) == 1:  # the usual batch: each key is there once
            return PreparedBatch(
                parts, len(events), len(parts[0].inferences), len(parts[0].instances)
            )
        for rows in parts:
            # Sets: a call split across sub-batches is one inference touched, not two.
            calls.update(row[0] for row in rows.inferences)
            instance_keys.update((row[0], row[1]) for row in rows.instances)
        return PreparedBatch(parts, len(events), len(calls), len(instance_keys))

    def write_prepared(self, batch: PreparedBatch) -> WriteResult:
        """The second half of `write`: the rows in one transaction."""
        if not batch.parts:
            return WriteResult(0, 0, 0, 0, 0)
        with database_errors_as_store_errors():
            try:
                events_new, letters_new = self._write_parts(batch.parts)
            except UnstorableTextError:  # rare: written again with the text replaced
                events_new, letters_new = self._write_parts(list(map(storable_text, batch.parts)))
        return WriteResult(
            events_new=events_new,
            duplicates=batch.events - events_new,
            inferences_touched=batch.inferences,
            instances_touched=batch.instances,
            dead_letters=letters_new,
        )

    def _write_parts(self, parts: list[BatchRows]) -> tuple[int, int]:
        """(events inserted, dead letters inserted)."""
        events_new = letters_new = 0
        with self.write_transaction() as connection:
            try:
                for index, rows in enumerate(parts):
                    inserted = self._write_rows(connection, rows, first=index == 0)
                    events_new += inserted[0]
                    letters_new += inserted[1]
            except (psycopg.OperationalError, psycopg.InterfaceError):
                # Raised by the driver directly (COPY), so SQLAlchemy did not see the
                # connection die: drop it rather than hand it to the next caller.
                connection.invalidate()
                raise
        return events_new, letters_new

    @contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A connection in a transaction that writes (on SQLite it takes the write lock first)."""
        with self._engine.connect() as connection:
            connection = connection.execution_options(**{WRITE_TRANSACTION: True})
            with connection.begin():
                yield connection

    def mark_orphans(self, older_than: datetime) -> int:
        """Requests with no response since before `older_than` become orphaned; returns how many.

        A response that turns up later clears the flag.
        """
        # The partial index's own predicate, word for word: SQLite uses a partial index only
        # when the query repeats it (SQLAlchemy would write `has_request = 1` there).
        statement = (
            update(inferences)
            .where(text(AWAITING_RESPONSE), inferences.c.time < older_than)
            .values(orphaned=True)
        )
        with database_errors_as_store_errors(), self.write_transaction() as connection:
            return connection.execute(statement).rowcount

    def purge(self, before: datetime, batch_rows: int = 5000) -> int:
        """Deletes events, inferences and their instances older than `before`, dead letters
        stored before it, and drift windows that ended before it with their reports, features
        and outliers (a model's newest window stays); returns the rows deleted.

        Works in short transactions of at most `batch_rows` inferences or events each, so the
        consumer is never blocked for long.
        """
        if not 1 <= batch_rows <= MAX_PURGE_BATCH_ROWS:
            raise ValueError(f"batch_rows must be 1 to {MAX_PURGE_BATCH_ROWS}, not {batch_rows}")
        deleted = 0
        with database_errors_as_store_errors():
            while True:
                with self.write_transaction() as connection:
                    request_ids = connection.scalars(
                        select(inferences.c.request_id)
                        .where(inferences.c.time < before)
                        .limit(batch_rows)
                    ).all()
                    if not request_ids:
                        break
                    deleted += connection.execute(
                        instances.delete().where(instances.c.request_id.in_(request_ids))
                    ).rowcount
                    deleted += connection.execute(
                        inferences.delete().where(inferences.c.request_id.in_(request_ids))
                    ).rowcount
            deleted += self._purge_rows(events, events.c.time, before, batch_rows)
            deleted += self._purge_rows(
                dead_letters_table, dead_letters_table.c.stored_at, before, batch_rows
            )
            deleted += self._purge_windows(before, batch_rows)
        return deleted

    def _purge_windows(self, before: datetime, batch_rows: int) -> int:
        """Drift windows that ended before `before`, with their reports and outliers."""
        deleted = 0
        while True:
            with self.write_transaction() as connection:
                windows, rows = detection_write.purge_windows(connection, before, batch_rows)
            deleted += rows
            if windows < batch_rows:
                return deleted

    def _purge_rows(
        self, table: Table, time: Column[Any], before: datetime, batch_rows: int
    ) -> int:
        """Deletes `table`'s rows whose `time` is before `before`, `batch_rows` at a time."""
        key_columns = list(table.primary_key.columns)
        oldest = select(*key_columns).where(time < before).limit(batch_rows)
        deleted = 0
        while True:
            with self.write_transaction() as connection:
                removed = connection.execute(
                    table.delete().where(tuple_(*key_columns).in_(oldest))
                ).rowcount
            deleted += removed
            if removed < batch_rows:
                return deleted

    def stats(self) -> dict[str, Any]:
        """Row counts: events, inferences, instances, orphans, dead_letters, and per model."""
        with database_errors_as_store_errors(), self._engine.connect() as connection:
            return read.stats(connection)

    def latest_instances(self, model: str, limit: int = 10_000) -> pd.DataFrame:
        """The model's newest instances, newest first; see `read.latest_instances`."""
        with database_errors_as_store_errors(), self._engine.connect() as connection:
            return read.latest_instances(connection, model, limit)

    def latest_inferences(
        self,
        limit: int = 50,
        model: str | None = None,
        before: datetime | None = None,
        before_request_id: str | None = None,
    ) -> list[read.InferenceSummary]:
        """A page of inferences, newest first, strictly older than `before` when given.

        For the next page pass the last item's `time` as `before`, and its `request_id` as
        `before_request_id` so that calls sharing that time are neither skipped nor repeated.
        """
        with database_errors_as_store_errors(), self._engine.connect() as connection:
            return read.latest_inferences(connection, limit, model, before, before_request_id)
