"""Which window of a model comes next, and whether it has closed.

Count windows take every N instances in key order (time, request_id, row_index) after the
previous window's last key (the first window: after the reference's last instance, when the
reference came from stored data). One closes once N instances are stored after it and the
newest of them is older than the settle delay, so that instances on their way through
another monitor of the group are in it.

Time windows lie on a grid from the Unix epoch: tumbling windows [k·L, (k+1)·L), sliding
windows [k·S, k·S + L) for every step S. A window closes once its end is older than the settle
delay. Windows without any instance are skipped: the next one is the first that holds the
next instance after the previous window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.detection_config import WindowSpec
from monitor.store.detection_store import DetectionStore
from monitor.store.windows import InstanceKey, InstanceRange, WindowBounds, WindowRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def next_window(
    store: DetectionStore,
    model: str,
    spec: WindowSpec,
    last: WindowRow | None,
    reference_end: InstanceKey | None,
    settled: datetime,
) -> WindowBounds | None:
    """The bounds of the window after `last` (None: the model's first), if it has closed."""
    if spec.kind == "count":
        return _next_count(store, model, spec.instances, last, reference_end, settled)
    if spec.length is None:
        raise ValueError(f"a {spec.kind} window needs a length")
    length = spec.length // _MICROSECOND
    step = length if spec.kind == "tumbling" or spec.step is None else spec.step // _MICROSECOND
    earliest = None if last is None else _moment((last.bounds.seq + 1) * step)
    first = store.nth_instance_key(InstanceRange(model, after=reference_end, start=earliest), 1)
    if first is None:
        return None
    # The first window on the grid that holds `first`, and none before the one after `last`.
    slot = (_micros(first.time) - length) // step + 1
    if last is not None:
        slot = max(slot, last.bounds.seq + 1)
    start = _moment(slot * step)
    end = start + spec.length
    if end > settled:
        return None
    return WindowBounds(spec.kind, slot, start, end, after=reference_end)


def _next_count(
    store: DetectionStore,
    model: str,
    size: int,
    last: WindowRow | None,
    reference_end: InstanceKey | None,
    settled: datetime,
) -> WindowBounds | None:
    after = reference_end if last is None else last.bounds.through
    following = InstanceRange(model, after=after)
    through = store.nth_instance_key(following, size)
    if through is None or through.time > settled:
        return None
    first = store.nth_instance_key(following, 1)
    start = through.time if first is None else first.time
    seq = 1 if last is None else last.bounds.seq + 1
    return WindowBounds("count", seq, start, through.time, after=after, through=through)
