"""CONFIGURATION.md is what tools/config_reference.py makes of the settings classes today, and
names only options the commands really take."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from infermon.cli import COMMANDS
from infermon.cli import main as infermon
from tools import config_reference
from tools.config_reference import OUTPUT, REGENERATE, SETTINGS_CLASSES


def test_every_command_has_its_settings_class() -> None:
    missing = sorted(set(COMMANDS) - set(SETTINGS_CLASSES))
    assert not missing, f"add {missing} to SETTINGS_CLASSES in tools/config_reference.py"


def test_the_committed_reference_is_up_to_date() -> None:
    committed = OUTPUT.read_text(encoding="utf-8")
    assert committed == config_reference.reference(), (
        f"{OUTPUT.name} is out of date with the settings classes: run `{REGENERATE}`"
    )


def _help(command: str) -> str:
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), pytest.raises(SystemExit) as stopped:
        infermon([command, "--help"])
    assert stopped.value.code == 0
    return shown.getvalue()


def _flags_in_help(text: str) -> set[str]:
    """The option strings argparse lists at the start of each option's line (`-o str, --output
    str`), before the two spaces that begin its description."""
    flags = set()
    for line in re.findall(r"^ {1,4}(-.*)$", text, re.MULTILINE):
        head = line.split("  ")[0]
        flags |= {
            token for token in re.split(r"[ ,]+", head) if re.fullmatch(r"--?[a-z][-a-z]*", token)
        }
    return flags


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_flag_listed_is_one_the_command_takes(command: str) -> None:
    """The reference's flags for a command are exactly those of `infermon COMMAND --help`."""
    listed = {
        flag
        for option in config_reference.options(command)
        for flag in re.findall(r"`(-[-\w]+)`", option.flag)
    }
    taken = _flags_in_help(_help(command)) - {"-h", "--help"}
    assert listed
    assert listed == taken


def test_defaults_and_environment_names_come_from_the_fields() -> None:
    monitor = {o.flag: o for o in config_reference.options("monitor")}
    assert monitor["`--retention-days`"].environment == "`INFERMON_RETENTION_DAYS`"
    assert monitor["`--retention-days`"].default == "`0.0`"
    assert monitor["`--detection`, `--no-detection`"].default == "`True`"
    dashboard = [o for o in config_reference.options("dashboard") if o.flag == "(environment only)"]
    assert {o.environment for o in dashboard} == {
        "`INFERMON_API_TOKEN`",
        "`INFERMON_API_READ_TOKEN`",
    }


@pytest.mark.parametrize("command", sorted(SETTINGS_CLASSES))
def test_every_option_reads_a_prefixed_environment_variable(command: str) -> None:
    """An alias would make a field read the variable of its bare name (JSON, OUTPUT, O): a
    value left in the environment by anything else would change the command."""
    settings = config_reference.settings_class(SETTINGS_CLASSES[command])
    aliased = [name for name, field in settings.model_fields.items()
               if field.alias is not None or field.validation_alias is not None]  # fmt: skip
    assert not aliased, f"{command}: give {aliased} a cli_shortcuts spelling, not an alias"
