"""Evidently's `DataDriftPreset` on the drift benchmark's data; run in Evidently's own venv.

    python drift_peer_evidently.py DATA_DIR REPEAT   (prints one JSON object on stdout)

Evidently 0.7's API: `Report([DataDriftPreset()]).run(current, reference)`, then the
snapshot's `dict()`. Default preset: per-column test chosen by Evidently, histograms included.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import evidently
import pandas as pd
from drift_data import load, timings
from evidently import Report
from evidently.presets import DataDriftPreset


def report(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    return Report([DataDriftPreset()]).run(current, reference).dict()


def columns(result: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], int]:
    """Each column's test, score and drift; and the preset's own count of drifted columns."""
    found, counted = {}, -1
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            method, score, threshold = config["method"], float(metric["value"]), config["threshold"]
            # p-value tests drift below the threshold, distances at or above it.
            drift = score < threshold if "p_value" in method else score >= threshold
            found[config["column"]] = {"test": method, "score": score, "drift": bool(drift)}
        elif config["type"].endswith(":DriftedColumnsCount"):
            counted = int(metric["value"]["count"])
    return found, counted


def main() -> None:
    directory, repeat = Path(sys.argv[1]), int(sys.argv[2])
    reference_matrix, current_matrix, names = load(directory)
    reference = pd.DataFrame(reference_matrix, columns=names)
    current = pd.DataFrame(current_matrix, columns=names)
    seconds, cpu, result = timings(lambda: report(reference, current), repeat)
    found, counted = columns(result)
    print(json.dumps({
        "tool": f"Evidently {evidently.__version__} DataDriftPreset",
        "report_s": seconds,
        "report_cpu_s": cpu,
        "extra_s": {},
        "drifted_count": counted,
        "dataset_drift": counted >= 0.5 * len(names),  # the preset's default drift_share
        "columns": found,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
