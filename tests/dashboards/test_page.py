"""The dashboard page in headless Chromium, served by `infermon dashboard` over a database the
real pipeline filled (`dashboard_data`: KServe events on a real broker, stored and evaluated by
`infermon monitor`; normal traffic, then traffic with two features shifted). The page loads
with no console error and no request leaving the machine, shows the model as drifted, draws
its charts and histograms, opens an inference, and keeps the model and window in its address.
On SQLite only: the API's own tests cover both databases, and the page reads only the API."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from monitor.store.detection_store import DetectionStore
from tests.fixtures.browser import Browser
from tests.fixtures.dashboard import BINARY_CALL, MODEL, DashboardData
from tests.fixtures.processes import REPO_ROOT, ServerProcess, free_port, http_ok

pytestmark = [pytest.mark.slow,
              pytest.mark.parametrize("dashboard_data", ["sqlite"], indirect=True)]  # fmt: skip


@pytest.fixture(scope="module")
def drifted_database(dashboard_data: DashboardData) -> str:
    return dashboard_data.database_url


@contextmanager
def serving(database_url: str, **env: str) -> Iterator[str]:
    """`infermon dashboard` over `database_url`; its address."""
    port = free_port()
    argv = [sys.executable, "-m", "infermon.cli", "dashboard", "--database-url", database_url,
            "--host", "127.0.0.1", "--port", str(port), "--insecure-writes"]  # fmt: skip
    process = ServerProcess("infermon-dashboard", argv, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until(lambda: http_ok(f"{url}/readyz"), 30, "readiness")
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def dashboard(drifted_database: str) -> Iterator[str]:
    with serving(drifted_database) as url:
        yield url


def hash_state(browser: Browser) -> dict[str, str]:
    fragment = urlsplit(browser.driver.current_url).fragment
    return {key: values[0] for key, values in parse_qs(fragment).items()}


def displayed(browser: Browser, element_id: str) -> Any:
    """The element, once it is shown; None before."""
    from selenium.webdriver.common.by import By

    found = browser.driver.find_element(By.ID, element_id)
    return found if found.is_displayed() else None


def canvas(browser: Browser, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.driver.find_element(By.CSS_SELECTOR, css)


def test_the_page_shows_the_drifted_model_and_opens_an_inference(
    dashboard: str, dashboard_data: DashboardData, browser: Browser
) -> None:
    from selenium.webdriver.common.by import By

    [latest] = DetectionStore(dashboard_data.store).reports(MODEL, limit=1)
    assert latest["dataset_drift"]
    browser.open(f"{dashboard}/")
    row = browser.wait_for("the model in the list", lambda: browser.driver.find_elements(
        By.CSS_SELECTOR, f'#models tr[data-model="{MODEL}"]'))[0]  # fmt: skip
    assert row.find_element(By.CSS_SELECTOR, ".ifm-badge").text == f"drift {latest['share']:.2f}"
    row.click()

    assert hash_state(browser)["model"] == MODEL
    features = browser.wait_for("the feature table", lambda: browser.driver.find_elements(
        By.CSS_SELECTOR, "#features tbody tr"))  # fmt: skip
    drifted = {r.get_attribute("data-column") for r in features
               if "ifm-row-drift" in (r.get_attribute("class") or "")}  # fmt: skip
    assert drifted == {f["column"] for f in latest["features"] if f["drift"]} >= {"a", "colour"}
    for row in features:
        histogram = row.find_element(By.TAG_NAME, "canvas")
        browser.painted_when_shown(
            histogram, f"the histogram of {row.get_attribute('data-column')}"
        )
    for chart in ("#drift-chart", "#calls-chart", "#latency-chart"):
        browser.painted_when_shown(canvas(browser, chart), chart)
    browser.screenshot("dashboard-page")

    inference = browser.driver.find_elements(By.CSS_SELECTOR, "#inferences tbody tr")[0]
    request_id = inference.get_attribute("data-request-id")
    inference.click()
    panel = browser.wait_for("the inference panel", lambda: displayed(browser, "inference"))
    assert panel.find_element(By.ID, "inference-id").text == request_id
    request = json.loads(panel.find_element(By.ID, "inference-request").text)
    assert set(request["instances"][0]) == {"a", "b", "c", "colour"}
    assert "predictions" in json.loads(panel.find_element(By.ID, "inference-response").text)
    browser.screenshot("dashboard-inference")
    # A response that is not JSON is shown as the API gives it: base64, with its type.
    browser.driver.execute_script("return openInference(arguments[0])", BINARY_CALL)
    browser.wait_for("the binary call", lambda: panel.find_element(By.ID, "inference-id").text
                     == BINARY_CALL)  # fmt: skip
    shown = panel.find_element(By.ID, "inference-response").text.splitlines()
    assert shown == ["(application/octet-stream, base64)", "AP9ub3QganNvbg=="]

    assert browser.console_errors() == []
    assert browser.remote_requests() == []
    assert browser.requests, "no request seen: the network log is not working"


def test_the_address_keeps_the_model_and_the_window(
    dashboard: str,
    browser: Browser,
) -> None:
    from selenium.webdriver.support.ui import Select

    browser.open(f"{dashboard}/#model={MODEL}")
    choice = browser.wait_for("the window choice", lambda: (
        len((s := Select(canvas(browser, "#window"))).options) == 4 and s))  # fmt: skip
    oldest = choice.options[-1].get_attribute("value")
    choice.select_by_value(oldest)
    browser.wait_for("the window in the address", lambda: hash_state(browser).get("window"))
    shared = browser.driver.current_url

    browser.open("about:blank")
    browser.open(shared)  # a link to the view, opened afresh
    browser.wait_for(
        "the window chosen", lambda: canvas(browser, "#window").get_attribute("value") == oldest
    )
    assert hash_state(browser) == {"model": MODEL, "range": "24h", "window": oldest}
    # The oldest window is a normal one: no feature drifted.
    assert not canvas(browser, "#features").find_elements("css selector", ".ifm-row-drift")
    assert browser.console_errors() == []


def test_with_a_read_token_the_page_asks_for_it_and_then_reads(
    drifted_database: str, browser: Browser
) -> None:
    from selenium.webdriver.common.by import By

    with serving(drifted_database, INFERMON_API_READ_TOKEN="s3cret-read") as url:
        browser.open(f"{url}/")
        form = browser.wait_for("the token form", lambda: displayed(browser, "token-form"))
        assert not browser.driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        form.find_element(By.ID, "token").send_keys("s3cret-read")
        form.find_element(By.TAG_NAME, "button").click()
        browser.wait_for("the model list", lambda: browser.driver.find_elements(
            By.CSS_SELECTOR, f'#models tr[data-model="{MODEL}"]'))  # fmt: skip
        assert not form.is_displayed()
        # The only errors: the browser's own line for each answer 401 before the token.
        refused = [e for e in browser.console_errors() if "status of 401" not in e]
        assert refused == []
