"""Bulk writes of a merged batch: COPY and INSERT ... SELECT on PostgreSQL, multi-row INSERTs
on SQLite.

Both dialects share the upserts generated below from the declared merge rules
(`layout.MERGES`), which `rows._Inference.add` and `rows._merge_instances` implement too: the
row stored is `inferences`/`instances`, the one arriving is `excluded`. Merging is idempotent,
so replaying a batch after a crash leaves rows unchanged. PostgreSQL takes rows fastest
through COPY (~146k rows/s against ~75k rows/s for a psycopg executemany upsert, measured on
two cores), so rows go to temporary staging tables first and from there into the real ones
with ON CONFLICT; SQLite takes multi-row INSERTs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain
from typing import Any

import psycopg
from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, LargeBinary, Text
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from monitor.store.layout import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    MERGES,
    REQUEST_SIDE,
    RESPONSE_SIDE,
    ROW_COLUMNS,
    Merge,
)
from monitor.store.rows import BatchRows, Row
from monitor.store.schema import UtcDateTime, metadata


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one `Store.write` did."""

    events_new: int
    duplicates: int  # events already stored, or twice in the batch
    inferences_touched: int  # inference rows inserted or merged
    instances_touched: int  # instance rows inserted or merged
    dead_letters: int  # dead letters newly stored


class UnstorableTextError(Exception):
    """Text the database refused (U+0000 on PostgreSQL, lone surrogates anywhere); the batch
    is written again with that text replaced (`rows.storable_text`)."""


def _latency_ms(dialect: str, request_time: str, response_time: str) -> str:
    """Response minus request time in ms, exact to the microsecond like rows.latency_ms."""
    if dialect == "postgresql":
        return f"(EXTRACT(EPOCH FROM {response_time} - {request_time}) * 1000)::float8"
    # SQLite times are 'YYYY-MM-DD HH:MM:SS.ffffff' text: whole seconds, then microseconds.
    return (
        f"((strftime('%s', {response_time}) - strftime('%s', {request_time})) * 1000000"
        f" + CAST(substr({response_time}, 21) AS INTEGER)"
        f" - CAST(substr({request_time}, 21) AS INTEGER)) / 1000.0"
    )


def _derived(dialect: str, merged: Callable[[str], str]) -> dict[str, str]:
    """The DERIVED columns' values from the merged row's other columns (`merged(column)`)."""
    request_rows, response_rows = merged("request_rows"), merged("response_rows")
    return {
        "latency_ms": _latency_ms(dialect, merged("request_time"), merged("response_time")),
        "batch_size": f"COALESCE({request_rows}, {response_rows})",
        "batch_size_mismatch": f"COALESCE({request_rows} <> {response_rows}, false)",
    }


def _merged(dialect: str, table: str, column: str) -> str:
    """The SQL of `column` once the row stored (`table`) and the one arriving (`excluded`)
    are merged by the column's rule (layout.MERGES)."""
    stored, arriving = f"{table}.{column}", f"excluded.{column}"
    request_arrives = REQUEST_SIDE[table].format(side="excluded")
    match MERGES[table][column]:
        case Merge.REQUEST_FIRST:
            return (
                f"CASE WHEN {request_arrives} THEN COALESCE({arriving}, {stored})"
                f" ELSE COALESCE({stored}, {arriving}) END"
            )
        case Merge.FIRST:
            return f"COALESCE({stored}, {arriving})"
        case Merge.REQUEST_SIDE:
            request_stored = REQUEST_SIDE[table].format(side=table)
            return (
                f"CASE WHEN {request_arrives} AND NOT ({request_stored})"
                f" THEN {arriving} ELSE {stored} END"
            )
        case Merge.EITHER:
            return f"{stored} OR {arriving}"
        case Merge.UNTIL_RESPONSE:
            responses = [RESPONSE_SIDE[table].format(side=side) for side in (table, "excluded")]
            return f"CASE WHEN {' OR '.join(responses)} THEN false ELSE {stored} END"
        case Merge.FIRST_ELSE_DERIVED:
            derived = _derived(dialect, partial(_merged, dialect, table))[column]
            return f"COALESCE({stored}, {arriving}, {derived})"
        case Merge.DERIVED:
            return _derived(dialect, partial(_merged, dialect, table))[column]
        case Merge.KEY:
            raise ValueError(f"{table}.{column} is the key: it is never merged")


def merge_sql(dialect: str, table: str) -> str:
    """The upsert's SET clause for `table`: every column but the key, by its rule."""
    return ",\n".join(
        f"{column} = {_merged(dialect, table, column)}"
        for column, rule in MERGES[table].items()
        if rule is not Merge.KEY
    )


def _insert(table: str, columns: Sequence[str], source: str, on_conflict: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) {source} ON CONFLICT {on_conflict}"


def _statements(dialect: str, source: dict[str, str]) -> dict[str, str]:
    """Each table's INSERT of rows from `source`; the merged tables' upserts merge by rule."""
    conflict = {
        table: f"({', '.join(c.name for c in metadata.tables[table].primary_key)})"
        f" DO UPDATE SET {merge_sql(dialect, table)}"
        for table in MERGES
    }
    return {
        table: _insert(table, columns, source[table], conflict.get(table, "DO NOTHING"))
        for table, columns in ROW_COLUMNS.items()
    }


def _placeholders(columns: Sequence[str], marker: str) -> str:
    return f"VALUES ({', '.join([marker] * len(columns))})"


# SQLite takes many rows per INSERT: one statement step per chunk instead of one per row,
# and the sqlite3 module binds a chunk's parameters in C (8.9 -> 6.5 us per event). Chunks
# are powers of two, so that each table has a few statements to compile, not one per size.
# 1,024 rows were 5% slower than 256 (their parameter lists pass malloc's mmap threshold).
SQLITE_MAX_ROWS_PER_STATEMENT = 256
SQLITE_MAX_PARAMETERS = 32_766


@lru_cache(maxsize=64)
def _sqlite_insert(table: str, rows: int) -> str:
    one_row = f"({', '.join(['?'] * len(ROW_COLUMNS[table]))})"
    values = "VALUES " + ", ".join([one_row] * rows)
    return _statements("sqlite", dict.fromkeys(ROW_COLUMNS, values))[table]


def _sqlite_chunk_sizes(table: str) -> list[int]:
    largest = min(SQLITE_MAX_ROWS_PER_STATEMENT, SQLITE_MAX_PARAMETERS // len(ROW_COLUMNS[table]))
    return [1 << bit for bit in reversed(range(largest.bit_length())) if 1 << bit <= largest]


def _insert_sqlite(cursor: sqlite3.Cursor, table: str, rows: list[Row]) -> int:
    """Inserts or merges `rows` (each key once); returns the rows inserted."""
    inserted = start = 0
    for size in _sqlite_chunk_sizes(table):
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            cursor.execute(_sqlite_insert(table, size), list(chain.from_iterable(chunk)))
            inserted += cursor.rowcount
            start += size
    return inserted


# Staging tables live as long as the session and are emptied at every commit, and before
# every sub-batch of a transaction after its first.
_STAGED = ("events", "inferences", "instances")
_STAGE = {table: f"infermon_stage_{table}" for table in _STAGED}
_CREATE_STAGES = ";".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE[t]} (LIKE {t}) ON COMMIT DELETE ROWS" for t in _STAGED
)
_EMPTY_STAGES = f"TRUNCATE {', '.join(_STAGE.values())}"
# Binary COPY: the server parses no text (timestamps are a third of a text COPY's cost).
# JSON's binary form is its text. Most specific types first: BigInteger is an Integer.
_BINARY_COPY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (UtcDateTime, "timestamptz"),
    (JSON, "text"),
    (Text, "text"),
    (LargeBinary, "bytea"),
    (BigInteger, "int8"),
    (Integer, "int4"),
    (Boolean, "bool"),
    (Float, "float8"),
)


def _binary_copy_type(table: str, column: str) -> str:
    column_type = metadata.tables[table].c[column].type
    return next(name for kind, name in _BINARY_COPY_TYPES if isinstance(column_type, kind))


_COPY_TYPES = {t: [_binary_copy_type(t, c) for c in ROW_COLUMNS[t]] for t in _STAGED}
_COPY = {
    t: f"COPY {_STAGE[t]} ({', '.join(ROW_COLUMNS[t])}) FROM STDIN (FORMAT BINARY)" for t in _STAGED
}


_COPY_EVENTS = f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def _from_stage(table: str, order_by: str = "") -> str:
    select = f"SELECT {', '.join(ROW_COLUMNS[table])} FROM {_STAGE[table]}"
    return f"{select} ORDER BY {order_by}" if order_by else select


# Inferences and instances are merged in key order: two consumers may upsert the same call
# (Seldon's events have no Kafka key, so a request and its response can land on different
# partitions), and taking row locks in one order keeps them from deadlocking. Events need no
# order: two writers only share events when replaying the same partition, in offset order
# both (sorting them cost ~1.5 us of server CPU per event).
_POSTGRESQL = _statements(
    "postgresql",
    {
        "events": _from_stage("events"),
        "inferences": _from_stage("inferences", "request_id"),
        "instances": _from_stage("instances", "request_id, row_index"),
        "dead_letters": _placeholders(DEAD_LETTER_COLUMNS, "%s"),
    },
)


def write_sqlite(connection: Connection, rows: BatchRows, *, first: bool) -> tuple[int, int]:
    """(events inserted, dead letters inserted), inside the caller's transaction."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]  # None only once closed
    inserted = {}
    try:
        for table in ROW_COLUMNS:
            inserted[table] = _insert_sqlite(cursor, table, getattr(rows, table))
    except UnicodeEncodeError as error:
        raise UnstorableTextError(str(error)) from error
    finally:
        cursor.close()
    return inserted["events"], inserted["dead_letters"]


def _copy(cursor: psycopg.Cursor[Any], statement: str, types: list[str], rows: list[Row]) -> None:
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _copy_new_events(
    driver: psycopg.Connection[Any], cursor: psycopg.Cursor[Any], rows: list[Row]
) -> int:
    """Events straight into their table, when none is stored yet (the usual batch): half
    the server's work of staging them. Returns 0 when one was stored already (a replay),
    having changed nothing: then they take the staging path, which skips those."""
    if not rows:
        return 0
    try:
        with driver.transaction():  # a savepoint: a failed COPY undoes only itself
            _copy(cursor, _COPY_EVENTS, _COPY_TYPES["events"], rows)
    except psycopg.errors.UniqueViolation:
        return 0
    return len(rows)


def write_postgresql(connection: Connection, rows: BatchRows, *, first: bool) -> tuple[int, int]:
    """(events inserted, dead letters inserted), inside the caller's transaction; `first`
    is whether this is the transaction's first sub-batch."""
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]  # psycopg here; None only once closed
    inserted = {"events": 0, "dead_letters": 0}
    try:
        with driver.cursor() as cursor:
            cursor.execute(_CREATE_STAGES if first else _EMPTY_STAGES)
            inserted["events"] = _copy_new_events(driver, cursor, rows.events)
            for table in _STAGED:
                table_rows: list[Row] = getattr(rows, table)
                if table_rows and not (table == "events" and inserted["events"]):
                    _copy(cursor, _COPY[table], _COPY_TYPES[table], table_rows)
                    cursor.execute(_POSTGRESQL[table])
                    inserted[table] = cursor.rowcount
            if rows.dead_letters:
                cursor.executemany(_POSTGRESQL["dead_letters"], rows.dead_letters)
                inserted["dead_letters"] = cursor.rowcount
    except psycopg.errors.CharacterNotInRepertoire as error:  # "invalid byte sequence ... 0x00"
        raise UnstorableTextError(str(error)) from error
    except UnicodeEncodeError as error:
        raise UnstorableTextError(str(error)) from error
    return inserted["events"], inserted["dead_letters"]
