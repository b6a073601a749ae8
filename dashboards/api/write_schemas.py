"""Request and response models of the writes (references, feedback) and of performance."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

MAX_FEEDBACK_PER_CALL = 10_000
MAX_LABEL_CHARS = 1000
MAX_ID_CHARS = 1000
_INT64 = 2**63


def _storable(value: str | int | float) -> str | int | float:
    """Integers within 64 bits and finite numbers: what both databases and numpy hold."""
    if isinstance(value, int) and not -_INT64 < value < _INT64:
        raise ValueError("an integer label must fit in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a label must be a finite number")
    return value


Label = Annotated[
    Annotated[StrictStr, Field(max_length=MAX_LABEL_CHARS)] | StrictInt | StrictFloat,
    AfterValidator(_storable),
]


class FeedbackItem(BaseModel):
    """The ground truth of one instance: a class (string or integer) or a number."""

    model_config = ConfigDict(extra="forbid")

    # No NUL character: no stored call has one, and PostgreSQL's text cannot hold it.
    request_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[^\x00]*$")
    row_index: int = Field(0, ge=0, lt=2**31)
    label: Label


FeedbackBody = (
    FeedbackItem
    | Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_FEEDBACK_PER_CALL)]
)


class FeedbackStored(BaseModel):
    received: int  # labels in the call
    stored: int  # instances labelled (a later label in the call replaced an earlier one)


class PinnedRange(BaseModel):
    """Stored instances in [start, end) to pin as the reference; naive times are UTC."""

    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime


class ReferenceVersion(BaseModel):
    """A reference version as stored: pending until the monitor summarises it, before the
    model's next window."""

    model: str
    version: int
    source: str
    origin: Literal["monitor", "dashboard"]
    rows: int
    columns: list[str]
    created_at: datetime | None
    pending: bool


class Confusion(BaseModel):
    labels: list[str]  # the classes, as text
    matrix: list[list[int]]  # rows: the label, columns: the prediction


class Figures(BaseModel):
    """`labelled`, and for a classifier accuracy, macro precision, recall and F1 and the
    confusion counts (none over 50 classes); for a regressor MAE, RMSE and bias."""

    labelled: int
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    confusion: Confusion | None = None
    mae: float | None = None
    rmse: float | None = None
    bias: float | None = None


class WindowFigures(Figures):
    window_start: datetime
    window_end: datetime


class Performance(BaseModel):
    model: str
    task: Literal["classification", "regression"] | None  # None: nothing labelled yet
    windows_from: Literal["drift windows", "buckets"] | None
    bucket_seconds: int | None  # the buckets' width, when there is no drift window
    overall: Figures
    windows: list[WindowFigures]
