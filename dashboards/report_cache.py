"""Drift reports as JSON, kept between requests. A report row never changes once written (late
instances make a new revision, a new row; retention only deletes), so the JSON of a report, or
of its one feature, stays right for as long as the report is listed. A history of 100 windows
of 20 features then reads 100 summary rows, not 2,000 feature rows decoded, validated and
serialised (~110 ms of CPU per request over the bench's store).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from monitor.store import detection_read

MAX_BYTES = 64 * 2**20

# The report's id, window, revision and time of computing (so that a report id a recreated
# database gives again is not taken for the old one), and the one feature asked for.
ReportKey = tuple[int, int, int, datetime, str | None]


@dataclass(frozen=True, slots=True)
class ReportJson:
    body: bytes
    has_features: bool  # with a feature asked for: whether the report has that feature


def report_key(summary: dict[str, Any], feature: str | None) -> ReportKey:
    return (summary["id"], summary["window_id"], summary["revision"], summary["computed_at"],
            feature)  # fmt: skip


class ReportCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._kept: OrderedDict[ReportKey, ReportJson] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def reports(
        self,
        connection: Connection,
        summaries: list[dict[str, Any]],
        feature: str | None,
        render: Callable[[dict[str, Any]], bytes],
    ) -> list[ReportJson]:
        """The JSON of each report `summaries` lists (`drift_reports` rows as dicts), with only
        `feature`'s row when one is named; what is not kept is read and `render`ed."""
        keys = [report_key(summary, feature) for summary in summaries]
        with self._lock:
            found = {key: self._kept[key] for key in keys if key in self._kept}
        missing = [summary for summary, key in zip(summaries, keys, strict=True)
                   if key not in found]  # fmt: skip
        for report in detection_read.attach_features(connection, missing):
            if feature is not None:
                report["features"] = [f for f in report["features"] if f["column"] == feature]
            key = report_key(report, feature)
            found[key] = ReportJson(render(report), bool(report["features"]))
        with self._lock:
            for key in keys:
                self._keep(key, found[key])
        return [found[key] for key in keys]

    def _keep(self, key: ReportKey, report: ReportJson) -> None:
        if key in self._kept:
            self._kept.move_to_end(key)
            return
        self._kept[key] = report
        self._bytes += len(report.body)
        while self._bytes > self._max_bytes and self._kept:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= len(dropped.body)
