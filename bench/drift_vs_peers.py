"""infermon's drift report against alibi-detect's KSDrift and Evidently's DataDriftPreset.

Generates one seeded numeric data set (default 100,000 x 20 reference, 10,000 current rows,
a shift in every third column), saves it as .npy, and times on it in one run:

- infermon: `summarise` once (timed apart: the sketch is cached), then `compare` of the
  sketch with the current window, repeated (median and p95); all columns, tests chosen
  automatically, histograms included;
- alibi-detect `KSDrift(reference).predict(current)` (defaults), in its own virtual
  environment: the constructor only stores the reference, so the per-report figure is
  `predict`; constructor + predict is printed too;
- Evidently `Report([DataDriftPreset()]).run(current, reference).dict()`, in its own venv.

All three get the same float64 matrix (KSDrift takes numeric data only). The venvs (their
pins clash) are built once under ~/.cache/infermon/bench-venvs/.

    python bench/drift_vs_peers.py [--rows 100000] [--current-rows 10000] [--columns 20]
        [--repeat 5] [--our-repeat 50] [--skip-alibi] [--skip-evidently]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path for monitor)
import numpy as np
import pandas as pd
from drift_data import describe, generate, save, timings

from monitor.drift.config import DriftConfig
from monitor.drift.report import DriftReport, compare
from monitor.drift.sketch import ReferenceSketch, summarise

BENCH = Path(__file__).resolve().parent
VENVS = Path.home() / ".cache" / "infermon" / "bench-venvs"
# alibi-detect 0.13's core install (no TensorFlow or PyTorch) is enough for KSDrift.
# Evidently 0.7.23 imports a pandas helper that pandas 3 removed, hence pandas<3.
PEERS: dict[str, tuple[str, list[str]]] = {
    "alibi": ("drift_peer_alibi.py", ["alibi-detect==0.13.0"]),
    "evidently": ("drift_peer_evidently.py", ["evidently==0.7.23", "pandas<3"]),
}
HEADLINE_TARGET_S = 0.03
RATIO_GOALS = {"alibi": 7.0, "evidently": 100.0}


@dataclass
class Result:
    tool: str
    report_s: list[float]  # wall
    report_cpu_s: list[float]
    extra_s: dict[str, float] = field(default_factory=dict)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    drifted_count: int = 0
    dataset_drift: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.report_s)

    @property
    def p95(self) -> float:
        return float(np.percentile(self.report_s, 95))

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.report_cpu_s)


def progress(message: str) -> None:
    print(f"[drift-bench] {message}", file=sys.stderr, flush=True)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def venv_python(name: str) -> Path:
    """The peer's venv, built on first use (and rebuilt when its pins change)."""
    pins = PEERS[name][1]
    directory = VENVS / name
    marker = directory / "infermon-pins.json"
    python = directory / "bin" / "python"
    if marker.exists() and json.loads(marker.read_text()) == pins and python.exists():
        return python
    shutil.rmtree(directory, ignore_errors=True)
    progress(f"building the {name} venv in {directory}: pip install {' '.join(pins)} ...")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    if not pip_install(python, pins):
        shutil.rmtree(directory, ignore_errors=True)
        sys.exit(f"pip install {' '.join(pins)} failed (output above)")
    marker.write_text(json.dumps(pins))
    progress(f"{name} venv ready in {time.monotonic() - started:.0f} s")
    return python


def pip_install(python: Path, pins: list[str]) -> bool:
    """pip's "Collecting ..." and "Installing ..." lines as progress on stderr."""
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "--progress-bar", "off", *pins]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            if line.startswith(("Collecting", "Installing", "Successfully", "ERROR")):
                progress(f"  pip: {line.rstrip()}")
    return pip.returncode == 0


def run_peer(name: str, python: Path, data: Path, repeat: int) -> Result:
    script = BENCH / PEERS[name][0]
    progress(f"timing {name} ({repeat} reports after one warm-up) ...")
    env = {**os.environ, "DO_NOT_TRACK": "1", "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("PYTHONPATH", None)  # nothing of infermon's environment in the peer's
    done = subprocess.run(
        [str(python), str(script), str(data), str(repeat)],
        capture_output=True, text=True, cwd=BENCH, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"{script.name} failed:\n{done.stderr[-3000:]}")
    return Result(**json.loads(done.stdout))


def our_columns(report: DriftReport) -> dict[str, dict[str, Any]]:
    return {
        feature.column: {
            "test": feature.test,
            "score": feature.p_value if feature.p_value is not None else feature.distance,
            "drift": feature.drift,
            "status": feature.status,
        }
        for feature in report.features
    }


def run_ours(reference: pd.DataFrame, current: pd.DataFrame, repeat: int) -> Result:
    config = DriftConfig()
    progress(f"timing infermon (summarise once, then {repeat} compares) ...")
    started = time.perf_counter()
    built = summarise(reference, config, window_size=None)
    summarise_s = time.perf_counter() - started
    # The cached sketch as the monitor holds it: stored as bytes, read back.
    stored = built.to_bytes()
    started = time.perf_counter()
    sketch = ReferenceSketch.from_bytes(stored)
    load_s = time.perf_counter() - started
    compare_s, compare_cpu_s, report = timings(lambda: compare(sketch, current, config), repeat)
    with_dict_s, with_dict_cpu_s, _ = timings(
        lambda: compare(sketch, current, config).as_dict(), repeat
    )
    return Result(
        tool="infermon compare (sketch cached)",
        report_s=compare_s,
        report_cpu_s=compare_cpu_s,
        extra_s={
            "summarise (once)": summarise_s,
            "sketch from bytes (once)": load_s,
            "compare min": min(compare_s),
            "compare + as_dict median": statistics.median(with_dict_s),
            "compare + as_dict CPU median": statistics.median(with_dict_cpu_s),
        },
        columns=our_columns(report),
        drifted_count=report.drifted,
        dataset_drift=report.dataset_drift,
    )


def print_timings(results: dict[str, Result], args: argparse.Namespace) -> None:
    ours = results["ours"]
    print(f"\nDrift report: {args.rows:,} x {args.columns} reference, {args.current_rows:,} "
          f"current rows (float64, seed {args.seed})\n")  # fmt: skip
    print("| tool | wall s per report, median | p95 | CPU s per report, median | reports timed "
          "| ours is x faster (wall) | (CPU) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        wall = cpu = ""
        if name != "ours":
            wall, cpu = (f"{result.median / ours.median:,.1f}x",
                         f"{result.cpu_median / ours.cpu_median:,.1f}x")  # fmt: skip
        print(f"| {result.tool} | {result.median:.4f} | {result.p95:.4f} | "
              f"{result.cpu_median:.4f} | {len(result.report_s)} | {wall} | {cpu} |")  # fmt: skip
    print()
    target = HEADLINE_TARGET_S
    print(goal_line("infermon compare, wall median", ours.median <= target,
                    f"{ours.median * 1000:.1f} ms", f"<= {target * 1000:.0f} ms"))  # fmt: skip
    print(goal_line("infermon compare, CPU median", ours.cpu_median <= target,
                    f"{ours.cpu_median * 1000:.1f} ms", f"<= {target * 1000:.0f} ms"))  # fmt: skip
    for name, goal in RATIO_GOALS.items():
        if name in results:
            peer = results[name]
            for clock, ratio in (("wall", peer.median / ours.median),
                                 ("CPU", peer.cpu_median / ours.cpu_median)):  # fmt: skip
                print(goal_line(f"vs {peer.tool}, {clock}", ratio >= goal, f"{ratio:,.1f}x",
                                f">= {goal:g}x"))  # fmt: skip
    for result in results.values():
        for label, seconds in result.extra_s.items():
            print(f"  {result.tool}: {label}: {seconds:.4f} s")


def goal_line(what: str, met: bool, measured: str, goal: str) -> str:
    return f"{what}: {measured} (goal {goal}: {'met' if met else 'NOT met'})"


def print_agreement(results: dict[str, Result], names: list[str]) -> None:
    """Which columns each tool flags, beside the shift injected into each."""
    tools = list(results)
    print("\nPer-column flags (* = drift; score = p-value or distance of the tool's test)\n")
    print("| column | data | injected shift | " + " | ".join(tools) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in tools) + " |")
    correct = dict.fromkeys(tools, 0)
    for index, name in enumerate(names):
        distribution, shift = describe(index)
        cells = []
        for tool in tools:
            column = results[tool].columns.get(name)
            if column is None:
                cells.append("-")
                continue
            score = column["score"]
            shown = "n/a" if score is None else f"{score:.3g}"
            cells.append(f"{'*' if column['drift'] else ' '} {short(column['test'])} {shown}")
            correct[tool] += column["drift"] == bool(shift)
        print(f"| {name} | {distribution} | {shift or '-'} | " + " | ".join(cells) + " |")
    print("\nflags matching the injected shifts: " + ", ".join(
        f"{tool} {correct[tool]}/{len(names)} ({results[tool].drifted_count} flagged)"
        for tool in tools
    ))  # fmt: skip
    if "evidently" in results:
        print_same_scores(results["ours"], results["evidently"])


def print_same_scores(ours: Result, evidently: Result) -> None:
    """Where both chose the normalised Wasserstein distance, the scores should be equal."""
    pairs = [
        (ours.columns[name]["score"], column["score"])
        for name, column in evidently.columns.items()
        if short(column["test"]) == "wasserstein(normed)"
        and ours.columns.get(name, {}).get("test") == "wasserstein"
    ]
    if pairs:
        largest = max(abs(mine - theirs) / max(abs(theirs), 1e-12) for mine, theirs in pairs)
        print(f"normalised Wasserstein, ours against Evidently's on {len(pairs)} columns: "
              f"largest relative difference {largest:.1e}")  # fmt: skip


def short(test: str) -> str:
    """Evidently's display names, shortened for the table."""
    for display, name in (("Wasserstein", "wasserstein(normed)"), ("Jensen-Shannon", "js"),
                          ("K-S", "ks"), ("chi-square", "chisquare"), ("Z-test", "z")):  # fmt: skip
        if display in test:
            return name
    return test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=positive, default=100_000, help="reference rows")
    parser.add_argument("--current-rows", type=positive, default=10_000, help="current rows")
    parser.add_argument("--columns", type=positive, default=20)
    parser.add_argument(
        "--repeat",
        type=positive,
        default=5,
        help="timed reports per peer, after one warm-up (default 5)",
    )
    parser.add_argument(
        "--our-repeat",
        type=positive,
        default=50,
        help="timed infermon compares, after one warm-up (default 50)",
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--skip-alibi", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()  # fmt: skip

    skipped = {"alibi": args.skip_alibi, "evidently": args.skip_evidently}
    pythons = {name: venv_python(name) for name in PEERS if not skipped[name]}
    with tempfile.TemporaryDirectory(prefix="infermon-drift-bench-") as tmp:
        data = Path(tmp)
        reference, current, names = generate(args.rows, args.current_rows, args.columns, args.seed)
        save(data, reference, current, names)
        progress(f"data in {data}: reference {reference.shape}, current {current.shape}")
        frames = (pd.DataFrame(reference, columns=names), pd.DataFrame(current, columns=names))
        results = {"ours": run_ours(*frames, args.our_repeat)}
        for name, python in pythons.items():
            results[name] = run_peer(name, python, data, args.repeat)
    print_timings(results, args)
    print_agreement(results, names)


if __name__ == "__main__":
    main()
