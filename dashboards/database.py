"""The dashboard's handle on the store: one engine, a connection per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from dashboards.errors import DATABASE_UNAVAILABLE, ApiError
from monitor.store import api_read
from monitor.store.engine import create_store_engine, sqlite_file


class Database:
    """The store the dashboard reads. Nothing here creates a database: a SQLite file that is
    not there is a database not ready, not an empty one made on the spot."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.engine: Engine = create_store_engine(database_url)

    def file_missing(self) -> bool:
        """A SQLite file that is not there: opening it would create an empty one."""
        path = sqlite_file(self.url)
        return path is not None and not path.exists()

    def ready(self) -> bool:
        """The database answers and holds the store's tables."""
        if self.file_missing():
            return False
        try:
            with self.engine.connect() as connection:
                api_read.ping(connection)
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def database(request: Request) -> Database:
    found: Database = request.app.state.database
    return found


def connection(request: Request) -> Iterator[Connection]:
    """A connection for one request, in one read transaction (a consistent view)."""
    store = database(request)
    if store.file_missing():
        raise ApiError(503, DATABASE_UNAVAILABLE)
    with store.engine.connect() as opened:
        yield opened


Store = Annotated[Database, Depends(database)]
Reading = Annotated[Connection, Depends(connection)]
