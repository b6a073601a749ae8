"""A user's mistake at start-up, said in a line or two with what to do, and exit code 2.

Anything a user can fix (a port in use, a folder that cannot be made, a malformed URL, a missing
option) is raised as `UsageError` wherever it is found; `infermon.cli` prints it after the
command's name and exits 2, never with a traceback.
"""

from __future__ import annotations

import errno
import socket

# argparse's and the shells' convention for a command used wrongly.
EXIT_USAGE = 2
# As in asyncio's and uvicorn's own servers.
LISTEN_BACKLOG = 2048
MAX_PORT = 65535


class UsageError(Exception):
    """A mistake the user can fix; the message says what to do."""


def first_line(error: BaseException | str) -> str:
    """An error's first line: drivers add hints, SQL and links on the lines after it."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def listening_socket(
    host: str, port: int, port_flag: str, host_flag: str = "--host"
) -> socket.socket:
    """A socket bound to `host:port` and listening, or a `UsageError` naming the flag to change.

    Binding before anything else starts is what lets a server refuse at once, in one line.
    """
    if not 0 <= port <= MAX_PORT:
        raise UsageError(f"{port_flag} {port} is not a port: choose one from 0 to {MAX_PORT}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Like asyncio and uvicorn: SO_REUSEADDR, so a port left in TIME_WAIT can be taken.
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as error:
        raise UsageError(_cannot_listen(host, port, port_flag, host_flag, error)) from None


def check_port_free(host: str, port: int, port_flag: str, host_flag: str = "--host") -> None:
    """Raises `UsageError` if `host:port` cannot be listened on now."""
    listening_socket(host, port, port_flag, host_flag).close()


def _cannot_listen(host: str, port: int, port_flag: str, host_flag: str, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use: choose another with {port_flag}"
    if error.errno == errno.EACCES:
        return f"port {port} needs privileges to listen on: choose another with {port_flag}"
    reason = error.strerror or str(error)
    return f"cannot listen on {host}:{port} ({reason}): check {host_flag} and {port_flag}"
