"""Outlier detectors fitted on a reference, scoring each instance of a window.

- Columns: the reference's numeric columns (booleans and everything else are ignored, and
  named in `ignored`). A missing or non-numeric value, in the reference or in a window, and a
  column a window lacks, take the reference median.
- Threshold: the 1 - fpr quantile of out-of-fold reference scores (5 folds: each fold scored
  by a detector fitted on the other four), so the threshold does not inherit the optimism of
  scoring the rows a detector was fitted on. The detector itself is then fitted on the whole
  reference. The same scores give each instance an empirical p-value (1 + #{ref ≥ s}) / (1 + n).
- Contributions: each feature's share of its instance's score, summing to 1 (0 everywhere for
  an instance exactly at the centre): robust z, z_j² / Σz²; Mahalanobis, u_j·(Σ⁺u)_j / uᵀΣ⁺u on
  standardised features u (a share is negative when a feature's deviation is one the others
  make expected through the reference's correlations); IsolationForest, the robust z shares.
- Bytes: `np.savez_compressed` of arrays and a JSON header, read with `allow_pickle=False`.
  An IsolationForest is stored as the bounded reference sample and seed it is refitted from.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from monitor.outliers.matrix import impute, medians, numeric_columns, to_matrix
from monitor.outliers.methods import (
    MissingExtraError,
    Model,
    fit_model,
    import_sklearn_ensemble,
    model_from_arrays,
)

Method = Literal["robust_z", "mahalanobis", "isolation_forest"]
METHODS: tuple[str, ...] = get_args(Method)
MIN_REFERENCE_ROWS = 20
CALIBRATION_FOLDS = 5
CALIBRATION_STORED = 20_000  # at most this many reference scores are stored for p-values
FORMAT = "infermon.outliers"
FORMAT_VERSION = 1

__all__ = [
    "METHODS",
    "Method",
    "MissingExtraError",
    "OutlierDetector",
    "OutlierScores",
    "fit",
    "require_method",
]


@dataclass(frozen=True, eq=False)
class OutlierScores:
    columns: list[str]  # the numeric columns scored, in order
    scores: np.ndarray  # (n,) higher: more unusual
    threshold: float
    is_outlier: np.ndarray  # (n,) bool: score > threshold
    contributions: np.ndarray  # (n, len(columns)): each feature's share of the score, sum 1
    p_values: np.ndarray  # (n,) (1 + #{reference scores ≥ score}) / (1 + reference rows)
    imputed: np.ndarray  # (n,) how many of the instance's features took the reference median


@dataclass(frozen=True, eq=False)
class OutlierDetector:
    method: Method
    columns: list[str]
    threshold: float
    fpr: float
    ignored: list[str]  # reference columns not scored (not numeric, or no finite value)
    seed: int
    reference_rows: int
    fill: np.ndarray  # (len(columns),) reference medians, for missing values
    calibration: np.ndarray  # sorted out-of-fold reference scores (a bounded set of quantiles)
    model: Model

    def score(self, current: pd.DataFrame) -> OutlierScores:
        x, imputed = impute(to_matrix(current, self.columns), self.fill)
        scores, contributions = self.model.score(x)
        return OutlierScores(
            columns=list(self.columns),
            scores=scores,
            threshold=self.threshold,
            is_outlier=scores > self.threshold,
            contributions=contributions,
            p_values=self.p_values(scores),
            imputed=imputed,
        )

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        at_least = len(self.calibration) - np.searchsorted(self.calibration, scores, "left")
        # The stored scores may be quantiles of more reference rows: count in reference rows.
        count = at_least * (self.reference_rows / len(self.calibration))
        return np.asarray((1.0 + count) / (1.0 + self.reference_rows), dtype=np.float64)

    def to_bytes(self) -> bytes:
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": self.method,
            "columns": self.columns,
            "ignored": self.ignored,
            "seed": self.seed,
            "reference_rows": self.reference_rows,
        }
        arrays = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "threshold_fpr": np.array([self.threshold, self.fpr]),
            "fill": self.fill,
            "calibration": self.calibration,
            **{f"model.{key}": value for key, value in self.model.arrays().items()},
        }
        buffer = BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> OutlierDetector:
        try:
            with np.load(BytesIO(data), allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
            return cls._from_arrays(arrays)
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            zipfile.BadZipFile,
        ) as exc:
            raise ValueError(f"not a stored outlier detector: {exc}") from None

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray]) -> OutlierDetector:
        header: dict[str, Any] = json.loads(arrays["header"].tobytes().decode())
        if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {header.get('format')!r} version {header.get('version')!r}")
        method = header["method"]
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        threshold, fpr = (float(value) for value in arrays["threshold_fpr"])
        model_arrays = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
        return cls(
            method=method,
            columns=[str(name) for name in header["columns"]],
            threshold=threshold,
            fpr=fpr,
            ignored=[str(name) for name in header["ignored"]],
            seed=int(header["seed"]),
            reference_rows=int(header["reference_rows"]),
            fill=arrays["fill"],
            calibration=arrays["calibration"],
            model=model_from_arrays(method, model_arrays, int(header["seed"])),
        )


def require_method(method: str) -> None:
    """A clear error now for a method that cannot run: unknown, or its extra not installed."""
    if method not in METHODS:
        raise ValueError(f"unknown outlier method {method!r}; one of {', '.join(METHODS)}")
    if method == "isolation_forest":
        import_sklearn_ensemble()


def fit(
    reference: pd.DataFrame, method: Method = "mahalanobis", fpr: float = 0.01, seed: int = 0
) -> OutlierDetector:
    """A detector for `reference`. ValueError for a reference it cannot be fitted on (too few
    rows, no numeric column, values too large), `MissingExtraError` (an ImportError) for
    isolation_forest without scikit-learn."""
    require_method(method)
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"the outlier false-positive rate must lie in (0, 1), not {fpr}")
    columns, ignored = numeric_columns(reference)
    if not columns:
        raise ValueError(f"the reference has no numeric column to score (columns: {ignored})")
    needed = max(MIN_REFERENCE_ROWS, math.ceil(1.0 / fpr))
    if len(reference) < needed:
        raise ValueError(
            f"the reference has {len(reference)} rows; outliers at a false-positive rate of"
            f" {fpr} need at least {needed}"
        )
    raw = to_matrix(reference, columns)
    with np.errstate(over="ignore", invalid="ignore"):
        calibration = np.sort(_out_of_fold_scores(method, raw, seed))
        fill = medians(raw)
        model = fit_model(method, impute(raw, fill)[0], seed)
    _check_finite(model, calibration)
    return OutlierDetector(
        method=method,
        columns=columns,
        threshold=float(np.quantile(calibration, 1.0 - fpr)),
        fpr=float(fpr),
        ignored=ignored,
        seed=seed,
        reference_rows=len(reference),
        fill=fill,
        calibration=_bounded(calibration),
        model=model,
    )


def _out_of_fold_scores(method: str, raw: np.ndarray, seed: int) -> np.ndarray:
    """Each reference row's score from a detector fitted without its fold."""
    scores = np.empty(len(raw))
    order = np.random.default_rng(seed).permutation(len(raw))
    for held_out in np.array_split(order, CALIBRATION_FOLDS):
        fitted_on = np.ones(len(raw), dtype=bool)
        fitted_on[held_out] = False
        fill = medians(raw[fitted_on])
        model = fit_model(method, impute(raw[fitted_on], fill)[0], seed)
        scores[held_out] = model.score(impute(raw[held_out], fill)[0])[0]
    return scores


def _check_finite(model: Model, calibration: np.ndarray) -> None:
    """Values near the float limits overflow the fit; say so rather than score with inf."""
    arrays = {**model.arrays(), "reference score": calibration}
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            raise ValueError(f"the reference's values are too large to score ({name} overflows)")


def _bounded(calibration: np.ndarray) -> np.ndarray:
    """At most CALIBRATION_STORED evenly spaced quantiles of the sorted scores."""
    if len(calibration) <= CALIBRATION_STORED:
        return calibration
    levels = (np.arange(CALIBRATION_STORED) + 0.5) / CALIBRATION_STORED
    return np.asarray(np.quantile(calibration, levels), dtype=np.float64)
