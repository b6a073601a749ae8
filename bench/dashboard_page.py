"""The dashboard page's first paint over a large store, in headless Chromium (issue 15).

The store of bench/dashboard_api.py (one model, `--stored` calls of one instance each, the
events of the newest `--events` calls, `--windows` drift reports of 20 features), served by
`infermon dashboard` (a child process). `/#model=<model>` is opened `--loads` times, each in
a fresh Chromium (an empty cache, as a first visit), after one load not counted (the server's
first `GET /models` counts the model's rows once). Per load:

- first contentful paint: the browser's `first-contentful-paint` entry;
- first paint with data: when the page's first refresh has drawn the model list and the
  model's parts (traffic, drift timeline and the newest window's features, outliers,
  inferences, performance) from the API's answers; app.js sets
  `document.body.dataset.firstData` (ms since navigation) then. Target <= 1 s. The page's
  default range is the last day, and every stored call is in it (they end ~45 minutes ago).

    python bench/dashboard_page.py [--databases sqlite,postgresql] [--stored 1000000]
        [--events 20000] [--windows 1000] [--loads 10] [--sqlite-file PATH] [--floor]

`--sqlite-file PATH` keeps the SQLite store there and reuses it when it exists and its calls
are still in the page's default range (the last day); else it is built again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboard_api import FEATURES, fill, p95, serving
from drift_window import MODEL
from monitor_throughput import database_url

from monitor.store import api_read
from monitor.store.store import Store
from tests.fixtures.browser import CHROMEDRIVER, CHROMIUM, Browser

TARGET_MS = 1000.0
# The paint entry and the page's own marker, both in ms since navigation started.
_TIMES = """
const paint = performance.getEntriesByName("first-contentful-paint")[0];
return [paint ? paint.startTime : null, document.body.dataset.firstData || null];
"""
# Each API request of the first refresh: its path and when it ended (ms since navigation).
_API_ENDS = """
return performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/v1/"))
  .map((e) => [new URL(e.name).pathname.split("/").slice(3).join("/"), e.startTime, e.responseEnd]);
"""
API_MS: dict[str, list[tuple[float, float]]] = {}  # per API path: (start, end) of each load


def build(url: str, stored: int, events: int, windows: int) -> None:
    with Store(url) as store:
        store.upgrade()
        seconds = fill(store, stored, events, windows)
    print(f"   {stored:,} calls and instances, {windows:,} reports of {FEATURES} features "
          f"stored in {seconds:.0f} s")  # fmt: skip


def recent(url: str) -> bool:
    """The store's newest call is less than 20 hours old."""
    with Store(url) as store, store.engine.connect() as connection:
        newest = api_read.newest_time(connection, "inferences", MODEL)
    return newest is not None and datetime.now(UTC) - newest < timedelta(hours=20)


@contextlib.contextmanager
def store_url(kind: str, folder: Path, args: argparse.Namespace) -> Iterator[str]:
    """A filled store: the kept SQLite file when `--sqlite-file` names one that exists."""
    if kind == "sqlite" and args.sqlite_file is not None:
        url = f"sqlite:///{args.sqlite_file}"
        if args.sqlite_file.exists() and not recent(url):
            print(f"   {args.sqlite_file}: its calls are older than the page's default range")
            args.sqlite_file.unlink()
        if not args.sqlite_file.exists():
            build(url, args.stored, args.events, args.windows)
        else:
            print(f"   reusing {args.sqlite_file}")
        yield url
        return
    with database_url(kind, folder, "dashboard-page") as url:
        build(url, args.stored, args.events, args.windows)
        yield url


def one_load(page: str) -> tuple[float, float]:
    """First contentful paint and first paint with data (ms) of `page` in a fresh Chromium."""
    browser = Browser()
    try:
        browser.driver.get(page)  # returns at the load event; the data comes after
        fcp, first_data = browser.wait_for(
            "the page's first render with data",
            lambda: (found := browser.driver.execute_script(_TIMES))[1] and found,
            timeout_s=60,
        )
        errors = browser.console_errors()
        if errors:
            raise AssertionError(f"console errors: {errors}")
        drawn = browser.driver.execute_script(
            "return document.querySelector('#models tbody tr') !== null"
        )
        charts = [
            browser.driver.find_element("id", name) for name in ("drift-chart", "calls-chart")
        ]
        if not drawn or any(browser.painted_pixels(chart) == 0 for chart in charts):
            raise AssertionError("the model list, the drift timeline or the traffic is empty")
        for path, start, end in browser.driver.execute_script(_API_ENDS):
            API_MS.setdefault(path.replace(MODEL, "{m}"), []).append((start, end))
        return float(fcp), float(first_data)
    finally:
        browser.quit()


def measure(url: str, loads: int) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """The first load (not counted) and `loads` counted ones."""
    with serving(url) as (base, _):
        page = f"{base}/#model={MODEL}"
        first = one_load(page)
        API_MS.clear()  # the API's times of the counted loads only
        return first, [one_load(page) for _ in range(loads)]


def report(kind: str, first: tuple[float, float], found: list[tuple[float, float]]) -> None:
    print(f"{kind:>10}: first load (server's first count of the rows): FCP {first[0]:.0f} ms, "
          f"with data {first[1]:.0f} ms")  # fmt: skip
    for n, name in enumerate(("first contentful paint", "first paint with data")):
        values = [load[n] for load in found]
        verdict = ""
        if n == 1:
            verdict = f" (target <= {TARGET_MS:.0f} ms: "
            verdict += f"{'met' if p95(values) <= TARGET_MS else 'MISSED'} at p95)"
        print(f"{kind:>10}: {name:<23} median {statistics.median(values):6.0f} ms, "
              f"p95 {p95(values):6.0f} ms, max {max(values):6.0f} ms{verdict}")  # fmt: skip
    for path, times in sorted(API_MS.items()):
        print(
            f"{kind:>10}:   GET {path:<26} asked at {statistics.median(t[0] for t in times):5.0f}"
            f" ms, answered at {statistics.median(t[1] for t in times):5.0f} ms (medians)"
        )
    API_MS.clear()


def floor(folder: Path, loads: int) -> None:
    """The page over a store of 1,000 calls and one report: the floor under the figures."""
    print("floor (1,000 calls, 1 report, SQLite):")
    url = f"sqlite:///{folder / 'floor.db'}"
    build(url, 1000, 1000, 1)
    first, found = measure(url, loads)
    report("floor", first, found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list")
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000, help="newest calls with events")
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=10, help="page loads counted")
    parser.add_argument("--sqlite-file", type=Path, default=None, help="keep and reuse")
    floor_help = "first the page over 1,000 calls and one report (the machine's floor)"
    parser.add_argument("--floor", action="store_true", help=floor_help)
    args = parser.parse_args()
    if CHROMIUM is None or CHROMEDRIVER is None:
        sys.exit("needs Debian's chromium and chromium-driver: apt-get install chromium "
                 "chromium-driver")  # fmt: skip
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        if args.floor:
            floor(Path(folder), args.loads)
        for kind in args.databases.split(","):
            print(f"{kind}:")
            started = time.perf_counter()
            with store_url(kind, Path(folder), args) as url:
                first, found = measure(url, args.loads)
            report(kind, first, found)
            print(f"   ({time.perf_counter() - started:.0f} s; load average now "
                  f"{os.getloadavg()[0]:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
