"""Configuration shared by every component: the `INFERMON_` prefix, the data directory and
the Kafka client.

Each component has one settings class that derives from these; flags and environment
variables are twins (`--kafka-bootstrap` / `INFERMON_KAFKA_BOOTSTRAP`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    CliApp,
    CliSettingsSource,
    NoDecode,
    SettingsConfigDict,
    SettingsError,
)

from infermon import defaults
from infermon.errors import UsageError
from infermon.excerpts import quoted
from infermon.throttled_log import LibrdkafkaLog

CommaList = Annotated[list[str], NoDecode]
# librdkafka's own lines (a failed connection, a broker gone), throttled: one per process, so
# that every Kafka client of a component shares the rate.
LIBRDKAFKA_LOG = LibrdkafkaLog(logging.getLogger("librdkafka"))


def split_comma_list(value: Any) -> Any:
    """`a, b,c` -> ["a", "b", "c"]; lists pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class InfermonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INFERMON_",
        cli_kebab_case=True,
        cli_avoid_json=True,
        cli_implicit_flags=True,
        extra="ignore",
    )

    data_dir: str = Field(
        defaults.DATA_DIR,
        description="folder for what stays on disk: each component's spool in spool/<command>, "
        "the default SQLite store infermon.db",
    )


class KafkaSettings(InfermonSettings):
    kafka_bootstrap: str = Field(
        defaults.KAFKA_BOOTSTRAP, description="Kafka bootstrap servers, host:port[,host:port]"
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka settings, e.g. --kafka-config security.protocol=SASL_SSL "
        "--kafka-config sasl.mechanism=PLAIN (env: JSON object)",
    )

    def kafka_client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration: bootstrap, then our defaults, then the user's settings."""
        return {
            "bootstrap.servers": self.kafka_bootstrap,
            "logger": LIBRDKAFKA_LOG,
            **overrides,
            **self.kafka_config,
        }


SettingsT = TypeVar("SettingsT", bound=InfermonSettings)


def load_settings(settings_cls: type[SettingsT], argv: Sequence[str], prog: str) -> SettingsT:
    """Flags over environment over defaults; a bad or missing value is a `UsageError` that
    names its flag (`infermon.cli` prints it and exits 2)."""
    source: CliSettingsSource[argparse.ArgumentParser] = CliSettingsSource(
        settings_cls, cli_prog_name=prog, cli_exit_on_error=False
    )
    try:
        return CliApp.run(settings_cls, cli_args=list(argv), cli_settings_source=source)
    except ValidationError as error:
        raise UsageError(f"{settings_problems(error)}\n{_help_hint(prog)}") from None
    except SettingsError as error:  # argparse's: an unknown flag, a flag without its value
        reason = str(error).removeprefix("error parsing CLI: ")
        raise UsageError(f"{reason}\n{_help_hint(prog)}") from None


def settings_problems(error: ValidationError) -> str:
    """Pydantic's errors in one line, each under the flag that sets the value."""
    missing = [_flag(e["loc"]) for e in error.errors() if e["type"] == "missing"]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    for detail in error.errors():
        if detail["type"] == "missing":
            continue
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["loc"]:
            shown = str(detail["input"])
            reason = f"{_flag(detail['loc'])} {quoted(shown)}: {reason}"
        problems.append(reason)
    return "; ".join(problems)


def _flag(location: tuple[int | str, ...]) -> str:
    return "--" + str(location[0]).replace("_", "-")


def _help_hint(prog: str) -> str:
    return f"Every option, and its INFERMON_ environment twin: {prog} --help"
