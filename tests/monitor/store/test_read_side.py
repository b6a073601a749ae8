"""A reader of the store (a detector, the dashboard) loads SQLAlchemy and the schema, never
the consumer: no Kafka client, no decoding, no database driver, no write path."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures.processes import REPO_ROOT

OUR_PACKAGES = ("infermon", "logger", "trigger", "monitor", "dashboards")
# What the consumer and the write side load: none of it belongs in a reader. (orjson does:
# the engine decodes JSON columns with it.)
NOT_FOR_READERS = {"confluent_kafka", "psycopg", "alembic", "cloudevents"}


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds once `statement` has run in the repository."""
    script = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


def ours(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in OUR_PACKAGES}


def test_a_reader_loads_only_the_read_side_and_the_schema() -> None:
    modules = modules_after("from monitor.store import detection_read, engine, read, schema")
    assert ours(modules) == {
        "monitor", "monitor.store", "monitor.store.engine", "monitor.store.read",
        "monitor.store.detection_read", "monitor.store.schema", "monitor.store.windows",
    }  # fmt: skip
    assert not modules & NOT_FOR_READERS


def test_the_write_side_does_load_the_driver_the_reader_goes_without() -> None:
    """The check above can fail: the Store's module pulls in what a reader must not."""
    modules = modules_after("from monitor.store.store import Store")
    assert {"psycopg", "alembic", "monitor.store.write"} <= modules
    assert "confluent_kafka" not in modules and "monitor.decode" not in modules


def test_the_migrations_do_not_import_the_store() -> None:
    """No circle: the Store runs the migrations; they know only the schema."""
    modules = modules_after("import monitor.store.migrations")
    assert "monitor.store.store" not in modules
