"""Instances for drift detection tests: normal traffic, and traffic with chosen features shifted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

FEATURES = ("a", "b", "c", "colour")


def instance_features(rng: np.random.Generator, shifted: frozenset[str] = frozenset()
                      ) -> dict[str, Any]:  # fmt: skip
    """One instance's features: three numeric, one categorical; `shifted` ones moved."""
    return {
        "a": float(rng.normal(3.0 if "a" in shifted else 0.0, 1.0)),
        "b": float(rng.normal(10.0, 2.0)),
        "c": float(rng.exponential(5.0 if "c" in shifted else 1.0)),
        "colour": str(rng.choice(["red", "green", "blue"],
                                 p=[0.1, 0.1, 0.8] if "colour" in shifted else [0.4, 0.4, 0.2])),
    }  # fmt: skip


def instance_rows(
    model: str, start: datetime, count: int, *, seed: int, shifted: frozenset[str] = frozenset(),
    prefix: str = "r", step: timedelta = timedelta(milliseconds=10),
) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of the instances table, one call of one instance each, `step` apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(count):
        features = instance_features(rng, shifted)
        rows.append({
            "request_id": f"{prefix}{n:06d}", "row_index": 0, "model": model,
            "time": start + n * step, "features": features,
            "prediction": {"prediction": int(features["a"] > 1.5)},
        })  # fmt: skip
    return rows
