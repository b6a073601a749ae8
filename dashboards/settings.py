"""`infermon dashboard`'s settings: flags and their `INFERMON_` twins, and the API tokens.

The tokens come from the environment only (`INFERMON_API_TOKEN`, `INFERMON_API_READ_TOKEN`):
a flag would show them to anyone who lists the processes. They are `SecretStr`, so neither
repr nor a log line shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from pydantic import Field, SecretStr, model_validator

from infermon import defaults
from infermon.settings import InfermonSettings, load_settings
from monitor.store.engine import check_database_url

PROG = "infermon dashboard"


class DashboardFlags(InfermonSettings):
    """Serve the dashboard: the JSON API under /api/v1 and the web page, over the store.
    Writes (references, feedback) need INFERMON_API_TOKEN as a Bearer token; reads are open
    unless INFERMON_API_READ_TOKEN is set."""

    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the monitor's store (postgresql+psycopg://... for "
        "PostgreSQL); default sqlite:///<data-dir>/infermon.db",
    )
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(defaults.DASHBOARD_PORT, description="port to listen on")
    insecure_writes: bool = Field(
        False, description="start without INFERMON_API_TOKEN: anyone who reaches the port writes"
    )

    @model_validator(mode="after")
    def _a_database_url(self) -> Self:
        """An empty URL is the default, `<data-dir>/infermon.db`; any other must be a URL of
        a database the store knows."""
        if not self.database_url:
            self.database_url = defaults.sqlite_url(self.data_dir)
        check_database_url(self.database_url)
        return self


class DashboardSettings(DashboardFlags):
    """The flags, and the tokens from the environment."""

    api_token: SecretStr | None = Field(
        None,
        repr=False,
        description="Bearer token for writes (references, feedback); it reads too. Unset: the "
        "dashboard refuses to start unless --insecure-writes",
    )
    api_read_token: SecretStr | None = Field(
        None, repr=False, description="Bearer token for reads; unset: reads are open"
    )

    @model_validator(mode="after")
    def _empty_token_is_none(self) -> Self:
        """`INFERMON_API_TOKEN=` (set but empty) is no token: an empty Bearer must not pass."""
        if self.api_token is not None and not self.api_token.get_secret_value():
            self.api_token = None
        if self.api_read_token is not None and not self.api_read_token.get_secret_value():
            self.api_read_token = None
        return self


def load_dashboard_settings(argv: Sequence[str]) -> DashboardSettings:
    """Flags over environment over defaults; the tokens from the environment alone."""
    flags = load_settings(DashboardFlags, argv, PROG)
    return DashboardSettings(**flags.model_dump())
