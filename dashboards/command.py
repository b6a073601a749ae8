"""`infermon dashboard`: the API and the page over the monitor's store, with uvicorn.

Mistakes are refused before anything listens, each in one line (exit 2): no write token
without --insecure-writes, a database that is not there or not reachable, a port in use. The
cheap checks come before the application is imported (FastAPI, pandas: seconds on a busy
machine), so that those mistakes are reported at once.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

from dashboards.settings import DashboardSettings, load_dashboard_settings
from infermon.errors import UsageError, first_line, listening_socket
from monitor.store.engine import normalise_url, sqlite_file

NO_TOKEN = (
    "INFERMON_API_TOKEN is not set: set it to the Bearer token that writes need, "
    "or start with --insecure-writes to let anyone who reaches the port write"
)


def main(argv: Sequence[str]) -> int:
    settings = load_dashboard_settings(argv)
    if settings.api_token is None and not settings.insecure_writes:
        raise UsageError(NO_TOKEN)
    check_database_file(settings)
    listener = listening_socket(settings.host, settings.port, "--port")
    try:
        check_database(settings)
    except UsageError:
        listener.close()
        raise
    serve(settings, listener)
    return 0


def _shown(settings: DashboardSettings) -> str:
    return normalise_url(settings.database_url).render_as_string(hide_password=True)


def _create_it(settings: DashboardSettings) -> str:
    return f"run `infermon db upgrade --database-url {_shown(settings)}` to create it"


def check_database_file(settings: DashboardSettings) -> None:
    """A SQLite store's file is there: the dashboard never creates one."""
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise UsageError(f"no database at {path}: {_create_it(settings)}")


def check_database(settings: DashboardSettings) -> None:
    """The store is reachable and holds the monitor's tables; else a `UsageError`."""
    from sqlalchemy.exc import SQLAlchemyError

    from dashboards.database import Database
    from monitor.store import api_read

    database = Database(settings.database_url)
    try:
        with database.engine.connect() as connection:
            if not api_read.has_store_tables(connection):
                raise UsageError(
                    f"no infermon schema in {_shown(settings)}: {_create_it(settings)}"
                )
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        raise UsageError(f"cannot read {_shown(settings)}: {first_line(cause)}") from None
    finally:
        database.dispose()


def serve(settings: DashboardSettings, listener: socket.socket) -> None:
    import uvicorn

    from dashboards.app import create_app

    config = uvicorn.Config(
        create_app(settings), log_level="info", proxy_headers=False, server_header=False
    )
    # uvicorn names no address when it is handed a socket: say where the dashboard is.
    logging.getLogger("uvicorn.error").info(
        "infermon dashboard on http://%s:%d", settings.host, listener.getsockname()[1]
    )
    uvicorn.Server(config).run(sockets=[listener])
