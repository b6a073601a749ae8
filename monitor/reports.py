"""`infermon reports`: the stored drift reports, latest first, as a table or JSON.

It only reads: a database that is not there, or has no drift tables yet, is reported, never
created. Each report's features have the keys of `infermon drift --json` (the stored rows read
back into `FeatureDrift`s and written by its `as_dict`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from infermon.errors import UsageError
from infermon.settings import load_settings
from monitor.counts import DEFAULT_DATABASE_URL, reason, shown
from monitor.drift.report import FeatureDrift, Histogram
from monitor.settings import DatabaseSettings
from monitor.store.detection_store import DetectionStore
from monitor.store.engine import sqlite_file
from monitor.store.schema import drift_reports
from monitor.store.store import Store, StoreError

REPORT_KEYS = ("model", "window_start", "window_end", "instances", "dataset_drift", "share",
               "revision", "late")  # fmt: skip


class ReportsSettings(DatabaseSettings):
    # --json beside --json-output: an alias would make the environment variable JSON, unprefixed.
    model_config = SettingsConfigDict(cli_shortcuts={"json-output": "json"})
    """Print the stored drift reports, latest first: a table, or JSON with --json."""

    model: str = Field("", description="only this model's reports")
    limit: int = Field(20, gt=0, description="at most this many reports")
    json_output: bool = Field(False, description="JSON instead of a table")


def main(argv: Sequence[str]) -> int:
    settings = load_settings(ReportsSettings, argv, "infermon reports")
    found = [as_json(report) for report in stored_reports(settings)]
    if settings.json_output:
        print(json.dumps(found, indent=2))
    else:
        print(table(found))
    return 0


def stored_reports(settings: ReportsSettings) -> list[dict[str, Any]]:
    url = settings.database_url
    same_url = "" if url == DEFAULT_DATABASE_URL else f" --database-url {shown(url)}"
    create_it = f"run `infermon db upgrade{same_url}` to create it"
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise UsageError(f"no database at {path}: {create_it}")
    with Store(url) as store:
        try:
            if not inspect(store.engine).has_table(drift_reports.name):
                raise UsageError(f"no drift reports schema in {shown(url)}: {create_it}")
            return DetectionStore(store).reports(settings.model or None, settings.limit)
        except (SQLAlchemyError, StoreError) as error:  # unreachable, or not ours
            cause = error.__cause__ if isinstance(error, StoreError) else error
            raise UsageError(f"cannot read {shown(url)}: {reason(cause or error)}") from None


def feature_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored feature row as `FeatureDrift.as_dict` writes it."""
    histogram = row.get("histogram")
    values = {**row, "histogram": None if histogram is None else Histogram(**histogram)}
    return FeatureDrift(**values).as_dict()


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def as_json(report: dict[str, Any]) -> dict[str, Any]:
    shown_report = {key: report[key] for key in REPORT_KEYS}
    shown_report["window_start"] = _time(report["window_start"])
    shown_report["window_end"] = _time(report["window_end"])
    shown_report["features"] = [feature_json(row) for row in report["features"]]
    return shown_report


def _number(value: object) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def table(reports: list[dict[str, Any]]) -> str:
    """Each report's line, then a line per feature."""
    if not reports:
        return "no drift reports stored"
    lines = []
    for report in reports:
        drift = "DRIFT" if report["dataset_drift"] else "no drift"
        lines.append(
            f"{report['model']}  {report['window_start']} .. {report['window_end']}  "
            f"revision {report['revision']}  {report['instances']} instances "
            f"({report['late']} late)  {drift}, share {report['share']:.2f}"
        )
        header = ("column", "kind", "test", "statistic", "p_value", "distance", "threshold",
                  "drift")  # fmt: skip
        rows = [header] + [
            tuple(_number(feature.get(key)) if key not in ("column", "kind", "test", "drift")
                  else str(feature.get(key, "-")) for key in header)
            for feature in report["features"]
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                  .rstrip() for row in rows]  # fmt: skip
    return "\n".join(lines)
