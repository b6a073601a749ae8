"""The shared drift view's files: the vendored Chart.js is the npm file its README names, and
every file the dashboard serves or the HTML report inlines ships in the package."""

from __future__ import annotations

import hashlib
import re
import tomllib
from fnmatch import fnmatch

from infermon import html
from tests.fixtures.processes import REPO_ROOT


def test_the_vendored_chart_library_is_the_file_its_readme_names() -> None:
    readme = (html.folder() / "vendor" / "README.md").read_text()
    recorded = re.search(r"sha256 of the file: `([0-9a-f]{64})`", readme)
    assert recorded, "the README records no sha256"
    digest = hashlib.sha256((html.folder() / html.CHART_JS).read_bytes()).hexdigest()
    assert digest == recorded.group(1)
    assert "Chart.js v4.6.1" in html.asset(html.CHART_JS)[:200]
    assert "Chart.js 4.6.1" in readme and "MIT" in (html.folder() / "vendor/LICENSE.md").read_text()


def test_every_shared_file_is_package_data() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["infermon"]
    for name in (*html.SHARED_FILES, "report.html"):
        assert (html.folder() / name).is_file(), name
        assert any(fnmatch(f"html/{name}", pattern) for pattern in patterns), name
