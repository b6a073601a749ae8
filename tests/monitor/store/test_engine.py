"""SQLite settings: the binding shortcut stores exactly what sqlite3 stores without it;
new databases get the larger page, existing ones keep theirs."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from monitor.store import engine as store_engine
from monitor.store.store import Store

VALUES = [None, True, False, b"", b"\x00raw\xff", 0, -1, 2**63 - 1, 1.5, "text", bytearray(b"ba")]


def _stored(values: list[object]) -> list[tuple[object, str]]:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (v)")
    connection.executemany("INSERT INTO t VALUES (?)", [(value,) for value in values])
    stored = connection.execute("SELECT v, typeof(v) FROM t ORDER BY rowid").fetchall()
    connection.close()
    return stored


@pytest.fixture
def without_shortcut() -> object:
    """Runs the test with the adapters removed, and puts back whatever was registered."""
    saved = {key: sqlite3.adapters.pop(key, None) for key in _shortcut_keys()}
    yield
    for key, adapter in saved.items():
        if adapter is None:
            sqlite3.adapters.pop(key, None)
        else:
            sqlite3.adapters[key] = adapter


def _shortcut_keys() -> list[tuple[type, type]]:
    return [(value_type, sqlite3.PrepareProtocol) for value_type in (type(None), bool, bytes)]


def test_values_are_stored_the_same_with_the_shortcut(without_shortcut: object) -> None:
    plain = _stored(VALUES)
    store_engine.bind_common_values_directly()
    assert all(key in sqlite3.adapters for key in _shortcut_keys())
    assert _stored(VALUES) == plain
    assert [kind for _, kind in plain] == [
        "null", "integer", "integer", "blob", "blob", "integer", "integer", "integer", "real",
        "text", "blob",
    ]  # fmt: skip


def test_an_adapter_registered_by_someone_else_is_left_alone(without_shortcut: object) -> None:
    sqlite3.register_adapter(bool, str)
    store_engine.bind_common_values_directly()
    assert _stored([True]) == [("True", "text")]
    sqlite3.adapters.pop((bool, sqlite3.PrepareProtocol))


def test_a_sqlite_store_registers_the_shortcut(without_shortcut: object) -> None:
    store_engine.create_store_engine("sqlite:///:memory:").dispose()
    assert all(key in sqlite3.adapters for key in _shortcut_keys())


def _page_size(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("PRAGMA page_size").fetchone()[0])
    finally:
        connection.close()


def test_a_new_sqlite_store_uses_the_larger_page(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    store.upgrade()
    store.close()
    assert _page_size(tmp_path / "new.db") == store_engine.SQLITE_PAGE_BYTES != 4096


def test_an_existing_sqlite_database_keeps_its_page_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA page_size=4096")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE kept (v)")
    connection.execute("INSERT INTO kept VALUES ('before')")
    connection.commit()
    connection.close()
    store = Store(f"sqlite:///{path}")
    store.upgrade()  # creates infermon's tables beside the one already there
    store.close()
    assert _page_size(path) == 4096
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT v FROM kept").fetchall() == [("before",)]
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()


def test_json_columns_are_read_whatever_wrote_them() -> None:
    """orjson decodes JSON columns; what only the standard library writes or reads (NaN,
    infinities, integers beyond 64 bits) is still read, as the standard library reads it."""
    from monitor.store.engine import load_json

    assert load_json('{"labels": ["a"], "current": [0.5, 1e-300]}') == {
        "labels": ["a"], "current": [0.5, 1e-300]
    }  # fmt: skip
    assert load_json(b"[1, 2]") == [1, 2]
    found = load_json('{"p": NaN, "big": 123456789012345678901234567890, "inf": -Infinity}')
    assert math.isnan(found["p"])
    assert found["big"] == 123456789012345678901234567890
    assert found["inf"] == -math.inf
