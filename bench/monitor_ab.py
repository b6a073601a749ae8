"""A change to the monitor, measured: monitors from several trees (or without the compiled
one pass) storing the same records, run after run in turn, so the machine's drift falls on
all alike.

Pre-produces the records of `monitor_throughput.py` once; then, in each round and for each
database, one monitor of every variant stores them all into a new database. Prints each run,
each variant's median and spread, and its ratio to the first variant's median.

    git worktree add --detach /tmp/before <commit>   # the code to compare against
    (cd /tmp/before && python setup.py build_ext --inplace)   # its compiled one pass
    python bench/monitor_ab.py --variant before=/tmp/before --variant after=. \\
        [--variant before-python=/tmp/before:python] [--calls 30000] [--rounds 5]
        [--databases sqlite,postgresql]

A variant is NAME=TREE, or NAME=TREE:python for that tree's monitor with the compiled one
pass switched off (every batch decoded record by record).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from monitor_throughput import database_url, monitor_rate, produce_calls

from tests.fixtures.broker import TansuBroker, create_topic


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path
    python_only: bool


def variant(text: str) -> Variant:
    name, _, spec = text.partition("=")
    tree, _, mode = spec.partition(":")
    if not name or not tree or mode not in ("", "python"):
        raise argparse.ArgumentTypeError(f"not NAME=TREE or NAME=TREE:python: {text!r}")
    return Variant(name, Path(tree).resolve(), mode == "python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", type=variant, action="append", required=True)
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each, alternating")
    args = parser.parse_args()
    variants: list[Variant] = args.variant
    databases = args.databases.split(",")
    rates: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as folder:
        topic = "bench.payloads"
        create_topic(broker.bootstrap, topic, partitions=args.partitions)
        expected = produce_calls(broker.bootstrap, topic, args.calls)
        print(f"{expected:,} events (2-row v1 batches) in {args.partitions} partitions")
        for round_number in range(args.rounds):
            for kind in databases:
                for one in variants:
                    name = f"{kind}-{one.name}-{round_number}"
                    with database_url(kind, Path(folder), name) as url:
                        rate, cpu, server, _ = monitor_rate(
                            broker.bootstrap, topic, url, 1, expected,
                            tree=one.tree, python_only=one.python_only,
                        )  # fmt: skip
                    rates.setdefault((kind, one.name), []).append(rate)
                    cpus.setdefault((kind, one.name), []).append(cpu + server)
                    print(f"round {round_number + 1} {kind:>10} {one.name:>14}: "
                          f"{rate:>7,.0f} events/s, CPU {cpu:.1f} us"
                          + (f" + server {server:.1f} us" if server else ""),
                          flush=True)  # fmt: skip
    for kind in databases:
        first = statistics.median(rates[(kind, variants[0].name)])
        for one in variants:
            runs = rates[(kind, one.name)]
            median = statistics.median(runs)
            print(f"{kind:>10} {one.name:>14}: median {median:>7,.0f} events/s "
                  f"(runs {min(runs):,.0f}-{max(runs):,.0f}), "
                  f"CPU {statistics.median(cpus[(kind, one.name)]):.1f} us per event; "
                  f"{median / first:.3f}x {variants[0].name}")  # fmt: skip


if __name__ == "__main__":
    main()
