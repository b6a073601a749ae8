"""The SQLite binding shortcut stores exactly what sqlite3 stores without it."""

from __future__ import annotations

import sqlite3

import pytest

from monitor import store_engine

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
