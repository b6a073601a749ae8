"""Corrections over many columns' p-values: one threshold per column, BH as scipy computes it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitor.drift.corrections import correct


@pytest.mark.parametrize("seed", range(20))
def test_fdr_flags_exactly_what_benjamini_hochberg_adjusted_p_values_flag(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p_values = np.concatenate((rng.uniform(0, 0.02, 5), rng.uniform(0, 1, 15)))
    levels = np.full(p_values.size, 0.05)
    thresholds, flagged = correct(p_values, levels, "fdr")
    expected = stats.false_discovery_control(p_values, method="bh") <= 0.05
    assert flagged.tolist() == expected.tolist()
    assert np.unique(thresholds).size == 1
    assert flagged.tolist() == (p_values <= thresholds).tolist()


def test_bonferroni_and_none() -> None:
    p_values, levels = np.array([0.001, 0.02, 0.5]), np.array([0.05, 0.05, 0.1])
    thresholds, flagged = correct(p_values, levels, "bonferroni")
    assert thresholds.tolist() == pytest.approx([0.05 / 3, 0.05 / 3, 0.1 / 3])
    assert flagged.tolist() == [True, False, False]
    thresholds, flagged = correct(p_values, levels, "none")
    assert (thresholds.tolist(), flagged.tolist()) == ([0.05, 0.05, 0.1], [True, True, False])


def test_fdr_with_nothing_passing_holds_each_column_to_its_first_step() -> None:
    thresholds, flagged = correct(np.array([0.3, 0.9]), np.array([0.05, 0.05]), "fdr")
    assert thresholds.tolist() == [0.025, 0.025] and not flagged.any()
