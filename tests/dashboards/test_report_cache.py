"""The dashboard's cache of drift reports as JSON, on SQLite and PostgreSQL: a report is read
and rendered once, per feature asked for; the cache keeps to its byte bound."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from dashboards.report_cache import ReportCache
from monitor.store import detection_read
from monitor.store.detection_store import DetectionStore
from monitor.store.store import Store
from monitor.store.windows import InstanceKey
from tests.monitor.store.detection_helpers import add_instances, claim_first, one_per_second, report
from tests.monitor.store.helpers import T0


class Renderer:
    def __init__(self) -> None:
        self.rendered: list[int] = []

    def __call__(self, found: dict[str, Any]) -> bytes:
        self.rendered.append(found["id"])
        return orjson.dumps(
            {"id": found["id"], "features": [f["column"] for f in found["features"]]}
        )


def stored_report(store: Store) -> list[dict[str, Any]]:
    detection = DetectionStore(store)
    add_instances(store, "m", one_per_second(4))
    claim = claim_first(detection, "m", InstanceKey(T0 + timedelta(seconds=3), "r00003", 0))
    assert detection.finish(claim, report(4, drift=True)) is not None
    with store.engine.connect() as connection:
        return detection_read.report_history(connection, "m", with_features=False)


def test_a_report_is_read_and_rendered_once_per_feature_asked(store: Store) -> None:
    summaries = stored_report(store)
    cache, render = ReportCache(), Renderer()
    with store.engine.connect() as connection:
        first = cache.reports(connection, summaries, None, render)
        again = cache.reports(connection, summaries, None, render)
        one = cache.reports(connection, summaries, "x", render)
        unknown = cache.reports(connection, summaries, "nope", render)

    report_id = summaries[0]["id"]
    assert render.rendered == [report_id] * 3  # whole, feature "x", feature "nope"
    assert first == again
    assert orjson.loads(first[0].body) == {"id": report_id, "features": ["x"]}
    assert (one[0].has_features, unknown[0].has_features) == (True, False)
    assert orjson.loads(unknown[0].body)["features"] == []


def test_the_cache_keeps_to_its_byte_bound(store: Store) -> None:
    summaries = stored_report(store)
    cache, render = ReportCache(max_bytes=60), Renderer()
    with store.engine.connect() as connection:
        for feature in ("a", "b", "c", "d"):  # four entries of ~25 bytes
            cache.reports(connection, summaries, feature, render)
        assert len(cache) == 2
        cache.reports(connection, summaries, "a", render)  # dropped: read again
    assert len(render.rendered) == 5
