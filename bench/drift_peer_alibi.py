"""alibi-detect's `KSDrift` on the drift benchmark's data; run in alibi-detect's own venv.

    python drift_peer_alibi.py DATA_DIR REPEAT   (prints one JSON object on stdout)

alibi-detect is under the Business Source License: it runs here, in a virtual environment of
its own, and nothing in infermon imports it.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import alibi_detect
from alibi_detect.cd import KSDrift
from drift_data import load, timings


def main() -> None:
    directory, repeat = Path(sys.argv[1]), int(sys.argv[2])
    reference, current, names = load(directory)
    # Defaults: p_val 0.05, Bonferroni over the features, two-sided asymptotic KS per feature.
    detector = KSDrift(reference)
    predict, predict_cpu, result = timings(lambda: detector.predict(current), repeat)
    build_and_predict, _, _ = timings(lambda: KSDrift(reference).predict(current), repeat)
    build, _, _ = timings(lambda: KSDrift(reference), repeat)
    data = result["data"]
    # Bonferroni: the batch drifts when any feature's p-value is below p_val / n_features;
    # a feature "flags" when its own p-value is.
    threshold = float(data["threshold"])
    columns = {
        name: {"test": "ks", "score": float(p), "drift": bool(p < threshold)}
        for name, p in zip(names, data["p_val"], strict=True)
    }
    print(json.dumps({
        "tool": f"alibi-detect {alibi_detect.__version__} KSDrift",
        "report_s": predict,
        "report_cpu_s": predict_cpu,
        "extra_s": {"constructor": statistics.median(build),
                    "constructor + predict": statistics.median(build_and_predict)},
        "drifted_count": sum(column["drift"] for column in columns.values()),
        "dataset_drift": bool(data["is_drift"]),
        "columns": columns,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
