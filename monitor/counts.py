"""`infermon counts`: what the store holds, as JSON (row counts in total and per model).

It only reads: a database that is not there, or has no schema yet, is reported, never created.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from infermon.errors import UsageError, first_line
from infermon.settings import load_settings
from monitor.settings import DatabaseSettings
from monitor.store.engine import normalise_url, sqlite_file
from monitor.store.schema import inferences
from monitor.store.store import Store, StoreError

DEFAULT_DATABASE_URL = DatabaseSettings.model_fields["database_url"].default


class CountsSettings(DatabaseSettings):
    """Print what the store holds, as JSON: row counts in total and per model."""


def main(argv: Sequence[str]) -> int:
    settings = load_settings(CountsSettings, argv, "infermon counts")
    url = settings.database_url
    same_url = "" if url == DEFAULT_DATABASE_URL else f" --database-url {shown(url)}"
    create_it = f"run `infermon db upgrade{same_url}` to create it"
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise UsageError(f"no database at {path}: {create_it}")
    with Store(url) as store:
        try:
            if not inspect(store.engine).has_table(inferences.name):
                raise UsageError(f"no infermon schema in {shown(url)}: {create_it}")
            counts = store.stats()
        except (SQLAlchemyError, StoreError) as error:  # unreachable, or not ours
            cause = error.__cause__ if isinstance(error, StoreError) else error
            raise UsageError(f"cannot read {shown(url)}: {reason(cause or error)}") from None
    print(json.dumps(counts, indent=2))
    return 0


def shown(database_url: str) -> str:
    return normalise_url(database_url).render_as_string(hide_password=True)


def reason(error: BaseException) -> str:
    """The driver's own words: SQLAlchemy's wrapper adds the statement and a link."""
    original = getattr(error, "orig", None)
    return first_line(original if original is not None else error)
