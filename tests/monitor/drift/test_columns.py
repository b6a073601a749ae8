"""Column kinds inferred from the reference, and one text form per category value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.drift.columns import MAX_INTEGER_CATEGORIES, category_label, infer_kind, infer_kinds


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pd.Series(["a", "b", "a"]), "categorical"),
        (pd.Series([True, False, True]), "categorical"),
        (pd.Series(np.arange(MAX_INTEGER_CATEGORIES) % 3), "categorical"),
        (pd.Series(np.arange(MAX_INTEGER_CATEGORIES)), "categorical"),
        (pd.Series(np.arange(MAX_INTEGER_CATEGORIES + 1)), "numeric"),
        (pd.Series([1.0, 2.0, np.nan, 1.0]), "categorical"),  # an integer column read with a gap
        (pd.Series([0.5, 1.5, 0.5]), "numeric"),
        (pd.Series(np.linspace(0, 1, 50)), "numeric"),
        (pd.Series([np.nan, np.nan]), "numeric"),
        (pd.Series([None, "x"]), "categorical"),
    ],
)
def test_kinds_are_inferred_from_type_and_distinct_integers(values: pd.Series, kind: str) -> None:
    assert infer_kind(values) == kind


def test_configured_kinds_override_the_inferred_ones() -> None:
    frame = pd.DataFrame({"code": [1, 2, 3], "score": [0.1, 0.2, 0.3]})
    assert infer_kinds(frame, {"code": "numeric"}) == {"code": "numeric", "score": "numeric"}
    assert infer_kinds(frame, {}) == {"code": "categorical", "score": "numeric"}


@pytest.mark.parametrize(
    ("value", "label"),
    [(1, "1"), (1.0, "1"), (np.int64(1), "1"), ("1", "1"), (True, "True"),
     (np.bool_(False), "False"), (2.5, "2.5"), ("red", "red")],
)  # fmt: skip
def test_a_category_has_one_text_whatever_its_type(value: object, label: str) -> None:
    assert category_label(value) == label
