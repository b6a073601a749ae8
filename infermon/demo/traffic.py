"""The demo's traffic: calls through the logger, normal then drifted, and feedback labels.

Calls go one after another at `rate` per second, each a batch of `BATCH` instances, by turns
KServe v1 and v2, each with its own `X-Request-Id` (the id feedback names). The first
`NORMAL_INSTANCES` are normal: the reference and a few windows; the rest drifted. Every few
seconds the true classes of about half the instances sent so far go to the dashboard's
`POST /api/v1/feedback`, as ground truth arrives later in real life.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx
import numpy as np

from infermon.demo.data import MODEL_NAME, Batch, WineData

BATCH = 5  # instances per call
# The detection config the demo gives the monitor: a reference of the first 200 instances and
# windows of 200, so that at the default rate (100 instances/s) they fill in seconds.
REFERENCE_INSTANCES = 200
WINDOW_INSTANCES = 200
NORMAL_WINDOWS = 3  # normal windows after the reference, before the drift
NORMAL_INSTANCES = REFERENCE_INSTANCES + NORMAL_WINDOWS * WINDOW_INSTANCES
NORMAL_MAX_SHARE = 0.4  # of a short --duration
FEEDBACK_SHARE = 0.5  # instances labelled
FEEDBACK_EVERY_S = 3.0
# Without --duration the bar spans the normal traffic and this much of the drifted.
BAR_DRIFT_S = 30.0
BAR_WIDTH = 30
REDRAW_EVERY_S = 0.25
CALL_TIMEOUT_S = 10.0


@dataclass
class Tally:
    calls: int = 0
    instances: int = 0
    errors: int = 0
    labels: int = 0
    label_errors: int = 0
    phase: str = "normal"


@dataclass
class Traffic:
    """Runs in a thread (`start`), until `duration_s` (0: until `stop`)."""

    data: WineData
    logger_url: str
    dashboard_url: str
    api_token: str
    rate: float
    duration_s: float
    out: TextIO = sys.stderr
    tally: Tally = field(default_factory=Tally)
    finished: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _labels: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.normal_calls = math.ceil(NORMAL_INSTANCES / BATCH)
        if self.duration_s:
            self.normal_calls = min(
                self.normal_calls, int(NORMAL_MAX_SHARE * self.duration_s * self.rate)
            )
        self._run_id = uuid.uuid4().hex[:8]  # request ids new in every run, in any data dir
        self._rng = np.random.default_rng()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._progress = Progress(self, self.out)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        last_feedback = began
        try:
            with httpx.Client(timeout=CALL_TIMEOUT_S) as client:
                while not self._stop.is_set():
                    now = time.monotonic()
                    if self.duration_s and now - began >= self.duration_s:
                        break
                    if now - last_feedback >= FEEDBACK_EVERY_S:
                        self._send_feedback(client)
                        last_feedback = now
                    self._call(client)
                    self._progress.draw(time.monotonic() - began)
                    next_call = began + self.tally.calls / self.rate
                    self._stop.wait(max(0.0, next_call - time.monotonic()))
                self._send_feedback(client)
            self._progress.done(time.monotonic() - began)
        finally:  # whatever happened, the demo waiting on it goes on to stop
            self.finished.set()

    def _call(self, client: httpx.Client) -> None:
        drifted = self.tally.calls >= self.normal_calls
        self.tally.phase = "drifted" if drifted else "normal"
        batch = self.data.batch(BATCH, drifted)
        request_id = f"demo-{self._run_id}-{self.tally.calls:06d}"
        v1 = self.tally.calls % 2 == 0
        url = (f"{self.logger_url}/v1/models/{MODEL_NAME}:predict" if v1
               else f"{self.logger_url}/v2/models/{MODEL_NAME}/infer")  # fmt: skip
        body = {"instances": batch.rows} if v1 else v2_body(batch, request_id)
        self.tally.calls += 1
        self.tally.instances += len(batch.rows)
        try:
            answer = client.post(url, json=body, headers={"X-Request-Id": request_id})
            ok = answer.status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            self.tally.errors += 1
            return
        for row_index, label in enumerate(batch.labels):
            if self._rng.random() < FEEDBACK_SHARE:
                self._labels.append({"request_id": request_id, "row_index": row_index,
                                     "label": label})  # fmt: skip

    def _send_feedback(self, client: httpx.Client) -> None:
        if not self._labels:
            return
        labels, self._labels = self._labels, []
        try:
            answer = client.post(
                f"{self.dashboard_url}/api/v1/feedback", json=labels,
                headers={"Authorization": f"Bearer {self.api_token}"},
            )  # fmt: skip
            sent = answer.status_code == 200
        except httpx.HTTPError:
            sent = False
        if sent:
            self.tally.labels += len(labels)
        else:
            self.tally.label_errors += len(labels)


def v2_body(batch: Batch, request_id: str) -> dict[str, Any]:
    """One tensor per feature, of shape [batch]: the monitor names each column after it."""
    names = list(batch.rows[0])
    inputs = []
    for name in names:
        values = [row[name] for row in batch.rows]
        datatype = "BYTES" if isinstance(values[0], str) else "FP64"
        inputs.append({"name": name, "shape": [len(values)], "datatype": datatype, "data": values})
    return {"id": request_id, "inputs": inputs}


class Progress:
    """A text bar on stderr: redrawn in place on a terminal, a line per phase elsewhere."""

    def __init__(self, traffic: Traffic, out: TextIO) -> None:
        self._traffic = traffic
        self._out = out
        self._tty = out.isatty()
        self._drawn_at = 0.0
        self._phase = ""

    def _fraction(self, elapsed_s: float) -> float:
        traffic = self._traffic
        if traffic.duration_s:
            return min(1.0, elapsed_s / traffic.duration_s)
        normal_s = traffic.normal_calls / traffic.rate
        if elapsed_s < normal_s:
            return NORMAL_MAX_SHARE * elapsed_s / normal_s
        drifted = (elapsed_s - normal_s) / BAR_DRIFT_S
        return min(1.0, NORMAL_MAX_SHARE + (1 - NORMAL_MAX_SHARE) * drifted)

    def line(self, elapsed_s: float) -> str:
        tally = self._traffic.tally
        filled = round(self._fraction(elapsed_s) * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        errors = f", {tally.errors} failed" if tally.errors else ""
        label_errors = f" ({tally.label_errors} refused)" if tally.label_errors else ""
        sent = f"{tally.calls} calls, {tally.instances} instances{errors}"
        return (f"demo traffic [{bar}] {elapsed_s:4.0f} s  {tally.phase:<7}  {sent},"
                f" {tally.labels} labels{label_errors}")  # fmt: skip

    def draw(self, elapsed_s: float) -> None:
        phase = self._traffic.tally.phase
        if self._tty:
            if time.monotonic() - self._drawn_at >= REDRAW_EVERY_S or phase != self._phase:
                self._write("\r" + self.line(elapsed_s))
                self._drawn_at = time.monotonic()
        elif phase != self._phase:
            self._write(f"demo traffic: {phase} traffic from call {self._traffic.tally.calls}\n")
        self._phase = phase

    def done(self, elapsed_s: float) -> None:
        self._write(("\r" if self._tty else "") + self.line(elapsed_s) + "\n")

    def _write(self, text: str) -> None:
        """A closed terminal or pipe ends the bar, never the traffic."""
        if self._out.closed:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):
            self._out = open(os.devnull, "w")  # noqa: SIM115  (kept for the thread's life)
