"""Column kinds and the two forms a column's values take for the statistics.

Kinds are inferred from the reference: booleans, strings and other non-numeric values are
categorical; numbers are numeric, except integers (or floats that are all whole numbers, as an
integer column with a missing value reads from a CSV) with at most `MAX_INTEGER_CATEGORIES`
distinct values, which are categorical (a class label, a count of children, a flag).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from monitor.drift.config import ColumnKind

MAX_INTEGER_CATEGORIES = 10


class NotNumeric(ValueError):
    """A column declared numeric holds values that are not numbers."""


def infer_kind(values: pd.Series) -> ColumnKind:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "categorical"
    if pd.api.types.is_complex_dtype(dtype):
        return "categorical"
    present = values.dropna().to_numpy(dtype=float)
    present = present[np.isfinite(present)]
    whole = bool(present.size) and bool(np.all(present == np.round(present)))
    if whole and np.unique(present).size <= MAX_INTEGER_CATEGORIES:
        return "categorical"
    return "numeric"


def infer_kinds(frame: pd.DataFrame, overrides: Mapping[str, ColumnKind]) -> dict[str, ColumnKind]:
    return {
        str(name): overrides.get(str(name)) or infer_kind(frame[name]) for name in frame.columns
    }


def numeric_values(values: pd.Series) -> np.ndarray:
    """Floats, with NaN for a missing value; ±inf counts as missing too (no distance is finite
    with it). Raises `NotNumeric` for a value that is not a number."""
    if pd.api.types.is_bool_dtype(values.dtype) or (
        pd.api.types.is_numeric_dtype(values.dtype)
        and not pd.api.types.is_complex_dtype(values.dtype)
    ):
        array = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        converted = pd.to_numeric(values, errors="coerce")
        bad = int((converted.isna() & values.notna()).sum())
        if bad:
            raise NotNumeric(f"{bad} values are not numbers")
        array = converted.to_numpy(dtype=float, na_value=np.nan)
    finite: np.ndarray = np.where(np.isfinite(array), array, np.nan)
    return finite


def category_label(value: object) -> str:
    """One text form per value, so that 1, 1.0 and "1" (a CSV's integer column with a missing
    value reads as floats) are the same category."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def category_codes(values: pd.Series, categories: Mapping[str, int]) -> tuple[np.ndarray, int]:
    """Each value's index in `categories`; -1 for a missing value, -2 for an unseen one. Also
    the number of distinct unseen values. Hashes the values once (`pd.factorize`), and labels
    only the distinct ones."""
    codes, uniques = _factorize(values)
    mapping = np.array(
        [categories.get(category_label(value), -2) for value in _listed(uniques)], dtype=np.int64
    )
    unseen = int(np.count_nonzero(mapping == -2))
    if mapping.size == 0:
        return np.full(codes.shape, -1, dtype=np.int64), 0
    labelled = np.where(codes >= 0, mapping[np.maximum(codes, 0)], -1)
    return labelled.astype(np.int64, copy=False), unseen


def reference_categories(values: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The reference's categories (most frequent first, ties by label), their counts, and each
    value's code (-1: missing)."""
    codes, uniques = _factorize(values)
    labels = [category_label(value) for value in _listed(uniques)]
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques)).astype(np.int64)
    merged: dict[str, int] = {}
    for label, count in zip(labels, counts.tolist(), strict=True):
        merged[label] = merged.get(label, 0) + count
    ordered = sorted(merged, key=lambda label: (-merged[label], label))
    index = {label: position for position, label in enumerate(ordered)}
    remap = np.array([index[label] for label in labels], dtype=np.int64)
    value_codes = np.where(codes >= 0, remap[np.maximum(codes, 0)] if remap.size else -1, -1)
    return ordered, np.array([merged[label] for label in ordered], dtype=np.int64), value_codes


def _listed(uniques: object) -> list[object]:
    """Python values in one call (item by item is slow for Arrow-backed strings)."""
    tolist = getattr(uniques, "tolist", None)
    return list(tolist()) if callable(tolist) else list(uniques)  # type: ignore[call-overload]


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    try:
        return pd.factorize(values, use_na_sentinel=True)  # type: ignore[no-any-return]
    except TypeError:  # unhashable values (lists, objects from JSON): their text instead
        text = values.map(str, na_action="ignore")
        return pd.factorize(text, use_na_sentinel=True)  # type: ignore[no-any-return]


def with_text_names(frame: pd.DataFrame) -> pd.DataFrame:
    """Column names as text (a CSV's, JSON's and the store's are), the first of duplicates."""
    if not all(isinstance(name, str) for name in frame.columns):
        frame = frame.rename(columns=str)
    if not frame.columns.is_unique:
        frame = frame.loc[:, ~frame.columns.duplicated()]
    return frame
