"""A reference summarised once: sorted sample, bin edges and counts, categories and counts,
missing share, mean and covariance. Stored as bytes (no pickle), so a window costs only its
own data.

Per column (`summary.ColumnSketch`): the values present, sorted (at most `SAMPLE_CAP` =
100,000 of them: a longer reference keeps that many evenly spaced order statistics), the
quantile bin edges and counts (missing values in their own bin), the categories and counts, the
mean and standard deviation, and thresholds calibrated on the reference. For the numeric
columns together: mean, covariance (pairwise-complete; 0 where fewer than two rows have both
values) and the standardised subsample the multivariate test compares windows with.

Thresholds calibrated on the reference (`calibration`) are kept with their column.

`to_bytes` is `np.savez` (no pickle: `from_bytes` loads with `allow_pickle=False`) with the
arrays, plus a JSON header stored as bytes for the rest.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from monitor.drift.calibration import calibrated
from monitor.drift.columns import infer_kinds, numeric_values, with_text_names
from monitor.drift.config import ColumnKind, DriftConfig
from monitor.drift.multivariate import standardise, subsample
from monitor.drift.summary import ColumnSketch, summarise_column

FORMAT = 1


class SketchFormatError(ValueError):
    """Bytes that are not a reference sketch of this version."""


def _empty_matrix() -> np.ndarray:
    return np.empty((0, 0))


@dataclass(frozen=True, eq=False)
class ReferenceSketch:
    rows: int
    kinds: dict[str, ColumnKind]  # column -> kind, in the reference's column order
    columns: dict[str, ColumnSketch] = field(default_factory=dict)
    n_bins: int = 10
    window_size: int | None = None  # the window size thresholds were calibrated for
    numeric_columns: list[str] = field(default_factory=list)  # usable numeric columns, in order
    mean: np.ndarray = field(default_factory=lambda: np.empty(0))
    covariance: np.ndarray = field(default_factory=_empty_matrix)
    scale: np.ndarray = field(default_factory=lambda: np.empty(0))  # std, 1 where there is none
    mmd_sample: np.ndarray = field(default_factory=_empty_matrix)  # standardised rows

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean,
            "covariance": self.covariance,
            "scale": self.scale,
            "mmd_sample": self.mmd_sample,
        }
        columns = []
        for position, (name, column) in enumerate(self.columns.items()):
            arrays[f"{position}.bins"] = column.bins
            arrays[f"{position}.sample"] = column.sample
            arrays[f"{position}.edges"] = column.edges
            columns.append(_column_header(name, column))
        header = {
            "format": FORMAT,
            "rows": self.rows,
            "kinds": self.kinds,
            "n_bins": self.n_bins,
            "window_size": self.window_size,
            "numeric_columns": self.numeric_columns,
            "columns": columns,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub wants one array type
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceSketch:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            header = json.loads(arrays["header"].tobytes())
            if header.get("format") != FORMAT:
                raise SketchFormatError(f"sketch format {header.get('format')}, not {FORMAT}")
            columns = {
                meta["name"]: _column_from(meta, arrays, position)
                for position, meta in enumerate(header["columns"])
            }
            return cls(
                rows=int(header["rows"]),
                kinds=dict(header["kinds"]),
                columns=columns,
                n_bins=int(header["n_bins"]),
                window_size=header["window_size"],
                numeric_columns=list(header["numeric_columns"]),
                mean=arrays["mean"],
                covariance=arrays["covariance"],
                scale=arrays["scale"],
                mmd_sample=arrays["mmd_sample"],
            )
        except SketchFormatError:
            raise
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise SketchFormatError(f"not a reference sketch: {error}") from error


def _column_header(name: str, column: ColumnSketch) -> dict[str, Any]:
    return {
        "name": name,
        "kind": column.kind,
        "rows": column.rows,
        "count": column.count,
        "labels": column.labels,
        "categories": column.categories,
        "mean": column.mean,
        "std": column.std,
        "constant": column.constant,
        "error": column.error,
        "calibrated": column.calibrated,
    }


def _column_from(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], position: int
) -> ColumnSketch:
    return ColumnSketch(
        kind=meta["kind"],
        rows=int(meta["rows"]),
        count=int(meta["count"]),
        bins=arrays[f"{position}.bins"].astype(np.int64),
        labels=list(meta["labels"]),
        sample=arrays[f"{position}.sample"].astype(float),
        edges=arrays[f"{position}.edges"].astype(float),
        categories=list(meta["categories"]),
        mean=float(meta["mean"]),
        std=float(meta["std"]),
        constant=bool(meta["constant"]),
        error=meta["error"],
        calibrated={str(k): float(v) for k, v in meta["calibrated"].items()},
    )


def summarise(
    reference: pd.DataFrame, config: DriftConfig, window_size: int | None = None
) -> ReferenceSketch:
    """`window_size`: the instances a window will hold, for thresholds calibrated on the
    reference (`config.threshold_mode == "calibrated"`)."""
    frame = with_text_names(reference)
    kinds = infer_kinds(frame, config.kinds)
    calibrate = config.threshold_mode == "calibrated" and window_size is not None
    rng = np.random.default_rng(config.seed)
    columns: dict[str, ColumnSketch] = {}
    for name, kind in kinds.items():
        column = summarise_column(frame[name], kind, config.n_bins)
        if calibrate and window_size is not None and column.error is None and column.count:
            column = calibrated(frame[name], column, config, window_size, rng)
        columns[name] = column
    numeric = [name for name, column in columns.items() if _usable_numeric(column)]
    matrix = (
        np.column_stack([numeric_values(frame[name]) for name in numeric])
        if numeric
        else np.empty((len(frame), 0))
    )
    mean = np.array([columns[name].mean for name in numeric])
    scale = np.array([columns[name].std or 1.0 for name in numeric])
    mmd_rows = subsample(matrix, config.mmd_sample, rng)
    return ReferenceSketch(
        rows=len(frame),
        kinds=kinds,
        columns=columns,
        n_bins=config.n_bins,
        window_size=window_size if calibrate else None,
        numeric_columns=numeric,
        mean=mean,
        covariance=_covariance(matrix),
        scale=scale,
        mmd_sample=standardise(mmd_rows, mean, scale),
    )


def _usable_numeric(column: ColumnSketch) -> bool:
    return column.kind == "numeric" and column.error is None and column.count > 0


def _covariance(matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[1] == 0:
        return np.empty((0, 0))
    covariance = pd.DataFrame(matrix).cov(min_periods=2, ddof=1).to_numpy()
    return np.where(np.isfinite(covariance), covariance, 0.0)
