"""Known shifts in real data (scikit-learn's wine and breast-cancer sets): exactly the shifted
columns are flagged, with the automatic tests and the default Bonferroni correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from monitor.drift.config import DriftConfig
from monitor.drift.report import compare
from monitor.drift.sketch import summarise

SHIFT_IN_STDS = 1.5


def halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    middle = len(frame) // 2
    return (
        frame.iloc[order[:middle]].reset_index(drop=True),
        frame.iloc[order[middle:]].reset_index(drop=True),
    )


@pytest.mark.parametrize(
    ("load", "shifted"),
    [
        (load_wine, ["alcohol", "magnesium", "hue"]),
        (load_breast_cancer, ["mean radius", "worst texture", "area error", "mean symmetry"]),
    ],
)
def test_exactly_the_shifted_columns_are_flagged(load: object, shifted: list[str]) -> None:
    frame = load(as_frame=True).frame.rename(columns={"target": "prediction"})  # type: ignore[operator]
    reference, current = halves(frame, seed=0)
    for column in shifted:
        current[column] += SHIFT_IN_STDS * reference[column].std()
    config = DriftConfig()
    report = compare(summarise(reference, config), current, config)
    assert sorted(f.column for f in report.features if f.drift) == sorted(shifted)
    assert {f.test for f in report.features if f.kind == "numeric"} == {"ks"}
    assert report.valid == frame.shape[1]


def test_a_shifted_class_balance_in_the_prediction_is_flagged_alone() -> None:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "prediction"})
    reference, current = halves(frame, seed=1)
    flipped = current.index[current["prediction"] == 1][:80]  # benign -> malignant
    current.loc[flipped, "prediction"] = 0
    report = compare(summarise(reference, DriftConfig()), current, DriftConfig())
    prediction = next(f for f in report.features if f.column == "prediction")
    assert (prediction.kind, prediction.test) == ("categorical", "z")
    assert [f.column for f in report.features if f.drift] == ["prediction"]
