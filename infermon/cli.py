"""`infermon`: one command-line program in front of every component."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from infermon.errors import EXIT_USAGE, UsageError

# command -> (module with `main(argv)`, one-line summary). Imported lazily so `--help` is quick.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("infermon.up", "everything on this machine: embedded broker, logger, ingest, monitor"),
    "logger": ("logger.sidecar", "sidecar reverse proxy that logs payload CloudEvents to Kafka"),
    "ingest": ("logger.ingest", "HTTP CloudEvents receiver (KServe logger.url) to Kafka"),
    "trigger": ("trigger", "inference for requests on a Kafka topic, answers to another"),
    "monitor": ("monitor.service", "consume payload events into the SQL store"),
    "counts": ("monitor.counts", "print what the store holds, as JSON row counts"),
    "db": ("monitor.db", "database schema: `infermon db upgrade`"),
    "drift": (
        "monitor.drift_command",
        "compare a data file with a reference, column by column",
    ),
    "reports": ("monitor.reports", "print the stored drift reports, latest first"),
    "dashboard": ("dashboards.command", "the dashboard: JSON API and web page over the store"),
    "enable-logging": ("infermon.enable_logging", "set KServe's logger in InferenceService YAML"),
}
# old name -> new name: still run, with a note on stderr (stdout unchanged, for scripts).
DEPRECATED_NAMES: dict[str, str] = {"stats": "counts"}
# The shells' code for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infermon",
        description="Payload logging and model monitoring for KServe-style model serving. "
        "Every option has an INFERMON_<NAME> environment twin.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items())
        + "\n\nRun `infermon COMMAND --help` for a command's options.",
    )
    parser.add_argument(
        "command", choices=sorted([*COMMANDS, *DEPRECATED_NAMES]), metavar="COMMAND"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            code = _run(sys.argv[1:] if argv is None else list(argv))
        finally:  # --help exits through here too
            sys.stdout.flush()  # here, so that a reader gone is seen here and not at exit
    except BrokenPipeError:  # `infermon counts | head`: the reader has what it wanted
        _discard_stdout()
        return 0
    except KeyboardInterrupt:  # Ctrl-C before the command took over its signals
        return EXIT_INTERRUPTED
    return code


def _run(argv: list[str]) -> int:
    arguments = _parser().parse_args(argv)
    command = arguments.command
    if command in DEPRECATED_NAMES:
        command = DEPRECATED_NAMES[command]
        print(f"infermon: `{arguments.command}` is now `{command}`", file=sys.stderr)
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.main(arguments.args) or 0)
    except UsageError as error:
        print(f"infermon {command}: {error}", file=sys.stderr)
        return EXIT_USAGE


def _discard_stdout() -> None:
    """What is left in stdout's buffer goes nowhere, so the exit flush does not fail too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
