"""`infermon`: one command-line program in front of every component."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module with `main(argv)`, one-line summary). Imported lazily so `--help` is quick.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("infermon.up", "everything on this machine: embedded broker, logger, ingest, monitor"),
    "logger": ("logger.sidecar", "sidecar reverse proxy that logs payload CloudEvents to Kafka"),
    "ingest": ("logger.ingest", "HTTP CloudEvents receiver (KServe logger.url) to Kafka"),
    "trigger": ("trigger", "inference for requests on a Kafka topic, answers to another"),
    "monitor": ("monitor.service", "consume payload events into the SQL store"),
    "stats": ("monitor.stats", "print what the store holds, as JSON"),
    "db": ("monitor.db", "database schema: `infermon db upgrade`"),
}


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
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    module = importlib.import_module(COMMANDS[arguments.command][0])
    return int(module.main(arguments.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
