"""Schema migrations (Alembic), run from code: `Store.upgrade()` (`infermon db upgrade`).

No alembic.ini: the configuration is built here. To change the schema, add
`versions/NNNN_what.py` in the layout of `0001_initial.py` (its `down_revision` the newest
one before it) and change `monitor/store/schema.py` to match; tests/monitor/store/test_schema.py
checks after an upgrade that the two agree, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

SCRIPT_LOCATION = Path(__file__).resolve().parent
# Any fixed number: concurrent upgrades (several consumers starting at once) take turns.
_POSTGRESQL_LOCK_ID = 0x1F0E_D8A5


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Migrate to the newest revision inside the caller's transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _POSTGRESQL_LOCK_ID})
    command.upgrade(alembic_config(connection), "head")
