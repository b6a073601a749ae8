"""Every statistic equals scipy's, or its formula computed here independently, to 1e-9: on
random data with ties, constant columns, missing values, single categories, and sizes 1, 2 and
100,000."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import spatial, stats

from monitor.drift import statistics
from monitor.drift.statistics import STATISTICS, ks_distance, wasserstein
from monitor.drift.summary import (
    ColumnSketch,
    Window,
    ecdf_integral,
    summarise_column,
    window_column,
)

TOLERANCE = {"rel": 1e-9, "abs": 1e-12}
N_BINS = 10


def sides(
    reference: np.ndarray, current: np.ndarray, kind: str = "numeric"
) -> tuple[ColumnSketch, Window]:
    sketch = summarise_column(pd.Series(reference), kind, N_BINS)  # type: ignore[arg-type]
    return sketch, window_column(pd.Series(current), len(current), sketch)


def ecdf(sample: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.array([np.count_nonzero(sample <= x) for x in at]) / sample.size


def present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def numeric_case(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(reference, current): rounded to one decimal so that values tie."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    sizes = {"1v1": (1, 1), "1v2": (1, 2), "2v2": (2, 2), "2v5": (2, 5), "small": (40, 25),
             "mid": (3000, 1200), "large": (100_000, 20_000)}  # fmt: skip
    if name in sizes:
        n, m = sizes[name]
        return np.round(rng.normal(0, 1, n), 1), np.round(rng.normal(0.2, 1.3, m), 1)
    if name == "constant_reference":
        return np.full(50, 3.0), np.round(rng.normal(3, 1, 40), 1)
    if name == "missing":
        reference, current = np.round(rng.normal(0, 1, 300), 1), np.round(rng.normal(0, 1, 200), 1)
        reference[rng.random(300) < 0.2] = np.nan
        current[rng.random(200) < 0.4] = np.nan
        return reference, current
    raise KeyError(name)


NUMERIC_CASES = [
    "1v1",
    "1v2",
    "2v2",
    "2v5",
    "small",
    "mid",
    "large",
    "constant_reference",
    "missing",
]


@pytest.mark.parametrize("case", NUMERIC_CASES)
def test_ks_equals_scipys(case: str) -> None:
    reference, current = numeric_case(case)
    outcome = STATISTICS["ks"].function(*sides(reference, current))
    expected = stats.ks_2samp(present(reference), present(current))
    assert outcome.statistic == pytest.approx(expected.statistic, **TOLERANCE)
    assert outcome.p_value == pytest.approx(expected.pvalue, **TOLERANCE)


def test_ks_above_scipys_exact_limit_takes_the_asymptotic_p_value() -> None:
    reference, current = numeric_case("large")
    outcome = STATISTICS["ks"].function(*sides(reference, current))
    d = stats.ks_2samp(reference, current).statistic
    n, m = reference.size, current.size
    assert outcome.p_value == pytest.approx(stats.kstwo.sf(d, round(n * m / (n + m))), **TOLERANCE)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    st.lists(st.integers(-5, 5), min_size=1, max_size=40),
)
def test_ks_distance_by_binary_search_equals_scipys(
    reference: list[int], current: list[int]
) -> None:
    r, c = np.sort(np.array(reference, float)), np.sort(np.array(current, float))
    # The definition: sup |F_ref - F_cur| over every value of both samples.
    every = np.concatenate((r, c))
    expected = np.max(np.abs(ecdf(r, every) - ecdf(c, every)))
    assert ks_distance(r, c) == pytest.approx(expected, **TOLERANCE)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(-5, 5).map(lambda v: v / 2), min_size=1, max_size=40),
    st.lists(st.integers(-8, 8).map(lambda v: v / 3), min_size=1, max_size=40),
)
def test_wasserstein_from_the_ecdf_integral_equals_scipys(
    reference: list[float], current: list[float]
) -> None:
    r, c = np.sort(np.array(reference)), np.sort(np.array(current))
    expected = stats.wasserstein_distance(r, c)
    assert wasserstein(r, ecdf_integral(r), c) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("case", NUMERIC_CASES)
def test_normalised_wasserstein_equals_scipys_over_the_reference_std(case: str) -> None:
    reference, current = numeric_case(case)
    outcome = STATISTICS["wasserstein"].function(*sides(reference, current))
    r, c = present(reference), present(current)
    expected = stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)
    assert outcome.statistic == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert outcome.p_value is None


@pytest.mark.parametrize("case", [c for c in NUMERIC_CASES if c not in ("1v1", "1v2")])
def test_cramer_von_mises_equals_scipys(case: str) -> None:
    reference, current = numeric_case(case)
    outcome = STATISTICS["cramer_von_mises"].function(*sides(reference, current))
    expected = stats.cramervonmises_2samp(present(reference), present(current))
    assert outcome.statistic == pytest.approx(expected.statistic, **TOLERANCE)
    assert outcome.p_value == pytest.approx(expected.pvalue, **TOLERANCE)


@pytest.mark.parametrize(
    "case", ["2v2", "2v5", "small", "mid", "large", "constant_reference", "missing"]
)
def test_anderson_darling_equals_scipys_capped_p_value(case: str) -> None:
    reference, current = numeric_case(case)
    outcome = STATISTICS["anderson"].function(*sides(reference, current))
    with warnings.catch_warnings():  # scipy's "p-value capped/floored" warnings
        warnings.simplefilter("ignore", UserWarning)
        expected = stats.anderson_ksamp([present(reference), present(current)], variant="midrank")
    assert outcome.statistic == pytest.approx(expected.statistic, **TOLERANCE)
    assert outcome.p_value == pytest.approx(expected.pvalue, **TOLERANCE)
    assert 0.001 <= outcome.p_value <= 0.25


# --- binned distances, computed here from the definitions ------------------------------------


def bin_counts(reference: np.ndarray, values: np.ndarray, kind: str) -> np.ndarray:
    """[value bins ..., missing, unseen], built independently of the module."""
    if kind == "numeric":
        r = present(reference)
        edges = np.unique(np.quantile(r, [i / N_BINS for i in range(1, N_BINS)]))
        v = present(values)
        bins = (v[:, None] > edges[None, :]).sum(axis=1)  # how many edges lie below
        counts = [int(np.sum(bins == b)) for b in range(edges.size + 1)]
        return np.array([*counts, int(np.isnan(values).sum()), 0])
    labels = pd.Series(reference).dropna()
    order = sorted(set(labels), key=lambda c: (-int((labels == c).sum()), c))
    series = pd.Series(values)
    counts = [int((series == c).sum()) for c in order]
    missing = int(series.isna().sum())
    return np.array([*counts, missing, len(values) - missing - sum(counts)])


def smoothed_shares(r_counts: np.ndarray, c_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kept = (r_counts + c_counts) > 0
    result = []
    for counts in (r_counts[kept], c_counts[kept]):
        share = counts / counts.sum()
        share = np.where(share == 0, 1e-4, share)
        result.append(share / share.sum())
    return result[0], result[1]


def raw_shares(r_counts: np.ndarray, c_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return r_counts / r_counts.sum(), c_counts / c_counts.sum()


def categorical_case(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    letters = np.array(list("abcde"), dtype=object)
    if name == "random":
        return rng.choice(letters, 400, p=[0.4, 0.3, 0.15, 0.1, 0.05]), rng.choice(letters, 250)
    if name == "unseen":
        return rng.choice(letters[:3], 300), rng.choice(letters, 100)
    if name == "single":
        return np.array(["a"] * 30, dtype=object), rng.choice(letters[:2], 20)
    if name == "missing":
        reference, current = rng.choice(letters, 300), rng.choice(letters, 120)
        reference[rng.random(300) < 0.1] = None
        current[rng.random(120) < 0.5] = None
        return reference, current
    if name == "1v1":
        return np.array(["a"], dtype=object), np.array(["b"], dtype=object)
    if name == "2v2":
        return np.array(["a", "b"], dtype=object), np.array(["b", "b"], dtype=object)
    raise KeyError(name)


CATEGORICAL_CASES = ["random", "unseen", "single", "missing", "1v1", "2v2"]
BINNED_CASES = [("numeric", c) for c in NUMERIC_CASES] + [
    ("categorical", c) for c in CATEGORICAL_CASES
]


def binned_case(kind: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    reference, current = numeric_case(name) if kind == "numeric" else categorical_case(name)
    return (
        reference,
        current,
        bin_counts(reference, reference, kind),
        bin_counts(reference, current, kind),
    )


@pytest.mark.parametrize(("kind", "case"), BINNED_CASES)
def test_bins_are_the_reference_quantiles_with_missing_and_unseen_bins(
    kind: str, case: str
) -> None:
    reference, current, r_counts, c_counts = binned_case(kind, case)
    sketch, window = sides(reference, current, kind)
    assert sketch.bins.tolist() == r_counts.tolist()
    assert window.bins.tolist() == c_counts.tolist()


@pytest.mark.parametrize(("kind", "case"), BINNED_CASES)
def test_psi_equals_its_formula(kind: str, case: str) -> None:
    reference, current, r_counts, c_counts = binned_case(kind, case)
    r, c = smoothed_shares(r_counts, c_counts)
    expected = sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True))
    outcome = STATISTICS["psi"].function(*sides(reference, current, kind))
    assert outcome.statistic == pytest.approx(expected, **TOLERANCE)


@pytest.mark.parametrize(("kind", "case"), BINNED_CASES)
def test_kl_equals_scipys_entropy_of_reference_against_window(kind: str, case: str) -> None:
    reference, current, r_counts, c_counts = binned_case(kind, case)
    outcome = STATISTICS["kl_div"].function(*sides(reference, current, kind))
    assert outcome.statistic == pytest.approx(
        stats.entropy(*smoothed_shares(r_counts, c_counts)), **TOLERANCE
    )


@pytest.mark.parametrize(("kind", "case"), BINNED_CASES)
def test_jensen_shannon_equals_scipys_distance_in_base_2(kind: str, case: str) -> None:
    reference, current, r_counts, c_counts = binned_case(kind, case)
    outcome = STATISTICS["jensenshannon"].function(*sides(reference, current, kind))
    expected = spatial.distance.jensenshannon(*raw_shares(r_counts, c_counts), base=2)
    assert outcome.statistic == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert 0.0 <= outcome.statistic <= 1.0


@pytest.mark.parametrize(("kind", "case"), BINNED_CASES)
def test_hellinger_equals_its_formula(kind: str, case: str) -> None:
    reference, current, r_counts, c_counts = binned_case(kind, case)
    r, c = raw_shares(r_counts, c_counts)
    expected = math.sqrt(max(1.0 - float(np.sum(np.sqrt(r * c))), 0.0))
    outcome = STATISTICS["hellinger"].function(*sides(reference, current, kind))
    assert outcome.statistic == pytest.approx(expected, rel=1e-9, abs=1e-7)


@pytest.mark.parametrize("case", CATEGORICAL_CASES)
def test_chi_squared_equals_scipys_contingency_test(case: str) -> None:
    reference, current = categorical_case(case)
    r_counts = bin_counts(reference, reference, "categorical")
    c_counts = bin_counts(reference, current, "categorical")
    table = np.vstack((np.delete(r_counts, -2), np.delete(c_counts, -2)))
    table = table[:, table.sum(axis=0) > 0]
    outcome = STATISTICS["chisquare"].function(*sides(reference, current, "categorical"))
    if table.shape[1] < 2:  # one category on both sides: nothing to compare
        assert (outcome.statistic, outcome.p_value) == (0.0, 1.0)
        return
    expected = stats.chi2_contingency(table, correction=False)
    assert outcome.statistic == pytest.approx(expected.statistic, **TOLERANCE)
    assert outcome.p_value == pytest.approx(expected.pvalue, **TOLERANCE)


@pytest.mark.parametrize("case", CATEGORICAL_CASES)
def test_z_test_equals_the_pooled_two_proportion_formula(case: str) -> None:
    reference, current = categorical_case(case)
    r, c = pd.Series(reference).dropna(), pd.Series(current).dropna()
    top = r.value_counts().sort_index().sort_values(ascending=False, kind="stable").index[0]
    x1, x2, n1, n2 = int((r == top).sum()), int((c == top).sum()), len(r), len(c)
    pooled = (x1 + x2) / (n1 + n2)
    outcome = STATISTICS["z"].function(*sides(reference, current, "categorical"))
    if pooled in (0.0, 1.0):
        assert (outcome.statistic, outcome.p_value) == (0.0, 1.0)
        return
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert outcome.statistic == pytest.approx(z, **TOLERANCE)
    assert outcome.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), **TOLERANCE)


def test_registry_declares_each_statistic_once_with_its_kind_and_threshold() -> None:
    assert set(STATISTICS) == {
        "ks", "chisquare", "z", "cramer_von_mises", "anderson",
        "psi", "kl_div", "jensenshannon", "hellinger", "wasserstein",
    }  # fmt: skip
    for name, statistic in STATISTICS.items():
        assert statistic.name == name
        assert statistic.default_threshold == (0.05 if statistic.kind == "p-value" else 0.1)
        assert statistic.min_sample >= 1 and statistic.column_kinds


@pytest.mark.parametrize(
    ("kind", "count", "categories", "expected"),
    [
        ("numeric", 1000, 0, "ks"),
        ("numeric", 1001, 0, "wasserstein"),
        ("categorical", 1000, 2, "z"),
        ("categorical", 1000, 1, "z"),
        ("categorical", 1000, 3, "chisquare"),
        ("categorical", 1001, 2, "jensenshannon"),
    ],
)
def test_automatic_choice_by_kind_size_and_categories(
    kind: str, count: int, categories: int, expected: str
) -> None:
    if kind == "numeric":
        values = pd.Series(np.arange(count, dtype=float))
    else:
        values = pd.Series([f"c{i % categories}" for i in range(count)])
    sketch = summarise_column(values, kind, N_BINS)  # type: ignore[arg-type]
    assert statistics.automatic(sketch).name == expected


def test_evaluate_runs_one_statistic_on_raw_samples() -> None:
    reference, current = numeric_case("mid")
    direct = statistics.evaluate("ks", reference, current)
    expected = stats.ks_2samp(reference, current)
    assert (direct.statistic, direct.p_value) == pytest.approx(
        (expected.statistic, expected.pvalue)
    )
    letters = statistics.evaluate("chisquare", ["a", "b", "b"], ["a", "a", "c"], "categorical")
    assert letters.p_value is not None and 0.0 < letters.p_value < 1.0
    with pytest.raises(ValueError, match="chisquare applies to categorical columns"):
        statistics.evaluate("chisquare", reference, current)
    with pytest.raises(ValueError, match="anderson needs 2 values"):
        statistics.evaluate("anderson", [1.0, 2.0], [np.nan, 3.0])
