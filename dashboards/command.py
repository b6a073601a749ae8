"""`infermon dashboard`: the API and the page over the monitor's store, with uvicorn.

Mistakes are refused before anything listens, each in one line (exit 2): no write token
without --insecure-writes, a database that is not there or not reachable, a port in use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from dashboards.app import create_app
from dashboards.database import Database, sqlite_file
from dashboards.settings import DashboardSettings, load_dashboard_settings
from infermon.errors import UsageError, first_line, listening_socket
from monitor.store import api_read
from monitor.store.engine import normalise_url

NO_TOKEN = (
    "INFERMON_API_TOKEN is not set: set it to the Bearer token that writes need, "
    "or start with --insecure-writes to let anyone who reaches the port write"
)


def main(argv: Sequence[str]) -> int:
    settings = load_dashboard_settings(argv)
    if settings.api_token is None and not settings.insecure_writes:
        raise UsageError(NO_TOKEN)
    check_database(settings)
    listener = listening_socket(settings.host, settings.port, "--port")
    config = uvicorn.Config(
        create_app(settings), log_level="info", proxy_headers=False, server_header=False
    )
    # uvicorn names no address when it is handed a socket: say where the dashboard is.
    logging.getLogger("uvicorn.error").info(
        "infermon dashboard on http://%s:%d", settings.host, listener.getsockname()[1]
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def check_database(settings: DashboardSettings) -> None:
    """The store is there, reachable and holds the monitor's tables; else a `UsageError`."""
    shown = normalise_url(settings.database_url).render_as_string(hide_password=True)
    create_it = f"run `infermon db upgrade --database-url {shown}` to create it"
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise UsageError(f"no database at {path}: {create_it}")
    database = Database(settings.database_url)
    try:
        with database.engine.connect() as connection:
            if not api_read.has_store_tables(connection):
                raise UsageError(f"no infermon schema in {shown}: {create_it}")
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        raise UsageError(f"cannot read {shown}: {first_line(cause)}") from None
    finally:
        database.dispose()
