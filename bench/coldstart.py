"""Scenario 5: cold start, in fresh processes: importing function_app, and devhost start to its first 200."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import REPO, Broker, clean_env, start_devhost
from bench.stats import median

IMPORT = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
# The libraries `import function_app` loads, imported alone: what our own modules add on top is the ratio.
FLOOR = "azure.functions, twilio.rest, twilio.request_validator, paho.mqtt.client, jwt, phonenumbers"


@dataclass(frozen=True)
class ColdStart:
    runs: int
    import_ms: float  # median time of `import function_app` inside a fresh interpreter
    process_ms: float  # median wall time of that whole `python -c`, interpreter start included
    devhost_ms: float  # median devhost spawn to the first 200 on /api/health
    floor_ms: float  # median time of importing FLOOR alone, in fresh interpreters of the same run


def _import_seconds(module: str) -> tuple[float, float]:
    """In a fresh interpreter: the import's own time, and the whole process's."""
    begin = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", IMPORT.format(module)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1]), time.monotonic() - begin


def run_coldstart(workdir: Path, broker: Broker, runs: int) -> ColdStart:
    imports, processes, devhosts, floors = [], [], [], []
    for _ in range(runs):
        floors.append(_import_seconds(FLOOR)[0])  # alternated, so drift weighs on both alike
        took, whole = _import_seconds("function_app")
        imports.append(took)
        processes.append(whole)
    for i in range(runs):
        host = start_devhost(workdir, broker, f"devhost-cold-{i}")
        devhosts.append(host.ready_seconds)
        host.stop()
    return ColdStart(
        runs, median(imports) * 1000, median(processes) * 1000, median(devhosts) * 1000, median(floors) * 1000
    )
