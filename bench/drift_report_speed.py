"""How long `compare` takes for a full report (every column, automatic tests, histograms) with
the reference sketch already built (and read back from its bytes): 100,000 reference rows x 20
columns (15 numeric, 5 categorical) against a 10,000-row window. Prints the wall-clock median
and minimum of repeated runs and the median CPU time (on a shared machine the CPU time is the
steadier figure), and the one-off `summarise` time.

    PYTHONPATH=$PWD python bench/drift_report_speed.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from monitor.drift.config import DriftConfig
from monitor.drift.report import compare
from monitor.drift.sketch import ReferenceSketch, summarise

NUMERIC_COLUMNS = 15
CATEGORICAL_COLUMNS = 5
REFERENCE_ROWS = 100_000
WINDOW_ROWS = 10_000
TARGET_SECONDS = 0.03


def frame(rows: int, shift: float, rng: np.random.Generator) -> pd.DataFrame:
    data: dict[str, object] = {
        f"x{i}": rng.normal(shift, 1.0 + 0.1 * i, rows) for i in range(NUMERIC_COLUMNS)
    }
    for i in range(CATEGORICAL_COLUMNS):
        data[f"c{i}"] = rng.choice(np.array(["red", "green", "blue", "grey"]), rows)
    return pd.DataFrame(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    reference, window = frame(REFERENCE_ROWS, 0.0, rng), frame(WINDOW_ROWS, 0.05, rng)
    config = DriftConfig()
    started = time.perf_counter()
    sketch = ReferenceSketch.from_bytes(summarise(reference, config).to_bytes())
    summarised = time.perf_counter() - started
    compare(sketch, window, config)  # warm-up: imports, scipy's first calls
    times, cpu_times = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = compare(sketch, window, config)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    median, cpu = float(np.median(times)), float(np.median(cpu_times))
    print(
        f"summarise {REFERENCE_ROWS:,}x{NUMERIC_COLUMNS + CATEGORICAL_COLUMNS}: {summarised:.3f} s "
        f"(once per reference)\n"
        f"compare {WINDOW_ROWS:,} rows, {len(report.features)} columns, {repeat} runs: "
        f"wall median {median:.4f} s, min {min(times):.4f} s; CPU median {cpu:.4f} s "
        f"(target <= {TARGET_SECONDS} s: {'met' if cpu <= TARGET_SECONDS else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
