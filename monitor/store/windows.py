"""What the store keeps about drift windows, as plain values: instance keys and ranges, a
window's bounds, a claim, a report's rows, a reference. No SQL here: the write side
(`detection_write`), the read side (`read`, `detection_read`) and their callers share these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

WindowKind = Literal["count", "tumbling", "sliding"]
CLAIMED = "claimed"
DONE = "done"
# Who made a reference: the monitor, from its detection config; or a user, from the dashboard.
MONITOR = "monitor"
DASHBOARD = "dashboard"


class InstanceKey(NamedTuple):
    """A model's instances are taken into count windows in this order."""

    time: datetime
    request_id: str
    row_index: int


@dataclass(frozen=True, slots=True)
class InstanceRange:
    """A model's instances after a key (exclusive), up to a key (inclusive), in [start, end)
    of time; each bound optional."""

    model: str
    after: InstanceKey | None = None
    through: InstanceKey | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class WindowBounds:
    """Which instances a window holds, fixed when it is first claimed.

    Count windows: the keys in (after, through]; `start`/`end` are their first and last
    times. Time windows: times in [start, end), keys after `after` (the reference's last
    instance, when the reference came from stored data).
    """

    kind: WindowKind
    seq: int  # count windows 1, 2, ...; time windows the slot on the grid of their step
    start: datetime
    end: datetime
    after: InstanceKey | None = None
    through: InstanceKey | None = None

    def instance_range(self, model: str) -> InstanceRange:
        if self.kind == "count":
            return InstanceRange(model, after=self.after, through=self.through)
        return InstanceRange(model, after=self.after, start=self.start, end=self.end)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """A stored window, as the evaluator needs it."""

    id: int
    model: str
    bounds: WindowBounds
    state: str
    claimed_by: str
    lease_until: datetime
    revision: int
    instances: int | None  # in its last report
    late: int | None
    reference_version: int

    @property
    def on_time(self) -> int:
        """Instances of its first report: those that were there in time."""
        return (self.instances or 0) - (self.late or 0)


@dataclass(frozen=True, slots=True)
class Claim:
    """A window this monitor holds until `lease_until`: it may write revision `revision`."""

    window: WindowRow
    claimed_by: str
    revision: int


@dataclass(frozen=True, slots=True)
class WindowReport:
    """A window's evaluation, as rows: the report's fields, one dict per feature (the
    columns of `drift_features` but `report_id`), one per outlier (of `outliers`)."""

    instances: int
    dataset_drift: bool
    share: float
    drifted: int
    valid: int
    drift_share: float
    correction: str
    multivariate: dict[str, Any] | None
    features: list[dict[str, Any]] = field(default_factory=list)
    outliers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reference:
    """A model's reference, summarised: what windows compare with. One set from the dashboard
    is pending (no sketch) until the monitor summarises its data."""

    model: str
    version: int
    source: str
    rows: int
    columns: list[str]
    sketch: bytes | None  # None: pending
    outlier_detector: bytes | None
    first: InstanceKey | None = None  # the stored instances it came from, if any
    last: InstanceKey | None = None
    created_at: datetime | None = None
    origin: str = MONITOR  # or DASHBOARD

    @property
    def pending(self) -> bool:
        return self.sketch is None
