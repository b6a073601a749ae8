"""`infermon stats`: what the store holds, as JSON (row counts in total and per model)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from infermon.settings import load_settings
from monitor.settings import DatabaseSettings
from monitor.store import Store, StoreError


class StatsSettings(DatabaseSettings):
    """Print what the store holds, as JSON: row counts in total and per model."""


def main(argv: Sequence[str]) -> int:
    settings = load_settings(StatsSettings, argv, "infermon stats")
    store = Store(settings.database_url)
    try:
        print(json.dumps(store.stats(), indent=2))
    except StoreError as error:  # unreachable, or not an infermon database
        print(f"infermon stats: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
