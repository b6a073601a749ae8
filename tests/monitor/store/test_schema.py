"""The schema and its migrations, engine settings, and the `infermon db` and `counts` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect

from infermon.errors import UsageError
from monitor import counts, db
from monitor.store.engine import UnsupportedDatabaseError, normalise_url
from monitor.store.schema import metadata
from monitor.store.store import Store, StoreError
from tests.monitor.store.helpers import T0, call, unreachable_postgresql_url


def test_upgrade_creates_exactly_the_schema_and_is_idempotent(database_url: str) -> None:
    store = Store(database_url)
    store.upgrade()
    store.upgrade()

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == "0004"
        tables = set(inspect(connection).get_table_names())
    assert tables == {
        "events", "inferences", "instances", "dead_letters", "alembic_version",
        "drift_references", "drift_windows", "drift_reports", "drift_features", "outliers",
        "feedback",
    }  # fmt: skip
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as connection:
            definition = connection.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_events_time'"
            ).scalar()
        assert "USING brin" in str(definition)
    store.close()


def test_the_hot_queries_use_their_indexes(database_url: str) -> None:
    store = Store(database_url)
    store.upgrade()
    queries = {
        "ix_instances_model_time": lambda: store.latest_instances("iris"),
        "ix_inferences_model_time": lambda: store.latest_inferences(model="iris"),
        "ix_inferences_time": lambda: store.latest_inferences(),
        # The orphan sweep runs every few seconds; it must see only calls still waiting.
        "ix_inferences_awaiting_response": lambda: store.mark_orphans(T0),
    }
    for index, query in queries.items():
        [(statement, parameters)] = _statements_of(store, query)
        with store.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # empty tables
            explain = "EXPLAIN QUERY PLAN" if connection.dialect.name == "sqlite" else "EXPLAIN"
            plan = connection.exec_driver_sql(f"{explain} {statement}", parameters).all()
        assert index in str(plan), (statement, plan)
    store.close()


def _statements_of(store: Store, action: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SQL (and parameters) that `action` sends, as the driver receives it."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    return [(sql, params) for sql, params in seen if not sql.startswith("BEGIN")]


def test_a_sqlite_database_gets_its_folder(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a' / 'b' / 'infermon.db'}")
    store.upgrade()

    assert (tmp_path / "a" / "b" / "infermon.db").exists()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_pick_the_drivers_the_store_needs(given: str, used: str) -> None:
    assert normalise_url(given).render_as_string() == used


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db"])
def test_other_databases_and_drivers_are_refused_up_front(url: str) -> None:
    with pytest.raises(UnsupportedDatabaseError, match="unsupported database URL"):
        Store(url)


def test_db_upgrade_command(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert db.main(["upgrade", "--database-url", database_url]) == 0
    assert db.main(["upgrade", "--database-url", database_url]) == 0

    assert "up to date" in capsys.readouterr().out
    with Store(database_url) as store:
        assert store.stats()["events"] == 0


def test_db_command_help_and_a_missing_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        db.main(["--help"])
    assert help_exit.value.code == 0
    assert "--database-url" in capsys.readouterr().out
    with pytest.raises(UsageError, match="arguments are required"):
        db.main([])


def test_db_upgrade_of_an_unreachable_database_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="database unavailable"):
        db.main(["upgrade", "--database-url", unreachable_postgresql_url()])


def test_counts_command_prints_json(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(database_url)
    store.upgrade()
    store.write(list(call("r1")))
    monkeypatch.setenv("INFERMON_DATABASE_URL", database_url)

    assert counts.main([]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["events"] == 2
    assert printed["models"] == {"iris": {"inferences": 1, "instances": 2}}
    store.close()


def test_consumers_starting_together_upgrade_once(database_url: str) -> None:
    stores = [Store(database_url) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda store: store.upgrade(), stores))

    assert stores[0].stats()["events"] == 0
    for store in stores:
        store.close()


def test_a_database_from_a_newer_infermon_is_refused(database_url: str) -> None:
    with Store(database_url) as store:
        store.upgrade()
        with store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")

        with pytest.raises(StoreError, match="cannot migrate the database"):
            store.upgrade()
