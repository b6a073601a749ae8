"""PUT /models/{model}/reference and POST .../reference/from-window through the real pipeline
(calls on a real broker, an `infermon monitor` evaluating windows), on SQLite and PostgreSQL:
each new reference is summarised by the monitor before the model's next window, whose report
names its version; a shifted reference makes unshifted traffic drift."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.store.detection_store import DetectionStore
from monitor.store.store import Store
from tests.dashboards.pipeline import MODEL, Calls, dashboard, writing
from tests.fixtures.factories import TopicFactory
from tests.monitor.consumer_helpers import detection_config, start_detecting_monitor, wait_for
from tests.monitor.detection_data import instance_features

pytestmark = pytest.mark.slow
SHIFTED = frozenset({"a", "colour"})


def reference_rows(count: int, seed: int, shifted: frozenset[str] = frozenset()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [instance_features(rng, shifted) for _ in range(count)]
    return pd.DataFrame([{**row, "prediction": int(row["a"] > 1.5)} for row in rows])


def as_csv(frame: pd.DataFrame) -> tuple[bytes, dict[str, str]]:
    return frame.to_csv(index=False).encode(), {"Content-Type": "text/csv"}


def as_jsonl(frame: pd.DataFrame) -> tuple[bytes, dict[str, str]]:
    text = "\n".join(json.dumps(row) for row in frame.to_dict("records"))
    return text.encode(), {"Content-Type": "application/x-ndjson"}


def as_parquet(frame: pd.DataFrame) -> tuple[bytes, dict[str, str]]:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue(), {"Content-Type": "application/vnd.apache.parquet"}


def drifted(report: dict[str, Any]) -> set[str]:
    return {feature["column"] for feature in report["features"] if feature["drift"]}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return detection_config(tmp_path)


def test_each_new_reference_changes_the_next_windows_report(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, config: Path
) -> None:
    topic = new_topic()
    calls = Calls(kafka_bootstrap, topic)
    start = datetime.now(UTC) - timedelta(seconds=60)
    store = Store(database_url)
    detection = DetectionStore(store)

    def reports() -> list[dict[str, Any]]:
        found = detection.reports(MODEL, limit=100)
        return sorted(found, key=lambda r: r["window_start"])

    def next_window(count: int, shifted: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The report of the window that `count` more calls close."""
        nonlocal start
        done = len(reports())
        calls.send(count, start, shifted)
        start += timedelta(seconds=1)

        def latest() -> Any:
            return len(reports()) == done + 1 and reports()[-1]

        found: dict[str, Any] = wait_for(f"window {done + 1}", latest)
        return found

    with (
        start_detecting_monitor(kafka_bootstrap, topic, database_url, config),
        dashboard(database_url) as api,
    ):
        calls.send(200, start)  # the monitor's reference: the first 200 instances
        start += timedelta(seconds=1)
        first = next_window(200)
        shifted_start = start
        second = next_window(200, SHIFTED)
        pin = {"start": shifted_start.isoformat(), "end": start.isoformat()}

        answers, windows = [], []
        for body, headers in (as_csv(reference_rows(300, 7, SHIFTED)),
                              as_jsonl(reference_rows(300, 8)),
                              as_parquet(reference_rows(300, 9, SHIFTED))):  # fmt: skip
            response = api.put(f"/api/v1/models/{MODEL}/reference", content=body,
                               headers={**headers, **writing()})  # fmt: skip
            answers.append((response.status_code, response.json()))
            windows.append(next_window(200))
        pinned = api.post(f"/api/v1/models/{MODEL}/reference/from-window", json=pin,
                          headers=writing())  # fmt: skip
        windows.append(next_window(200))

    assert (first["reference_version"], drifted(first)) == (1, set())
    assert second["reference_version"] == 1 and drifted(second) >= SHIFTED
    assert [status for status, _ in answers] == [201, 201, 201]
    assert [(a["version"], a["rows"], a["pending"], a["origin"]) for _, a in answers] == [
        (2, 300, True, "dashboard"), (3, 300, True, "dashboard"), (4, 300, True, "dashboard"),
    ]  # fmt: skip
    assert [a["source"].split()[:2] for _, a in answers] == [
        ["upload", "csv"], ["upload", "jsonl"], ["upload", "parquet"],
    ]  # fmt: skip
    assert answers[0][1]["columns"] == ["a", "b", "c", "colour", "prediction"]
    assert pinned.status_code == 201
    assert (pinned.json()["version"], pinned.json()["rows"]) == (5, 200)
    # Unshifted traffic drifts from a shifted reference (CSV, Parquet, pinned), not from an
    # unshifted one (JSON lines).
    assert [w["reference_version"] for w in windows] == [2, 3, 4, 5]
    assert [drifted(w) >= SHIFTED for w in windows] == [True, False, True, True]
    assert not drifted(windows[1]) & SHIFTED
    summarised = detection.reference(MODEL, 4)
    assert summarised is not None and not summarised.pending and summarised.rows == 300
    store.close()
