"""The per-feature drift view, as files shipped in the package, and its self-contained page.

`features.js` and `features.css` draw one drift report's features: a table, each row with its
reference and current histograms over each other, by Chart.js (`vendor/`, the only copy of the
chart library). The dashboard serves these files to its page; `infermon drift --html` inlines
them, with the report, into one HTML file that needs no server and no network.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

# Files the dashboard serves to its page (paths relative to this folder).
SHARED_FILES = ("features.js", "features.css", "vendor/chart.umd.min.js", "vendor/LICENSE.md")
CHART_JS = "vendor/chart.umd.min.js"
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)


def folder() -> Path:
    """Where the shared files are (a real folder: the package is installed unzipped)."""
    return Path(__file__).parent


def asset(name: str) -> str:
    return (folder() / name).read_text(encoding="utf-8")


def _inline_script(code: str) -> str:
    """`code` safe inside <script>...</script>: no end tag, no comment naming a missing file."""
    return _SOURCE_MAP.sub("", code).replace("</script", "<\\/script")


def _inline_data(value: Any) -> str:
    """`value` as a JavaScript literal (JSON, with NaN and Infinity as JavaScript has them);
    "<" only occurs in strings, where its escape reads the same."""
    return json.dumps(value).replace("<", "\\u003c")


def standalone_report(
    report: Mapping[str, Any], title: str, details: Sequence[tuple[str, str]] = ()
) -> str:
    """One HTML file showing `report` (`DriftReport.as_dict`): data and chart code inlined.

    `details` are (name, value) lines shown above the table, e.g. the files compared."""
    rows = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in details
    )
    return Template(asset("report.html")).substitute(
        title=html.escape(title),
        details=rows,
        features_css=asset("features.css"),
        chart_js=_inline_script(asset(CHART_JS)),
        features_js=_inline_script(asset("features.js")),
        report=_inline_data(report),
    )
