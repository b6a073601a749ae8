"""`infermon db upgrade`: migrate the store's schema to the newest revision."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from pydantic import Field
from pydantic_settings import CliPositionalArg

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
    store = Store(settings.database_url)
    try:
        store.upgrade()
    except StoreError as error:  # unreachable, or not an infermon database
        print(f"infermon db: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print("schema is up to date")
    return 0
