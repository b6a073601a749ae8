"""Shared pieces of the benchmarks: servers to measure against, load generators, CPU and RSS."""

from __future__ import annotations

import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.processes import ServerProcess, free_port, http_ok  # noqa: E402

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
V1_BODY = '{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'


def require_tools(*names: str) -> None:
    """Exit with the install command when a load generator is missing, before any server starts."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)} on PATH: apt-get install {' '.join(missing)}")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS_PER_S, int(fields[12]) / CLOCK_TICKS_PER_S


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    return sum(cpu_times(pid))


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES


def start_logger(
    model_url: str,
    bootstrap: str,
    *extra: str,
    spool: Path | None = None,
    tree: Path = REPO_ROOT,
) -> tuple[ServerProcess, str]:
    """`infermon logger` from the source tree `tree` (this checkout unless told otherwise)."""
    port, admin_port = free_port(), free_port()
    spool = spool or Path(tempfile.mkdtemp(prefix="infermon-bench-spool-"))
    argv = [
        sys.executable, "-m", "infermon.cli", "logger", "--model-url", model_url,
        "--kafka-bootstrap", bootstrap, "--host", "127.0.0.1", "--port", str(port),
        "--admin-port", str(admin_port), "--spool-dir", str(spool), "--topic", "bench.payloads",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = ServerProcess("bench-logger", argv, cwd=tree, env=env)
    process.wait_until(lambda: http_ok(f"http://127.0.0.1:{admin_port}/readyz"), 20, "readiness")
    return process, f"http://127.0.0.1:{port}"


@dataclass
class LatencyRun:
    calls: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


def hey_fixed_rate(url: str, rate_per_s: int, duration_s: int, workers: int = 10) -> LatencyRun:
    """`hey` at a fixed total rate; percentiles computed from its per-request CSV."""
    output = subprocess.run(
        ["hey", "-z", f"{duration_s}s", "-c", str(workers), "-q", str(rate_per_s // workers),
         "-m", "POST", "-T", "application/json", "-d", V1_BODY, "-o", "csv", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(output)))
    ok = sorted(float(row["response-time"]) * 1000 for row in rows if row["status-code"] == "200")
    if not ok:
        raise RuntimeError(f"no successful calls to {url}")
    return LatencyRun(
        calls=len(rows),
        errors=len(rows) - len(ok),
        p50_ms=ok[len(ok) // 2],
        p99_ms=ok[min(len(ok) - 1, int(len(ok) * 0.99))],
        mean_ms=statistics.fmean(ok),
    )


WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{V1_BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk_saturation(url: str, duration_s: int, connections: int = 32) -> float:
    """Requests per second with `wrk` at saturation (non-2xx answers make it raise)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "-s", script.name, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    line = next(line for line in output.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])
