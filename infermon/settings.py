"""Configuration shared by every component: the `INFERMON_` prefix and the Kafka client.

Each component has one settings class that derives from these; flags and environment
variables are twins (`--kafka-bootstrap` / `INFERMON_KAFKA_BOOTSTRAP`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


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


class KafkaSettings(InfermonSettings):
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]"
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka settings, e.g. --kafka-config security.protocol=SASL_SSL "
        "--kafka-config sasl.mechanism=PLAIN (env: JSON object)",
    )

    def kafka_client_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka configuration: bootstrap, then our defaults, then the user's settings."""
        return {"bootstrap.servers": self.kafka_bootstrap, **overrides, **self.kafka_config}


SettingsT = TypeVar("SettingsT", bound=InfermonSettings)


def load_settings(settings_cls: type[SettingsT], argv: Sequence[str], prog: str) -> SettingsT:
    """Flags over environment over defaults; a bad value exits 2 with the reason, no traceback."""
    source: CliSettingsSource[argparse.ArgumentParser] = CliSettingsSource(
        settings_cls, cli_prog_name=prog
    )
    try:
        return CliApp.run(settings_cls, cli_args=list(argv), cli_settings_source=source)
    except ValidationError as error:
        print(f"{prog}: invalid configuration\n{error}", file=sys.stderr)
        raise SystemExit(2) from None
