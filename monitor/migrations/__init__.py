"""Schema migrations (Alembic), run from code: `Store.upgrade()` or `infermon db upgrade`.

No alembic.ini: the configuration is built here. To change the schema, add
`versions/NNNN_what.py` in the layout of `0001_initial.py` (its `down_revision` the newest
one before it) and change `monitor/schema.py` to match; tests/monitor/test_store_schema.py
checks after an upgrade that the two agree, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from pydantic import Field
from pydantic_settings import CliPositionalArg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from infermon.errors import UsageError, first_line
from infermon.settings import load_settings
from monitor.settings import DatabaseSettings

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


class DbSettings(DatabaseSettings):
    command: CliPositionalArg[Literal["upgrade"]] = Field(
        description="upgrade: migrate the schema to the newest revision"
    )


def main(argv: Sequence[str]) -> int:
    """`infermon db upgrade [--database-url URL]`."""
    from monitor.store import Store, StoreError  # the store imports this package

    settings = load_settings(DbSettings, argv, "infermon db")
    try:
        with Store(settings.database_url) as store:
            store.upgrade()
    except StoreError as error:  # unreachable, or not an infermon database
        raise UsageError(first_line(error)) from None
    except OSError as error:  # a SQLite folder that cannot be made
        raise UsageError(f"{error}: choose another path in --database-url") from None
    print("schema is up to date")
    return 0
