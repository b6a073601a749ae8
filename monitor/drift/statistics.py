"""The drift statistics, each declared once in `STATISTICS`: its name, whether it gives a p-value
(drift when p < threshold) or a distance (drift when distance >= threshold), the column kinds it
applies to, its default threshold, the fewest values present it needs on each side, and the
function over a reference `ColumnSketch` and a `Window`.

p-value tests (default threshold 0.05):

- `ks`: two-sample Kolmogorov-Smirnov, equal to `scipy.stats.ks_2samp` (two-sided, method
  auto). Up to 10,000 values a side scipy's exact method is called; above, D comes from the
  reference's sorted sample by binary search (O(n_cur log n_ref)) and the p-value is the
  asymptotic `kstwo.sf(D, round(n·m/(n+m)))`, as scipy does.
- `chisquare`: Pearson's chi-squared on the 2xK contingency table of reference and window counts
  over the reference's categories plus one column for unseen values (missing values apart;
  categories absent from both dropped), no continuity correction, K-1 degrees of freedom:
  `scipy.stats.chi2_contingency(table, correction=False)`. Not goodness-of-fit: the reference
  is a sample too, and an unseen category does not make the statistic infinite.
- `z`: pooled two-proportion z-test, two-sided, on the share of the reference's most frequent
  category among the values present.
- `cramer_von_mises`: `scipy.stats.cramervonmises_2samp` (exact up to 20 values a side).
- `anderson`: k-sample Anderson-Darling, `scipy.stats.anderson_ksamp` (midrank); scipy caps its
  p-value to [0.001, 0.25] (interpolated from tabulated critical values), and says so in a
  warning that is silenced here.

Distances (default threshold 0.1) over the reference's bins (see `summary`):

- `psi`: population stability index Σ (c - r)·ln(c / r);
- `kl_div`: Kullback-Leibler KL(reference ‖ window) = Σ r·ln(r / c), natural log;
- `jensenshannon`: the Jensen-Shannon *distance* (square root of the divergence) with log base
  2, so in [0, 1]: `scipy.spatial.distance.jensenshannon(r, c, base=2)`;
- `hellinger`: √(Σ (√r - √c)²) / √2, in [0, 1];
- `wasserstein` (numeric, not binned): `scipy.stats.wasserstein_distance(ref, cur)` divided by
  `max(std(ref), 0.001)` (ddof 0), so that it reads in reference standard deviations.

Shares r and c are counts over all rows, missing values in their own bin. Bins empty on both
sides are dropped; PSI and KL, infinite with an empty bin on one side, replace a zero share by
`EPSILON` and renormalise; JS and Hellinger are finite with zeros and use the shares as they are.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]  # scipy ships no type information

from monitor.drift.config import ColumnKind
from monitor.drift.summary import ColumnSketch, Window, summarise_column, window_column

EPSILON = 1e-4
KS_EXACT_MAX = 10_000  # scipy's `ks_2samp` is exact (method auto) up to this many values a side
WASSERSTEIN_MIN_STD = 0.001
# The automatic choice: above this many reference values, distances (a p-value flags any
# difference, however small, at that size).
LARGE_REFERENCE = 1000

StatisticKind = Literal["p-value", "distance"]


class Outcome(NamedTuple):
    statistic: float
    p_value: float | None  # p-value tests only


@dataclass(frozen=True)
class Statistic:
    name: str
    kind: StatisticKind
    column_kinds: frozenset[ColumnKind]
    default_threshold: float
    min_sample: int  # values present needed on each side
    function: Callable[[ColumnSketch, Window], Outcome]
    title: str

    def drifted(self, value: float, threshold: float) -> bool:
        return value < threshold if self.kind == "p-value" else value >= threshold


# --- p-value tests ---------------------------------------------------------------------------


def kolmogorov_smirnov(reference: ColumnSketch, window: Window) -> Outcome:
    sample, values = reference.sample, window.values
    n, m = sample.size, values.size
    if max(n, m) <= KS_EXACT_MAX:
        with warnings.catch_warnings():  # scipy falls back to asymp itself, with a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ks_2samp(sample, values)
        return Outcome(float(result.statistic), float(result.pvalue))
    d = ks_distance(sample, values)
    big, small = max(float(n), float(m)), min(float(n), float(m))
    p = float(np.clip(stats.kstwo.sf(d, np.round(big * small / (big + small))), 0.0, 1.0))
    return Outcome(d, p)


def ks_distance(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """sup |F_ref - F_cur|. Between two distinct current values F_cur is flat and F_ref rises,
    so the supremum is reached at a current value u, either at u (right limits) or just below
    it (left limits): four binary searches over the distinct current values."""
    n, m = reference_sorted.size, current_sorted.size
    starts = np.flatnonzero(np.concatenate(([True], current_sorted[1:] != current_sorted[:-1])))
    distinct = current_sorted[starts]
    below = starts / m  # F_cur(u-)
    at = np.concatenate((starts[1:], [m])) / m  # F_cur(u)
    ref_below = np.searchsorted(reference_sorted, distinct, side="left") / n
    ref_at = np.searchsorted(reference_sorted, distinct, side="right") / n
    return float(max(np.max(np.abs(ref_at - at)), np.max(np.abs(ref_below - below))))


def chi_squared(reference: ColumnSketch, window: Window) -> Outcome:
    table = np.vstack((_values_only(reference.bins), _values_only(window.bins))).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return Outcome(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return Outcome(statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1)))


def _values_only(bins: np.ndarray) -> np.ndarray:
    """Value bins and the unseen bin, without the missing bin."""
    return np.concatenate((bins[:-2], bins[-1:]))


def two_proportion_z(hits_a: int, size_a: int, hits_b: int, size_b: int) -> Outcome:
    """Pooled two-sided z-test of hits_a/size_a against hits_b/size_b; z = 0, p = 1 when the
    pooled share is 0 or 1 (nothing varies) or a side is empty."""
    if size_a == 0 or size_b == 0:
        return Outcome(0.0, 1.0)
    pooled = (hits_a + hits_b) / (size_a + size_b)
    variance = pooled * (1.0 - pooled) * (1.0 / size_a + 1.0 / size_b)
    if variance <= 0.0:
        return Outcome(0.0, 1.0)
    z = (hits_a / size_a - hits_b / size_b) / math.sqrt(variance)
    return Outcome(z, float(2.0 * stats.norm.sf(abs(z))))


def z_test(reference: ColumnSketch, window: Window) -> Outcome:
    return two_proportion_z(
        int(reference.bins[0]), reference.count, int(window.bins[0]), window.count
    )


def cramer_von_mises(reference: ColumnSketch, window: Window) -> Outcome:
    result = stats.cramervonmises_2samp(reference.sample, window.values)
    return Outcome(float(result.statistic), float(result.pvalue))


def anderson_darling(reference: ColumnSketch, window: Window) -> Outcome:
    with warnings.catch_warnings():  # "p-value capped": documented above
        warnings.simplefilter("ignore", UserWarning)
        result = stats.anderson_ksamp([reference.sample, window.values], variant="midrank")
    return Outcome(float(result.statistic), float(result.pvalue))


# --- distances -------------------------------------------------------------------------------


def shares(reference: ColumnSketch, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' shares over the bins that are not empty on both."""
    kept = (reference.bins > 0) | (window.bins > 0)
    ref, cur = reference.bins[kept].astype(float), window.bins[kept].astype(float)
    return ref / ref.sum(), cur / cur.sum()


def smoothed(share: np.ndarray) -> np.ndarray:
    floored: np.ndarray = np.where(share > 0.0, share, EPSILON)
    renormalised: np.ndarray = floored / floored.sum()
    return renormalised


def population_stability(reference: ColumnSketch, window: Window) -> Outcome:
    ref, cur = (smoothed(share) for share in shares(reference, window))
    return Outcome(float(np.sum((cur - ref) * np.log(cur / ref))), None)


def kullback_leibler(reference: ColumnSketch, window: Window) -> Outcome:
    ref, cur = (smoothed(share) for share in shares(reference, window))
    return Outcome(float(np.sum(ref * np.log(ref / cur))), None)


def jensen_shannon(reference: ColumnSketch, window: Window) -> Outcome:
    ref, cur = shares(reference, window)
    middle = (ref + cur) / 2.0
    divergence = 0.5 * (_relative_entropy_base2(ref, middle) + _relative_entropy_base2(cur, middle))
    return Outcome(math.sqrt(max(divergence, 0.0)), None)


def _relative_entropy_base2(share: np.ndarray, middle: np.ndarray) -> float:
    present = share > 0.0  # 0·log 0 = 0; middle > 0 wherever share > 0
    return float(np.sum(share[present] * np.log2(share[present] / middle[present])))


def hellinger(reference: ColumnSketch, window: Window) -> Outcome:
    ref, cur = shares(reference, window)
    return Outcome(float(np.sqrt(np.sum((np.sqrt(ref) - np.sqrt(cur)) ** 2)) / math.sqrt(2)), None)


def normalised_wasserstein(reference: ColumnSketch, window: Window) -> Outcome:
    distance = wasserstein(reference.sample, reference.prefix, window.values)
    return Outcome(distance / max(reference.std, WASSERSTEIN_MIN_STD), None)


def wasserstein(
    reference_sorted: np.ndarray, prefix: np.ndarray, current_sorted: np.ndarray
) -> float:
    """∫ |F_ref - F_cur| dx in O(m log n), from the reference's ECDF integral H (`prefix`).

    |a - b| = (a - b) + 2·max(b - a, 0) and ∫ (F_ref - F_cur) = mean_cur - mean_ref, so only
    the stretches where F_cur exceeds F_ref need integrating. F_cur is a constant t = j/m on
    [c_j, c_{j+1}] (the last piece runs to the larger of both maxima), and F_ref < t exactly
    below the reference's ceil(t·n)-th value q: the piece adds t·(min(b, q) - a) -
    (H(min(b, q)) - H(a)) when a < q, nothing otherwise. mean_ref = max(ref) - H(max(ref)).
    """
    n, m = reference_sorted.size, current_sorted.size
    top, area = float(reference_sorted[-1]), float(prefix[-1])
    at = _integral_at(reference_sorted, prefix, current_sorted)
    level, rank = _levels(n, m)
    quantile = reference_sorted[rank - 1]
    piece = np.flatnonzero(current_sorted < quantile)  # where F_cur > F_ref somewhere
    excess = 0.0
    if piece.size:
        end = max(top, float(current_sorted[-1]))
        ends = np.append(current_sorted[1:], end)[piece]
        at_ends = np.append(at[1:], area + end - top)[piece]
        cut = ends < quantile[piece]
        upper = np.where(cut, ends, quantile[piece])
        at_upper = np.where(cut, at_ends, prefix[rank[piece]])
        rise = level[piece] * (upper - current_sorted[piece]) - (at_upper - at[piece])
        excess = float(np.sum(rise))
    return max(float(current_sorted.mean()) - (top - area) + 2.0 * excess, 0.0)


@functools.lru_cache(maxsize=16)
def _levels(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """j/m and ceil(j·n/m) (exact, in integers) for j = 1..m; windows repeat their size."""
    steps = np.arange(1, m + 1, dtype=np.int64)
    level, rank = steps / m, (steps * n + m - 1) // m
    level.flags.writeable = rank.flags.writeable = False
    return level, rank


def _integral_at(
    reference_sorted: np.ndarray, prefix: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """H(x) = ∫_{-inf}^{x} F_ref: 0 below the reference, linear between its values (H(r_i) =
    prefix[i]: one interpolation does the search and the arithmetic in a single pass), and
    rising with slope 1 above its maximum."""
    top = float(reference_sorted[-1])
    at: np.ndarray = np.interp(points, reference_sorted, prefix[1:], left=0.0)
    above = points > top
    if above.any():
        at[above] += points[above] - top
    return at


# --- the registry ----------------------------------------------------------------------------

NUMERIC: frozenset[ColumnKind] = frozenset({"numeric"})
CATEGORICAL: frozenset[ColumnKind] = frozenset({"categorical"})
BOTH: frozenset[ColumnKind] = frozenset({"numeric", "categorical"})

STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("ks", "p-value", NUMERIC, 0.05, 1, kolmogorov_smirnov, "Kolmogorov-Smirnov"),
        Statistic("chisquare", "p-value", CATEGORICAL, 0.05, 1, chi_squared, "chi-squared"),
        Statistic("z", "p-value", CATEGORICAL, 0.05, 1, z_test, "two-proportion z-test"),
        Statistic(
            "cramer_von_mises", "p-value", NUMERIC, 0.05, 2, cramer_von_mises, "Cramér-von Mises"
        ),
        Statistic("anderson", "p-value", NUMERIC, 0.05, 2, anderson_darling, "Anderson-Darling"),
        Statistic("psi", "distance", BOTH, 0.1, 1, population_stability, "PSI"),
        Statistic("kl_div", "distance", BOTH, 0.1, 1, kullback_leibler, "Kullback-Leibler"),
        Statistic("jensenshannon", "distance", BOTH, 0.1, 1, jensen_shannon, "Jensen-Shannon"),
        Statistic("hellinger", "distance", BOTH, 0.1, 1, hellinger, "Hellinger"),
        Statistic(
            "wasserstein",
            "distance",
            NUMERIC,
            0.1,
            1,
            normalised_wasserstein,
            "Wasserstein (normalised)",
        ),
    )
}


def automatic(reference: ColumnSketch) -> Statistic:
    """Numeric: KS up to `LARGE_REFERENCE` reference values, else normalised Wasserstein.
    Categorical: above `LARGE_REFERENCE` values Jensen-Shannon; else the z-test with at most two
    reference categories, chi-squared with more."""
    large = reference.count > LARGE_REFERENCE
    if reference.kind == "numeric":
        return STATISTICS["wasserstein" if large else "ks"]
    if large:
        return STATISTICS["jensenshannon"]
    return STATISTICS["z" if len(reference.categories) <= 2 else "chisquare"]


def distances_for(kind: ColumnKind) -> list[Statistic]:
    return [s for s in STATISTICS.values() if s.kind == "distance" and kind in s.column_kinds]


def evaluate(
    name: str,
    reference: np.ndarray | pd.Series | list[object],
    current: np.ndarray | pd.Series | list[object],
    kind: ColumnKind = "numeric",
    n_bins: int = 10,
) -> Outcome:
    """One statistic on two raw samples (NaN or None: missing), without a report: for
    comparisons with other libraries. Raises `ValueError` when the statistic does not apply
    to `kind` or a side has fewer values than it needs."""
    statistic = STATISTICS[name]
    if kind not in statistic.column_kinds:
        raise ValueError(f"{name} applies to {' or '.join(sorted(statistic.column_kinds))} columns")
    sketch = summarise_column(pd.Series(reference), kind, n_bins)
    if sketch.error is not None:
        raise ValueError(sketch.error)
    window = window_column(pd.Series(current), len(current), sketch)
    if min(sketch.count, window.count) < statistic.min_sample:
        raise ValueError(f"{name} needs {statistic.min_sample} values present on each side")
    return statistic.function(sketch, window)
