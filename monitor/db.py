"""`infermon db upgrade`: migrate the store's schema to the newest revision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field
from pydantic_settings import CliPositionalArg

from infermon.errors import UsageError, first_line
from infermon.settings import load_settings
from monitor.settings import DatabaseSettings
from monitor.store.store import Store, StoreError


class DbSettings(DatabaseSettings):
    command: CliPositionalArg[Literal["upgrade"]] = Field(
        description="upgrade: migrate the schema to the newest revision"
    )


def main(argv: Sequence[str]) -> int:
    """`infermon db upgrade [--database-url URL]`."""
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
