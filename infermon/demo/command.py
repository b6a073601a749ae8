"""`infermon demo [--duration S] [--rate N] [--no-traffic] [--data-dir DIR]`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field

from infermon import defaults
from infermon.demo.data import MISSING_SKLEARN, MODEL_NAME, WineData, sklearn_missing
from infermon.demo.model_server import ModelServer
from infermon.demo.traffic import REFERENCE_INSTANCES, WINDOW_INSTANCES, Traffic
from infermon.errors import UsageError, listening_socket
from infermon.settings import load_settings
from infermon.up import Stack, StackSettings, StopSignals, wait_until_stopped

PROG = "infermon demo"
CONFIG_NAME = "demo-detection.yaml"
DETECTION_CONFIG = f"""\
# Written by `infermon demo`: a small reference and small windows, so that drift shows in
# seconds at the demo's rate.
defaults:
  reference: {{first: {REFERENCE_INSTANCES}}}
  window: {{instances: {WINDOW_INSTANCES}}}
"""
READY_TIMEOUT_S = 90.0
# After --duration: how long to wait for the reports of the last windows (the monitor closes
# a window 5 s after its newest instance, then evaluates it).
REPORTS_WAIT_S = 20.0
READ_TOKEN_ENV = "INFERMON_API_READ_TOKEN"


class DemoSettings(StackSettings):
    """`infermon up` with a sample classifier (wine, scikit-learn) behind the logger, and
    traffic that drifts: normal calls, then drifted ones, with feedback labels."""

    config: str = Field(
        "",
        description="the monitor's per-model drift and outlier detection (YAML); none: a "
        f"reference of {REFERENCE_INSTANCES} and windows of {WINDOW_INSTANCES} instances, written "
        f"to <data-dir>/{CONFIG_NAME}",
    )
    model_port: int = Field(defaults.MODEL_PORT, description="the sample model server's port")
    duration: float = Field(
        0.0, ge=0, description="seconds of traffic, then everything stops; 0: until Ctrl-C"
    )
    rate: float = Field(20.0, gt=0, le=1000, description="calls per second (5 instances each)")
    no_traffic: bool = Field(False, description="start everything but send no traffic")


def main(argv: Sequence[str]) -> int:
    settings = load_settings(DemoSettings, argv, PROG)
    if sklearn_missing():
        raise UsageError(MISSING_SKLEARN)
    generated = not settings.config
    if generated:
        settings.config = str(Path(settings.data_dir) / CONFIG_NAME)
    model_url = f"http://127.0.0.1:{settings.model_port}"
    stack = Stack(settings, model_url, prog=PROG)
    stack.prepare({"--model-port": settings.model_port})
    if generated:
        Path(settings.config).write_text(DETECTION_CONFIG, encoding="utf-8")
    listener = listening_socket("127.0.0.1", settings.model_port, "--model-port")
    stopping = StopSignals()
    server: ModelServer | None = None
    traffic: Traffic | None = None
    exited = None
    try:
        stack.start(stopping)
        for line in stack.describe():
            print(line, flush=True)
        data = WineData()  # while the components start
        server = ModelServer(data, listener)
        server.start()
        _describe_model(settings)
        exited = _wait_ready(stack, stopping)
        if exited is None and not stopping:
            print(f"{PROG}: ready: open {stack.dashboard_url}/#model={MODEL_NAME}", flush=True)
            if settings.no_traffic:
                _show_a_call(settings)
            else:
                traffic = Traffic(data, f"http://127.0.0.1:{settings.logger_port}",
                                  stack.dashboard_url, stack.api_token, settings.rate,
                                  settings.duration)  # fmt: skip
                traffic.start()
            finished = traffic.finished.is_set if traffic and settings.duration else _never
            exited = wait_until_stopped(stack, stopping, finished)
        if traffic is not None:
            traffic.stop()
            if exited is None and not stopping and settings.duration:
                _summarise(stack, traffic, wait=generated)
        if exited is not None:
            print(f"{PROG}: the {exited[0]} exited with code {exited[1]}", file=sys.stderr)
    finally:
        if traffic is not None:
            traffic.stop()
        stack.stop()
        if server is not None:
            server.stop()
        listener.close()
    return 0 if exited is None else exited[1] or 1


def _never() -> bool:
    return False


def _describe_model(settings: DemoSettings) -> None:
    model = f"http://127.0.0.1:{settings.model_port}"
    print(f"{PROG}: model     {model}/v1/models/{MODEL_NAME}:predict and "
          f"/v2/models/{MODEL_NAME}/infer (scikit-learn's wine data set)", flush=True)  # fmt: skip
    until = f"for {settings.duration:g} s" if settings.duration else "until Ctrl-C"
    print(f"{PROG}: runs {until}; Ctrl-C stops everything.", flush=True)


def _wait_ready(stack: Stack, stopping: StopSignals) -> tuple[str, int] | None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stack.ready():
        if stopping:
            return None
        exited = stack.exited()
        if exited is not None:
            return exited
        if time.monotonic() > deadline:
            raise SystemExit(f"{PROG}: the components were not ready in {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.2)
    return None


def _show_a_call(settings: DemoSettings) -> None:
    print(f"{PROG}: no traffic; a call through the logger: curl -H 'Content-Type: "
          f"application/json' http://127.0.0.1:{settings.logger_port}/v1/models/{MODEL_NAME}"
          ":predict -d '{\"instances\": [[13.2, 1.8, 2.4, 16.8, 101, 2.8, 3.0, 0.3, 2.0, 5.6,"
          " 1.0, 3.2, 1100]]}'", flush=True)  # fmt: skip


def _summarise(stack: Stack, traffic: Traffic, wait: bool) -> None:
    """What the dashboard now shows, in two lines: drift per window, and accuracy."""
    api = f"{stack.dashboard_url}/api/v1/models/{MODEL_NAME}"
    headers = {"Authorization": f"Bearer {os.environ[READ_TOKEN_ENV]}"} if os.environ.get(
        READ_TOKEN_ENV) else {}  # fmt: skip
    expected = (traffic.tally.instances - REFERENCE_INSTANCES) // WINDOW_INSTANCES if wait else 0
    try:
        with httpx.Client(headers=headers, timeout=10.0) as client:
            reports = _poll(lambda: client.get(f"{api}/drift/history", params={"limit": 1000}),
                            lambda found: len(found.get("reports", [])) >= expected)  # fmt: skip
            performance = client.get(f"{api}/performance").json()
    except (httpx.HTTPError, ValueError) as error:
        print(f"{PROG}: could not read the dashboard's summary: {error}", file=sys.stderr)
        return
    print(_drift_line(reports.get("reports", [])), flush=True)
    print(_accuracy_line(performance), flush=True)


def _poll(
    get: Callable[[], httpx.Response], enough: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + REPORTS_WAIT_S
    while True:
        answer = get()
        found: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
        if enough(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _drift_line(reports: list[dict[str, Any]]) -> str:
    if not reports:
        return f"{PROG}: no drift report yet"
    drifted = sum(1 for report in reports if report["dataset_drift"])
    latest = reports[-1]
    columns = [f["column"] for f in latest["features"] if f["drift"]]
    return (f"{PROG}: {len(reports)} windows, {drifted} with dataset drift; the latest: "
            f"{len(columns)} columns drifted ({', '.join(columns) or 'none'})")  # fmt: skip


def _accuracy_line(performance: dict[str, Any]) -> str:
    overall = performance.get("overall") or {}
    if overall.get("accuracy") is None:
        return f"{PROG}: no accuracy yet (no label joined a prediction)"
    windows = [w for w in performance.get("windows", []) if w.get("accuracy") is not None]
    by_window = ""
    if len(windows) >= 2:
        by_window = (
            f" (first window {windows[0]['accuracy']:.2f}, latest {windows[-1]['accuracy']:.2f})"
        )
    return (f"{PROG}: accuracy {overall['accuracy']:.2f} over {overall['labelled']} labelled "
            f"instances{by_window}")  # fmt: skip
