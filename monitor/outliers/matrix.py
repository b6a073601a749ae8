"""The matrix a detector scores: the reference's numeric columns as float64, missing values
replaced with the reference median."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd


def numeric_columns(reference: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(used, ignored): the numeric columns that hold at least one finite value, and the rest.

    Booleans count as categorical, not numeric; so do complex numbers.
    """
    used: list[str] = []
    ignored: list[str] = []
    for name, column in _unique_columns(reference).items():
        numeric = _is_numeric(column.dtype) and bool(np.isfinite(_floats(column)).any())
        (used if numeric else ignored).append(str(name))
    return used, ignored


def to_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """(rows, columns) float64; NaN where a value is missing, not a finite number, or where
    the whole column is absent. Columns the detector does not know are left out."""
    by_name = {str(name): column for name, column in _unique_columns(frame).items()}
    x = np.full((len(frame), len(columns)), np.nan)
    for j, name in enumerate(columns):
        if name in by_name:
            x[:, j] = _floats(by_name[name])
    x[~np.isfinite(x)] = np.nan
    return x


def medians(x: np.ndarray) -> np.ndarray:
    """Per-column median of the present values; 0 for a column with none."""
    result = np.zeros(x.shape[1])
    present = ~np.isnan(x).all(axis=0)
    if present.any():
        result[present] = np.nanmedian(x[:, present], axis=0)
    return result


def impute(x: np.ndarray, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x with every NaN replaced by its column's `fill`, and how many were replaced per row."""
    missing = np.isnan(x)
    return np.where(missing, fill, x), missing.sum(axis=1)


def _unique_columns(frame: pd.DataFrame) -> dict[Hashable, pd.Series]:
    """Columns by name; of a repeated name, the first."""
    columns: dict[Hashable, pd.Series] = {}
    for position, name in enumerate(frame.columns):
        if name not in columns:
            columns[name] = frame.iloc[:, position]
    return columns


def _is_numeric(dtype: Any) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def _floats(column: pd.Series) -> np.ndarray:
    """The column as float64, NaN where a value is missing or not a number."""
    if _is_numeric(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
        try:
            numbers = pd.to_numeric(column, errors="coerce")
            if _is_numeric(numbers.dtype):
                return np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):  # e.g. lists or dicts among the values
            pass
    # Anything else (dates, complex numbers, categories, mixed objects), value by value.
    return np.array([_float(value) for value in column], dtype=np.float64)


def _float(value: Any) -> float:
    if not isinstance(value, int | float | np.number | np.bool_):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
