"""The checks .ci/run makes of the code as a whole fail when it is broken: the import contracts
(`lint-imports`, ARCHITECTURE.md) and the type checker (`mypy`), each run on a copy of the
packages with a deliberate mistake in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.processes import REPO_ROOT

PACKAGES = ("infermon", "logger", "trigger", "monitor", "dashboards")
BIN = Path(sys.executable).parent
# One import each that ARCHITECTURE.md forbids, and the contract that must catch it.
FORBIDDEN_IMPORTS = {
    "logger/producer/_mistake.py": (
        "import monitor.store.read",
        "The producers never import the monitoring half",
    ),
    "monitor/_mistake.py": ("import logger.producer.sink", "The monitor imports no producer"),
    "dashboards/_mistake.py": (
        "from monitor.store.store import Store",
        "The dashboards read the store through its read side only",
    ),
    "monitor/store/migrations/_mistake.py": (
        "from monitor.store.store import Store",
        "The store in layers",
    ),
    "trigger/_mistake.py": (
        "from logger.sidecar.exchange import Exchange",
        "share only the producer core",
    ),
}


def copy_of_the_packages(destination: Path) -> Path:
    built = shutil.ignore_patterns("*.so", "__pycache__")
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, destination / package, ignore=built)
    shutil.copy(REPO_ROOT / "pyproject.toml", destination)
    return destination


def run(tool: str, where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *(["--no-cache"] if tool == "lint-imports" else [])],
        cwd=where,
        env={"PATH": str(BIN), "PYTHONPATH": str(where)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def verdict(report: str, contract: str) -> str:
    """KEPT or BROKEN: the word after the contract's name in lint-imports' list."""
    after = " ".join(report.split()).split(contract, 1)[1]  # long names wrap over lines
    kept, broken = after.find(" KEPT"), after.find(" BROKEN")
    return "BROKEN" if broken != -1 and (kept == -1 or broken < kept) else "KEPT"


def test_the_import_contracts_hold() -> None:
    checked = run("lint-imports", REPO_ROOT)
    assert checked.returncode == 0, checked.stdout


def test_each_forbidden_import_breaks_its_contract(tmp_path: Path) -> None:
    tree = copy_of_the_packages(tmp_path)
    for module, (statement, _) in FORBIDDEN_IMPORTS.items():
        (tree / module).write_text(statement + "\n")

    checked = run("lint-imports", tree)

    assert checked.returncode != 0
    for _, contract in FORBIDDEN_IMPORTS.values():
        assert verdict(checked.stdout, contract) == "BROKEN", (contract, checked.stdout)


@pytest.mark.slow
def test_a_type_error_in_any_package_fails_the_type_checker(tmp_path: Path) -> None:
    """mypy over the packages the configuration names, each with one untyped function."""
    tree = tmp_path
    for package in PACKAGES:
        (tree / package).mkdir()
        (tree / package / "__init__.py").write_text("def mistake(value):\n    return value\n")
    shutil.copy(REPO_ROOT / "pyproject.toml", tree)

    checked = run("mypy", tree)

    assert checked.returncode != 0
    for package in PACKAGES:
        assert f"{package}/__init__.py:1: error" in checked.stdout, checked.stdout
