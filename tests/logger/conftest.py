"""Fixtures for the logger's tests: start `infermon logger` / `infermon ingest` as processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.infermon_process import InfermonProcess

StartInfermon = Callable[..., InfermonProcess]


@pytest.fixture
def start_infermon(tmp_path: Path) -> Iterator[StartInfermon]:
    """`start_infermon("logger", "--model-url", url, ...)`; every process stops after the test."""
    started: list[InfermonProcess] = []

    def start(
        command: str,
        *args: str,
        spool_dir: Path | None = None,
        wait_ready: bool = True,
    ) -> InfermonProcess:
        spool = spool_dir if spool_dir is not None else tmp_path / f"spool-{len(started)}"
        process = InfermonProcess(command, args, spool_dir=spool, wait_ready=wait_ready)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
