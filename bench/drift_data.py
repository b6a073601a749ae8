"""The drift benchmark's data: one seeded numeric reference and current matrix, saved once.

Numpy only: the peer scripts import this module from their own virtual environments.
Every process loads the same `.npy` files, so all tools see the same bytes. All columns are
float64 (alibi-detect's `KSDrift` takes a numeric matrix only, so categorical columns would
leave it out of the comparison).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")

Sampler = Callable[[np.random.Generator, int, bool], np.ndarray]


def _normal(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.normal(0.5 if shifted else 0.0, 1.0, n)  # mean +0.5 sd


def _lognormal(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.lognormal(0.0, 1.2 if shifted else 1.0, n)  # heavier right tail


def _exponential(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.exponential(1.0, n) * (1.5 if shifted else 1.0)  # scale x1.5


def _uniform(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.uniform(0.08 if shifted else 0.0, 1.08 if shifted else 1.0, n)  # +0.08 (0.28 sd)


def _bimodal(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    upper = rng.random(n) < (0.6 if shifted else 0.5)  # mixture weight 0.5 -> 0.6
    return np.where(upper, rng.normal(3.0, 1.0, n), rng.normal(-3.0, 1.0, n))


def _counts(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.poisson(4.4 if shifted else 4.0, n).astype(np.float64)  # discrete, ~15 values


def _subtle(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
    return rng.normal(0.05 if shifted else 0.0, 1.0, n)  # mean +0.05 sd: large-n tests only


# (distribution, the shift applied to it in the current window, sampler). Column i draws
# from KINDS[i % 7] and is shifted when i % 3 == 2: 20 columns carry 6 shifts of 6 kinds
# (the uniform column is never shifted below 21 columns) and 14 unshifted columns.
KINDS: list[tuple[str, str, Sampler]] = [
    ("normal", "mean +0.5 sd", _normal),
    ("lognormal", "sigma 1 -> 1.2", _lognormal),
    ("exponential", "scale x1.5", _exponential),
    ("normal", "mean +0.05 sd", _subtle),
    ("bimodal", "weight 0.5 -> 0.6", _bimodal),
    ("poisson counts", "mean 4 -> 4.4", _counts),
    ("uniform", "+0.08 (0.28 sd)", _uniform),
]


def is_shifted(column: int) -> bool:
    return column % 3 == 2


def describe(column: int) -> tuple[str, str]:
    """The column's distribution and its shift ("" when the current window is unshifted)."""
    distribution, shift, _ = KINDS[column % len(KINDS)]
    return distribution, shift if is_shifted(column) else ""


def generate(
    rows: int, current_rows: int, columns: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reference and current matrices (float64) and the column names."""
    rng = np.random.default_rng(seed)
    reference = np.empty((rows, columns))
    current = np.empty((current_rows, columns))
    for column in range(columns):
        sampler = KINDS[column % len(KINDS)][2]
        reference[:, column] = sampler(rng, rows, False)
        current[:, column] = sampler(rng, current_rows, is_shifted(column))
    return reference, current, [f"f{column:02d}" for column in range(columns)]


def save(directory: Path, reference: np.ndarray, current: np.ndarray, names: list[str]) -> None:
    np.save(directory / "reference.npy", reference)
    np.save(directory / "current.npy", current)
    (directory / "columns.json").write_text(json.dumps(names))


def load(directory: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = json.loads((directory / "columns.json").read_text())
    return np.load(directory / "reference.npy"), np.load(directory / "current.npy"), names


def timings(
    call: Callable[[], T], repeat: int, warmup: int = 1
) -> tuple[list[float], list[float], T]:
    """Wall and CPU seconds (this process, all threads) per call of `call`, `repeat` times
    after `warmup` untimed calls; and the last result. On a shared machine the CPU time is
    the steadier figure: waiting for a core does not count."""
    result = call()
    for _ in range(warmup - 1):
        result = call()
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = call()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu, result
