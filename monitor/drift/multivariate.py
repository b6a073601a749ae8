"""Maximum mean discrepancy over the numeric columns, with a permutation p-value.

Each numeric column is standardised by the reference's mean and standard deviation (a column
with none keeps its scale), and a missing value becomes the reference mean (0 after
standardising). Each side is a bounded subsample (`DriftConfig.mmd_sample` rows). The kernel is
RBF, k(x, y) = exp(-‖x - y‖² / w), with w the median of the pooled sample's pairwise squared
distances (the median heuristic, w = 2 sigma^2). MMD² is the unbiased estimate. The p-value counts
the permutations of the pooled rows at least as extreme as the observed statistic, with the
observed one included: (1 + k) / (1 + B), never 0.
"""

from __future__ import annotations

import numpy as np

MMD_MIN_SAMPLE = 2  # rows per side: the unbiased estimate needs pairs


def standardise(values: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    standard = (values - mean) / scale
    return np.where(np.isnan(standard), 0.0, standard)


def subsample(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if rows.shape[0] <= size:
        return rows
    return rows[np.sort(rng.choice(rows.shape[0], size, replace=False))]


def mmd_test(
    reference: np.ndarray, current: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(MMD², p-value) of two standardised samples (rows x columns)."""
    pooled = np.vstack((reference, current))
    squared_norms = np.einsum("ij,ij->i", pooled, pooled)
    distances = np.maximum(
        squared_norms[:, None] + squared_norms[None, :] - 2.0 * pooled @ pooled.T, 0.0
    )
    off_diagonal = distances[~np.eye(pooled.shape[0], dtype=bool)]
    width = float(np.median(off_diagonal)) if off_diagonal.size else 0.0
    kernel = np.exp(-distances / width) if width > 0.0 else np.ones_like(distances)
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out k(x_i, x_i)
    n = reference.shape[0]
    # Row 0: the observed split; then each row a random split of the same sizes.
    ranks = rng.random((permutations, pooled.shape[0])).argsort(axis=1).argsort(axis=1)
    labels = np.vstack((np.arange(pooled.shape[0]) < n, ranks < n))
    statistics = _mmd2(kernel, labels, n, pooled.shape[0] - n)
    observed = statistics[0]
    extreme = int(np.count_nonzero(statistics[1:] >= observed))
    return float(observed), (1.0 + extreme) / (1.0 + permutations)


def _mmd2(kernel: np.ndarray, labels: np.ndarray, n: int, m: int) -> np.ndarray:
    """The unbiased MMD² for each row of `labels` (True: in the first sample), all at once."""
    first = labels.astype(float)
    second = 1.0 - first
    first_kernel = first @ kernel
    within_first = np.einsum("bi,bi->b", first_kernel, first)
    across = np.einsum("bi,bi->b", first_kernel, second)
    within_second = np.einsum("bi,bi->b", second @ kernel, second)
    mmd2: np.ndarray = (
        within_first / (n * (n - 1)) + within_second / (m * (m - 1)) - 2.0 * across / (n * m)
    )
    return mmd2
