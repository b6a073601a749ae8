"""The `infermon` command line: help everywhere, flags and environment twins, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infermon.cli import COMMANDS
from infermon.settings import load_settings
from logger.settings import LoggerSettings
from tests.fixtures.processes import REPO_ROOT


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infermon.cli", *args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )  # fmt: skip


def test_top_level_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", ["logger", "ingest", "trigger", "monitor", "up"])
def test_each_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"infermon {command}" in result.stdout
    assert "--kafka-bootstrap" in result.stdout


def test_flags_override_environment_which_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERMON_PORT", "7000")
    monkeypatch.setenv("INFERMON_METADATA_HEADERS", "X-Request-Id, x-b3-traceid")
    monkeypatch.setenv("INFERMON_TOPIC", "from-env")
    settings = load_settings(LoggerSettings, ["--topic", "from-flag"], "infermon logger")
    assert settings.port == 7000
    assert settings.metadata_headers == ["X-Request-Id", "x-b3-traceid"]
    assert settings.topic == "from-flag"
    assert settings.mode == "all"


def test_kafka_client_settings_pass_through() -> None:
    settings = load_settings(
        LoggerSettings,
        ["--kafka-config", "security.protocol=SASL_SSL", "--kafka-config", "sasl.mechanism=PLAIN"],
        "infermon logger",
    )
    config = settings.kafka_client_config(**{"linger.ms": 50})
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert config["linger.ms"] == 50


@pytest.mark.parametrize(
    ("args", "reason"),
    [(["--sample-rate", "1.5"], "--sample-rate"), (["--mode", "sometimes"], "--mode")],
)
def test_bad_values_exit_2_with_the_reason(args: list[str], reason: str) -> None:
    result = run_cli("logger", *args)
    assert result.returncode == 2
    assert reason in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_redaction_path_is_refused_at_start() -> None:
    result = run_cli("logger", "--redact", "$.[[[", "--spool-dir", "")
    assert result.returncode == 2
    assert "--redact" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_url_must_be_http() -> None:
    result = run_cli("logger", "--model-url", "ftp://model", "--spool-dir", "")
    assert result.returncode == 2
    assert "--model-url" in result.stderr
