"""Outlier scoring speed: instances scored per second by each method, from a DataFrame window
(conversion, imputation, scores, contributions, flags and p-values included), beside a
baseline in the same run:

- robust z and Mahalanobis: scipy.spatial.distance.mahalanobis called row by row (the
  distance alone), and scikit-learn's EllipticEnvelope.mahalanobis (vectorised, squared
  distances alone) when scikit-learn is installed;
- IsolationForest: scikit-learn's own score_samples on the same fitted forest and a float32
  array, so the ratio is what the DataFrame, clipping and contributions add.

Best of --repeats runs, wall clock (the machine is shared).

    python bench/outlier_scoring.py [--rows 200000] [--features 20] [--reference-rows 5000]
        [--repeats 5] [--loop-rows 20000]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import pandas as pd
from scipy.spatial.distance import mahalanobis

from monitor.outliers.detectors import METHODS, fit


def frame(rows: int, features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mixing = np.eye(features) + 0.25 * np.random.default_rng(0).normal(size=(features, features))
    values = rng.normal(size=(rows, features)) @ mixing
    return pd.DataFrame(values, columns=[f"f{j}" for j in range(features)])


def best_rate(rows: int, repeats: int, run: Callable[[], object]) -> float:
    """Instances per second of the fastest of `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return rows / best


def scipy_loop_rate(reference: pd.DataFrame, window: pd.DataFrame, rows: int) -> float:
    inverse = np.linalg.pinv(np.cov(reference.to_numpy(), rowvar=False))
    mean = reference.to_numpy().mean(axis=0)
    values = window.to_numpy()[:rows]
    return best_rate(rows, 1, lambda: [mahalanobis(row, mean, inverse) for row in values])


def elliptic_envelope_rate(reference: pd.DataFrame, window: pd.DataFrame, repeats: int) -> float:
    from sklearn.covariance import EllipticEnvelope

    envelope = EllipticEnvelope(random_state=0).fit(reference.to_numpy())
    values = window.to_numpy()
    return best_rate(len(values), repeats, lambda: envelope.mahalanobis(values))


def sklearn_alone_rate(forest: Any, window: pd.DataFrame, repeats: int) -> float:
    values = window.to_numpy().astype(np.float32)
    return best_rate(len(values), repeats, lambda: forest.score_samples(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--reference-rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-rows", type=int, default=20_000)
    args = parser.parse_args()
    reference = frame(args.reference_rows, args.features, 1)
    window = frame(args.rows, args.features, 2)
    sklearn = importlib.util.find_spec("sklearn") is not None
    print(f"{args.rows:,} instances x {args.features} features; reference {len(reference):,} rows")

    loop = scipy_loop_rate(reference, window, args.loop_rows)
    print(f"baseline scipy mahalanobis, row by row: {loop:>12,.0f} instances/s")
    envelope = elliptic_envelope_rate(reference, window, args.repeats) if sklearn else None
    if envelope:
        print(f"baseline EllipticEnvelope.mahalanobis:  {envelope:>12,.0f} instances/s")
    for method in METHODS:
        if method == "isolation_forest" and not sklearn:
            print("isolation_forest: skipped (scikit-learn not installed)")
            continue
        start = time.perf_counter()
        detector = fit(reference, method, fpr=0.01)
        fitted_s = time.perf_counter() - start
        rate = best_rate(args.rows, args.repeats, lambda d=detector: d.score(window))
        line = f"{method:<17} fit {fitted_s:5.2f} s, score {rate:>12,.0f} instances/s"
        line += f" ({rate / loop:,.0f}x scipy loop"
        if method == "isolation_forest":
            raw = sklearn_alone_rate(detector.model.forest(), window, args.repeats)  # type: ignore[attr-defined]
            line += f"; {rate / raw:.2f}x sklearn score_samples alone at {raw:,.0f}/s)"
        elif envelope:
            line += f"; {rate / envelope:.2f}x EllipticEnvelope)"
        else:
            line += ")"
        print(line)


if __name__ == "__main__":
    main()
