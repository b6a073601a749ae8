"""The SQLAlchemy engine behind a Store: which databases, which drivers, which settings."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

# Execution option of a connection whose transactions write: on SQLite they take the write
# lock up front (BEGIN IMMEDIATE), so they wait for another writer instead of failing midway
# with "database is locked" when a read lock cannot be upgraded.
WRITE_TRANSACTION = "infermon_write"
# How long SQLite waits for another writer's lock before the store reports it unavailable
# (the sqlite3 default): a lock held longer is an outage, which the consumer waits out.
SQLITE_BUSY_TIMEOUT_S = 5.0
# How long a PostgreSQL connection attempt may take before the store reports it unavailable.
POSTGRESQL_CONNECT_TIMEOUT_S = 10
SQLITE_PAGE_BYTES = 16384


class UnsupportedDatabaseError(ValueError):
    pass


def normalise_url(database_url: str) -> URL:
    """PostgreSQL always through psycopg 3 (the COPY path needs it); SQLite through sqlite3."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    raise UnsupportedDatabaseError(
        f"unsupported database URL {url.render_as_string(hide_password=True)!r}: "
        "use postgresql+psycopg://USER@HOST/DB or sqlite:///PATH"
    )


URL_EXPECTED = (
    "--database-url must be a URL like sqlite:///infermon.db or postgresql+psycopg://USER@HOST/DB"
)


def check_database_url(database_url: str) -> None:
    """A `ValueError` saying what is expected unless `database_url` is a URL of a database the
    store knows: for the settings of every command that opens the store."""
    try:
        normalise_url(database_url)
    except (ArgumentError, ValueError):  # not a URL, or not a database the store knows
        raise ValueError(URL_EXPECTED) from None


def load_json(text: str | bytes) -> Any:
    """A JSON column's value. orjson decodes about 5 times as fast as the standard library
    (a drift history of 100 reports holds 2,000 histograms: ~29 ms of stdlib decoding per
    request); what it refuses, such as a NaN or an integer beyond 64 bits that the standard
    library wrote, the standard library reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another kind."""
    return _sqlite_path(normalise_url(database_url))


def _sqlite_path(url: URL) -> Path | None:
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return None
    return Path(path).expanduser()


def create_store_engine(database_url: str) -> Engine:
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(
        url,
        json_deserializer=load_json,
        pool_pre_ping=True,  # a connection that died in an outage is replaced, not used
        connect_args={
            "connect_timeout": POSTGRESQL_CONNECT_TIMEOUT_S,
            "application_name": "infermon",
        },
    )


def _sqlite_engine(url: URL) -> Engine:
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    connect_args: dict[str, Any] = {}
    if "timeout" not in url.query:  # the URL may choose its own, e.g. ?timeout=0.1
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
    bind_common_values_directly()
    engine = create_engine(
        url, json_deserializer=load_json, pool_pre_ping=True, connect_args=connect_args
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


# Adapters that hand sqlite3 the value it would bind anyway. The sqlite3 module binds exact
# int, float, str and bytearray at once, but looks every other value (None, bool, bytes) up
# as an adapter and, finding none, tries two protocols on it: ~0.9 us per value against
# ~0.15 us for a registered adapter (bench machine). A stored event has ~7 such values.
# Registering them is process-wide and changes nothing stored: None is NULL, a bool its
# integer and bytes a BLOB either way (tests/monitor/store/test_engine.py).
_VALUES_BOUND_AS_THEY_ARE: tuple[tuple[type[Any], Any], ...] = (
    (type(None), {}.get),  # a C function that returns None for None
    (bool, int),
    (bytes, bytes),  # bytes(b) is b itself
)


def bind_common_values_directly() -> None:
    for value_type, adapter in _VALUES_BOUND_AS_THEY_ARE:
        if sqlite3.adapters.get((value_type, sqlite3.PrepareProtocol)) is None:
            sqlite3.register_adapter(value_type, adapter)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module's own transaction handling would begin late and never for DDL; we
    # emit BEGIN ourselves (_on_sqlite_begin), the recipe in SQLAlchemy's SQLite docs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # 16 KiB pages for a new database (an existing one keeps its own): a batch's commit
    # writes a quarter as many WAL frames (SQLite: commit 4.1 -> 2.9 us per event).
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")
    # WAL: readers (the dashboard) never block the writer (the consumer), nor it them.
    # synchronous stays FULL: the consumer commits Kafka offsets once a write returns, so a
    # committed batch must survive a power cut; it costs one fsync per batch.
    _set_wal_journal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: the indexes of a busy day stay cached
    cursor.close()


def _set_wal_journal(cursor: sqlite3.Cursor) -> None:
    """WAL is kept in the file, so only a new database changes mode; connections opening a
    new file together may find it locked, and SQLite's busy timeout does not cover that."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _on_sqlite_begin(connection: Connection) -> None:
    writes = connection.get_execution_options().get(WRITE_TRANSACTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
