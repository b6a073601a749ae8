"""The logger's memory while Kafka is down: RSS under steady load, sampled over minutes.

KServe's logger grows from 60 to 500 MiB in 3 minutes against a slow sink (kserve#6167);
ours holds at most --buffer-max-bytes in memory and spills the rest to the disk spool.

    python bench/logger_memory.py [--minutes 5] [--rate 500]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import V1_BODY, require_tools, rss_bytes, start_logger

from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.processes import free_port

SAMPLE_EVERY_S = 15
MIB = 1024 * 1024


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=500, help="calls per second")
    args = parser.parse_args()
    require_tools("hey")
    unreachable_kafka = f"127.0.0.1:{free_port()}"  # nothing listens: Kafka is down throughout
    with KServeModelServer() as model:
        spool = Path(tempfile.mkdtemp(prefix="infermon-bench-spool-"))
        logger, url = start_logger(model.url, unreachable_kafka, spool=spool)
        duration_s = int(args.minutes * 60)
        load = subprocess.Popen(
            ["hey", "-z", f"{duration_s}s", "-c", "1", "-q", str(args.rate), "-m", "POST",
             "-T", "application/json", "-d", V1_BODY, f"{url}/v1/models/toy:predict"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        started = time.monotonic()
        print(f"{'elapsed s':>10}{'RSS MiB':>10}{'spool MiB':>11}")
        peak = 0
        while load.poll() is None:
            rss = rss_bytes(logger.pid)
            peak = max(peak, rss)
            elapsed = time.monotonic() - started
            print(
                f"{elapsed:>10.0f}{rss / MIB:>10.1f}{folder_bytes(spool) / MIB:>11.1f}", flush=True
            )
            time.sleep(SAMPLE_EVERY_S)
        summary = load.communicate()[0]
        final = rss_bytes(logger.pid)
        logger.stop()
    calls = next((line for line in summary.splitlines() if "Requests/sec" in line), "").strip()
    status = [line.strip() for line in summary.splitlines() if "responses" in line]
    print(f"\nafter {args.minutes:g} min at {args.rate}/s with Kafka down: "
          f"RSS {final / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB (target <= 150 MB); "
          f"{calls}; {status}")  # fmt: skip


if __name__ == "__main__":
    main()
