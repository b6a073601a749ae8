"""`infermon drift --html FILE`: the per-feature view as one self-contained HTML file. What it
holds is checked in-process; headless Chromium opens it from file:// and finds every histogram
drawn, the drifted columns marked, no console error and no request for anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infermon import html
from infermon.cli import main as cli_main
from tests.fixtures.browser import Browser

# A column name that would end the script holding the data, were it not escaped.
HOSTILE = "</script><script>document.title='owned'</script>"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("drift_html")
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"steady": rng.normal(size=400), "shifted": rng.normal(size=400),
                              HOSTILE: rng.choice(["red", "blue"], 400)})  # fmt: skip
    current = pd.DataFrame({"steady": rng.normal(size=300), "shifted": rng.normal(3, 1, 300),
                            HOSTILE: rng.choice(["red", "blue", "<b>green</b>"], 300)})  # fmt: skip
    paths = {"reference": folder / "reference.csv", "current": folder / "current.csv"}
    reference.to_csv(paths["reference"], index=False)
    current.to_csv(paths["current"], index=False)
    return paths


def write_report(files: dict[str, Path], target: Path, capsys: pytest.CaptureFixture[str]
                 ) -> list[dict[str, object]]:  # fmt: skip
    """Runs `infermon drift --json --html target`; the JSON it printed."""
    code = cli_main(["drift", "--reference", str(files["reference"]), "--current",
                     str(files["current"]), "--json", "--html", str(target)])  # fmt: skip
    assert code == 0
    features: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return features


def inlined_report(page: str) -> dict[str, object]:
    found = re.search(r"<script>window\.INFERMON_REPORT = (.*);</script>", page)
    assert found, "no report inlined"
    report: dict[str, object] = json.loads(found.group(1))
    return report


def test_the_file_holds_the_report_and_the_chart_code_and_refers_to_nothing(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.html"
    features = write_report(files, target, capsys)
    page = target.read_text()

    assert inlined_report(page)["features"] == features  # the same objects as --json
    assert html.asset("features.js") in page
    assert "Chart.js v4" in page and "sourceMappingURL" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page), "a reference to a file"
    # The data's markup stays text: one end tag per script opened, and the name escaped.
    assert page.count("<script>") == page.count("</script>") == 4
    assert HOSTILE not in page and "\\u003c/script>" in page


def test_a_folder_that_is_not_there_is_refused_before_any_work(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "report.html"
    code = cli_main(["drift", "--reference", str(files["reference"]),
                     "--current", str(files["current"]), "--html", str(target)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip() == (
        f"infermon drift: --html {target}: no folder {target.parent} to write it in"
    )


def test_a_file_that_cannot_be_written_is_one_line_and_exit_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a-folder.html"
    target.mkdir()
    code = cli_main(["drift", "--reference", str(files["reference"]),
                     "--current", str(files["current"]), "--html", str(target)])  # fmt: skip
    message = capsys.readouterr().err.strip()
    assert code == 2 and message.startswith(f"infermon drift: --html {target}: cannot write it")
    assert len(message.splitlines()) == 1


@pytest.mark.slow
def test_chromium_draws_it_from_file_with_no_error_and_no_request(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    browser: Browser,
) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    target = tmp_path / "report.html"
    features = write_report(files, target, capsys)
    browser.open(target.as_uri())

    rows = browser.wait_for(
        "the feature rows", lambda: browser.driver.find_elements(By.CSS_SELECTOR, "tbody tr")
    )
    shown = {row.get_attribute("data-column"): row for row in rows}
    assert list(shown) == [f["column"] for f in features]
    drifted = {row.get_attribute("data-column") for row in rows
               if "ifm-row-drift" in (row.get_attribute("class") or "")}  # fmt: skip
    assert drifted == {f["column"] for f in features if f["drift"]} and "shifted" in drifted
    assert browser.driver.title.startswith("Drift: current.csv against reference.csv")
    for column, row in shown.items():
        browser.painted_when_shown(row.find_element(By.TAG_NAME, "canvas"), repr(column))
    browser.screenshot("drift-html")

    assert browser.console_errors() == []
    assert browser.requests == [target.as_uri()]  # the file itself, nothing else


@pytest.mark.slow
def test_a_wide_report_draws_its_histograms_as_they_come_near_the_screen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: Browser
) -> None:
    """120 features: the rows far below the screen have no chart until scrolled to."""
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(5)
    columns = [f"x{n:03d}" for n in range(120)]
    paths = {"reference": tmp_path / "reference.csv", "current": tmp_path / "current.csv"}
    for name, rows in (("reference", 300), ("current", 200)):
        pd.DataFrame(rng.normal(size=(rows, len(columns))), columns=columns).to_csv(
            paths[name], index=False
        )
    target = tmp_path / "wide.html"
    write_report(paths, target, capsys)
    browser.open(target.as_uri())
    canvases = browser.wait_for("the histograms", lambda: (
        len(found := browser.driver.find_elements(By.CSS_SELECTOR, "tbody canvas")) == 120
        and found))  # fmt: skip
    first, last = canvases[0], canvases[-1]

    browser.painted_when_shown(first, "the first histogram")
    assert browser.painted_pixels(last) == 0, "a histogram far below the screen was drawn"
    browser.painted_when_shown(last, "the last histogram")
    assert browser.console_errors() == []
