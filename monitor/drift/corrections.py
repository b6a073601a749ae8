"""Corrections for testing many columns at once, over the p-values of the tests that ran.

- `none`: each p-value against its own threshold (drift when p < threshold);
- `bonferroni`: each threshold divided by the number of tests (p < threshold / n);
- `fdr`: Benjamini-Hochberg. With each p-value over its own threshold, the largest k with the
  k-th smallest of those ratios <= k / n; each threshold becomes threshold * k / n, and drift is
  p <= that (BH's own rule). When none passes, k = 1: no p-value is at or below it.

Each column keeps one threshold, the one it was held to.
"""

from __future__ import annotations

import numpy as np


def correct(
    p_values: np.ndarray, levels: np.ndarray, correction: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each test's corrected threshold, and whether it flags."""
    n = p_values.size
    if correction == "none":
        return levels, p_values < levels
    if correction == "bonferroni":
        return levels / n, p_values < levels / n
    safe = np.where(levels > 0, levels, 1.0)
    ratios = np.where(levels > 0, p_values / safe, np.inf)
    ranked = np.sort(ratios)
    passing = np.flatnonzero(ranked <= np.arange(1, n + 1) / n)
    k = int(passing[-1]) + 1 if passing.size else 1
    thresholds = levels * k / n
    flagged = p_values <= thresholds if passing.size else np.zeros(n, dtype=bool)
    return thresholds, flagged
