"""Fixtures of the monitor's tests: an upgraded, empty store on each database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.store.store import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.upgrade()
    yield store
    store.close()
