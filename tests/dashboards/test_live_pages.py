"""Pages of a model's calls while the monitor stores new ones: no call repeated or skipped, and
`GET /models` counts the new calls at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.fixtures.dashboard import DashboardData
from tests.monitor.consumer_helpers import wait_for

pytestmark = pytest.mark.slow
LIVE = "live"


def stored_calls(data: DashboardData) -> int:
    return int(data.store.stats()["models"].get(LIVE, {}).get("inferences", 0))


def live_counts(api: str) -> list[int]:
    models = httpx.get(f"{api}/models").json()["models"]
    return [model["inferences"] for model in models if model["model"] == LIVE]


def test_pages_neither_repeat_nor_skip_while_calls_arrive(
    dashboard_url: str, dashboard_data: DashboardData
) -> None:
    api = f"{dashboard_url}/api/v1"
    start = datetime.now(UTC) - timedelta(seconds=60)
    first_ids = [f"{LIVE}-a{n:04d}" for n in range(120)]
    dashboard_data.calls.send(LIVE, first_ids, start, timedelta(milliseconds=5))
    wait_for("the first calls stored", lambda: stored_calls(dashboard_data) == 120)

    assert live_counts(api) == [120]
    seen: list[str] = []
    page = httpx.get(f"{api}/models/{LIVE}/inferences", params={"limit": 25}).json()
    seen += [item["request_id"] for item in page["items"]]
    # Newer calls arrive between pages.
    newer_ids = [f"{LIVE}-b{n:04d}" for n in range(60)]
    dashboard_data.calls.send(
        LIVE, newer_ids, start + timedelta(seconds=1), timedelta(milliseconds=7)
    )
    wait_for("the newer calls stored", lambda: stored_calls(dashboard_data) == 180)
    models = httpx.get(f"{api}/models").json()["models"]
    assert [m["inferences"] for m in models if m["model"] == LIVE] == [180]
    while page["next_cursor"] is not None:
        params = {"limit": 25, "cursor": page["next_cursor"]}
        page = httpx.get(f"{api}/models/{LIVE}/inferences", params=params).json()
        seen += [item["request_id"] for item in page["items"]]

    assert len(seen) == len(set(seen)) == 120
    assert seen == sorted(first_ids, reverse=True)  # 5 ms apart: newest first is name order
    newest = httpx.get(f"{api}/models/{LIVE}/inferences", params={"limit": 1}).json()["items"]
    assert [item["request_id"] for item in newest] == [newer_ids[-1]]
