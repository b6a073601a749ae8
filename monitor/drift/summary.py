"""One column on each side of a comparison: the reference's summary (`ColumnSketch`, built once)
and a window's values prepared against it (`Window`, built per window).

Both carry counts over the same bins, laid out as [value bins ..., missing, unseen]:

- numeric: bins cut at the reference's quantiles (`n_bins` of them, fewer when quantiles tie),
  the outer two open-ended, so every value of a window falls in one;
- categorical: one bin per reference category, most frequent first;
- then one bin for missing values, and one for values the reference never had (categorical
  only; always 0 for numeric columns).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monitor.drift.columns import category_codes, numeric_values, reference_categories
from monitor.drift.config import ColumnKind

# The numeric sample kept per column: longer references keep this many of their order
# statistics, evenly spaced (so the sample's distribution is the reference's quantiles).
SAMPLE_CAP = 100_000


@dataclass(frozen=True, eq=False)
class ColumnSketch:
    kind: ColumnKind
    rows: int  # the reference's rows, missing values included
    count: int  # values present
    bins: np.ndarray  # int64 counts, layout [value bins ..., missing, unseen]
    labels: list[str]  # one per bin
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric: sorted, capped
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric: inner bin edges
    categories: list[str] = field(default_factory=list)  # categorical, most frequent first
    mean: float = 0.0  # numeric, over all values present
    std: float = 0.0  # numeric, ddof=0
    constant: bool = False  # a single distinct value present
    error: str | None = None  # why the column cannot be summarised (e.g. not numbers)
    calibrated: dict[str, float] = field(default_factory=dict)  # statistic -> threshold
    # Derived, not stored: the integral of the sample's ECDF up to each sample point (after a
    # leading 0), and
    # the categories' positions.
    prefix: np.ndarray = field(init=False, repr=False)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", ecdf_integral(self.sample))
        object.__setattr__(self, "index", {c: i for i, c in enumerate(self.categories)})

    @property
    def missing(self) -> int:
        return int(self.bins[-2])

    @property
    def value_bins(self) -> int:
        return int(self.bins.size - 2)


@dataclass(frozen=True, eq=False)
class Window:
    rows: int
    count: int  # values present
    bins: np.ndarray  # counts over the reference's bins
    values: np.ndarray  # numeric: the values present, sorted; categorical: empty
    unseen_values: int = 0  # distinct values the reference never had

    @property
    def missing(self) -> int:
        return int(self.bins[-2])


def ecdf_integral(sample: np.ndarray) -> np.ndarray:
    """[0, H(r_1), ..., H(r_n)]: H(x) = ∫_{-inf}^{x} F, F the ECDF of a sorted sample r."""
    if sample.size == 0:
        return np.zeros(1)
    steps = np.arange(1, sample.size) / sample.size * np.diff(sample)
    return np.concatenate(([0.0, 0.0], np.cumsum(steps)))


def summarise_column(values: pd.Series, kind: ColumnKind, n_bins: int) -> ColumnSketch:
    rows = len(values)
    if kind == "categorical":
        return _summarise_categorical(values)
    try:
        array = numeric_values(values)
    except ValueError as error:
        return ColumnSketch(
            kind, rows, 0, np.array([0, rows, 0]), ["(-inf, inf)", "missing", "unseen"],
            error=str(error),
        )  # fmt: skip
    present = np.sort(array[~np.isnan(array)])
    return numeric_sketch(present, rows - present.size, n_bins)


def numeric_sketch(
    present_sorted: np.ndarray, missing: int, n_bins: int, edges: np.ndarray | None = None
) -> ColumnSketch:
    """From the sorted values present; `edges` given: those bins instead of new quantiles."""
    count = present_sorted.size
    if edges is None:
        edges = quantile_edges(present_sorted, n_bins)
    at_or_below = np.searchsorted(present_sorted, edges, side="right")
    value_bins = np.diff(np.concatenate(([0], at_or_below, [count])))
    bins = np.concatenate((value_bins, [missing, 0])).astype(np.int64)
    return ColumnSketch(
        kind="numeric",
        rows=count + missing,
        count=count,
        bins=bins,
        labels=[*interval_labels(edges), "missing", "unseen"],
        sample=capped(present_sorted),
        edges=edges,
        mean=float(present_sorted.mean()) if count else 0.0,
        std=float(present_sorted.std()) if count else 0.0,
        constant=bool(count) and bool(present_sorted[0] == present_sorted[-1]),
    )


def categorical_sketch(categories: list[str], counts: np.ndarray, missing: int) -> ColumnSketch:
    count = int(counts.sum())
    return ColumnSketch(
        kind="categorical",
        rows=count + missing,
        count=count,
        bins=np.concatenate((counts, [missing, 0])).astype(np.int64),
        labels=[*categories, "missing", "unseen"],
        categories=categories,
        constant=len(categories) == 1,
    )


def _summarise_categorical(values: pd.Series) -> ColumnSketch:
    categories, counts, codes = reference_categories(values)
    return categorical_sketch(categories, counts, int(np.count_nonzero(codes < 0)))


def quantile_edges(present_sorted: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner edges at the reference's quantiles 1/n_bins, ..., (n_bins-1)/n_bins, ties merged."""
    if present_sorted.size == 0 or n_bins < 2:
        return np.empty(0)
    levels = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.unique(np.quantile(present_sorted, levels))


def interval_labels(edges: np.ndarray) -> list[str]:
    bounds = ["-inf", *(f"{edge:.6g}" for edge in edges), "inf"]
    return [
        f"({low}, {high}{')' if high == 'inf' else ']'}" for low, high in itertools.pairwise(bounds)
    ]


def capped(present_sorted: np.ndarray) -> np.ndarray:
    if present_sorted.size <= SAMPLE_CAP:
        return present_sorted
    positions = np.round(np.linspace(0, present_sorted.size - 1, SAMPLE_CAP)).astype(np.int64)
    return present_sorted[positions]


def window_column(values: pd.Series | None, rows: int, reference: ColumnSketch) -> Window:
    """A window's column against the reference's bins; None: the window lacks the column (all
    missing)."""
    if values is None:
        bins = np.zeros(reference.bins.size, dtype=np.int64)
        bins[-2] = rows
        return Window(rows, 0, bins, np.empty(0))
    if reference.kind == "categorical":
        return _categorical_window(values, reference)
    array = numeric_values(values)
    present = np.sort(array[~np.isnan(array)])
    return numeric_window(present, rows - present.size, reference.edges)


def numeric_window(present_sorted: np.ndarray, missing: int, edges: np.ndarray) -> Window:
    value_bins = np.bincount(
        np.searchsorted(edges, present_sorted, side="left"), minlength=edges.size + 1
    )
    bins = np.concatenate((value_bins, [missing, 0])).astype(np.int64)
    return Window(present_sorted.size + missing, present_sorted.size, bins, present_sorted)


def _categorical_window(values: pd.Series, reference: ColumnSketch) -> Window:
    codes, unseen_values = category_codes(values, reference.index)
    known = np.bincount(codes[codes >= 0], minlength=len(reference.categories))
    missing = int(np.count_nonzero(codes == -1))
    unseen = int(np.count_nonzero(codes == -2))
    bins = np.concatenate((known, [missing, unseen])).astype(np.int64)
    return Window(len(values), len(values) - missing, bins, np.empty(0), unseen_values)
