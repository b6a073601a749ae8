"""A database that goes away: StoreUnavailableError, and the same Store working once it is back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from monitor.store.store import Store, StoreError, StoreUnavailableError
from tests.fixtures.databases import postgresql_database_url
from tests.fixtures.tcp_proxy import CuttableTcpProxy
from tests.monitor.store.helpers import T0, call, unreachable_postgresql_url


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    yield from postgresql_database_url()


def test_every_call_on_an_unreachable_database_raises_store_unavailable() -> None:
    with Store(unreachable_postgresql_url()) as store:
        calls = [
            store.upgrade,
            lambda: store.write(call("r1")),
            store.stats,
            lambda: store.mark_orphans(T0),
            lambda: store.purge(T0),
            lambda: store.latest_instances("iris"),
            store.latest_inferences,
        ]
        for method in calls:
            with pytest.raises(StoreUnavailableError, match="database unavailable"):
                method()


class _Outage:
    """Takes the database away from a Store and gives it back: a cut TCP path to PostgreSQL,
    or for SQLite another connection that holds the write lock past the busy timeout."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._proxy: CuttableTcpProxy | None = None
        self._lock: sqlite3.Connection | None = None
        if url.get_backend_name() == "postgresql":
            self._proxy = CuttableTcpProxy(url.host or "127.0.0.1", url.port or 5432)
            self.url = url.set(port=self._proxy.port).render_as_string(hide_password=False)
        else:
            self._lock = sqlite3.connect(url.database or "", isolation_level=None)
            self.url = f"{database_url}?timeout=0.2"

    def start(self) -> None:
        if self._proxy is not None:
            self._proxy.cut()
        else:
            assert self._lock is not None
            self._lock.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self._proxy is not None:
            self._proxy.restore()
        else:
            assert self._lock is not None
            self._lock.execute("ROLLBACK")

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
        if self._lock is not None:
            self._lock.close()


@pytest.fixture
def outage(database_url: str) -> Iterator[_Outage]:
    with Store(database_url) as store:
        store.upgrade()
    outage = _Outage(database_url)
    yield outage
    outage.close()


def test_writes_fail_clearly_during_an_outage_and_work_after_it(outage: _Outage) -> None:
    with Store(outage.url) as store:
        store.write(call("before"))
        outage.start()
        with pytest.raises(StoreUnavailableError):
            store.write(call("during"))
        outage.end()

        store.write(call("after"))

        assert store.stats()["inferences"] == 2


def test_connections_lost_while_idle_are_replaced_unnoticed(outage: _Outage) -> None:
    with Store(outage.url) as store:
        store.write(call("before"))
        outage.start()
        outage.end()

        store.write(call("after"))  # the pooled connection died; pre-ping replaced it

        assert store.stats()["inferences"] == 2


def test_a_connection_killed_in_the_middle_of_a_write(postgresql_url: str) -> None:
    """Killed after the pool checked it, so the COPY itself meets the dead connection."""
    with Store(postgresql_url) as store:
        store.upgrade()
        kill_next: list[bool] = [True]

        def kill_backend(connection: Any) -> None:
            if kill_next and kill_next.pop():
                pid = connection.connection.driver_connection.info.backend_pid
                libpq_url = postgresql_url.replace("+psycopg", "")
                with psycopg.connect(libpq_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        event.listen(store.engine, "begin", kill_backend)
        with pytest.raises(StoreUnavailableError):
            store.write(call("killed"))

        store.write(call("next"))

        assert store.stats()["inferences"] == 1


def test_mistakes_are_not_mistaken_for_outages(database_url: str) -> None:
    with Store(database_url) as store:  # never upgraded: no tables
        for method in (lambda: store.write(call("r1")), store.stats):
            with pytest.raises(StoreError, match="database error") as raised:
                method()
            assert not isinstance(raised.value, StoreUnavailableError)
