"""The Dockerfile copies what the package build needs, and its install check asks for package
data the build really ships. (.ci/run lints it with hadolint, and builds and runs it where a
Docker engine is.)"""

from __future__ import annotations

import ast
import re
import tomllib
from fnmatch import fnmatch
from pathlib import PurePosixPath

from tests.deploy.compose_stack import DOCKERFILE, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
INSTRUCTIONS = DOCKERFILE.read_text().replace("\\\n", "").splitlines()


def _copied() -> set[str]:
    """The paths COPY brings from the build context, as the context names them."""
    found: set[str] = set()
    for line in INSTRUCTIONS:
        if line.startswith("COPY ") and "--from" not in line:
            found.update(part.rstrip("/") for part in line.split()[1:-1])
    return found


def test_every_package_and_build_file_is_copied() -> None:
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    build_files = {"pyproject.toml", "setup.py", PYPROJECT["project"]["readme"]}
    assert packages | build_files <= _copied()
    # setup.py compiles this source: it must be inside a copied package.
    assert "monitor/_one_pass.pyx" in (ROOT / "setup.py").read_text()


def _checked_package_data() -> list[tuple[str, str]]:
    """(package, file) pairs the image's install check asserts are installed."""
    run = next(line for line in INSTRUCTIONS if "package data missing" in line)
    pairs = re.search(r"for p, n in (\[.*?\])\)", run)
    assert pairs is not None, "the install check's list of package files"
    return [tuple(pair) for pair in ast.literal_eval(pairs[1])]


def test_the_install_check_asks_for_package_data_the_build_ships() -> None:
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
    checked = _checked_package_data()
    assert {"infermon.html", "dashboards.page"} <= {package for package, _ in checked}
    for package, name in checked:
        top, _, sub = package.partition(".")
        relative = str(PurePosixPath(*sub.split("."), name)) if sub else name
        assert (ROOT / top / relative).is_file(), f"{package}: {name}"
        assert any(fnmatch(relative, glob) for glob in package_data[top]), f"{package}: {name}"


def test_the_data_directory_is_the_unprivileged_user_s() -> None:
    text = "\n".join(INSTRUCTIONS)
    data_dir = re.search(r"INFERMON_DATA_DIR=(\S+)", text)
    assert data_dir is not None
    assert f"chown 65534:65534 {data_dir[1]}" in text
    assert re.search(r"^USER 65534$", text, re.MULTILINE)
