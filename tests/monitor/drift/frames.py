"""Data frames the drift tests share."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "y": rng.exponential(size=rows),
            "c": rng.choice(["red", "green", "blue"], rows),
            "n": rng.integers(0, 3, rows),
        }
    )
    frame.loc[frame.index[::7], "y"] = np.nan
    return frame
