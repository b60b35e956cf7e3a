"""Scenario 5: cold start, in fresh processes: importing function_app, and devhost start to its first 200."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import REPO, Broker, clean_env, start_devhost
from bench.stats import median

IMPORT = "import time; t = time.perf_counter(); import function_app; print(time.perf_counter() - t)"


@dataclass(frozen=True)
class ColdStart:
    runs: int
    import_ms: float  # median time of `import function_app` inside a fresh interpreter
    process_ms: float  # median wall time of that whole `python -c`, interpreter start included
    devhost_ms: float  # median devhost spawn to the first 200 on /api/health


def run_coldstart(workdir: Path, broker: Broker, runs: int) -> ColdStart:
    imports, processes, devhosts = [], [], []
    for _ in range(runs):
        begin = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", IMPORT], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60
        )
        processes.append(time.monotonic() - begin)
        if done.returncode != 0:
            raise RuntimeError(f"import function_app failed:\n{done.stderr}")
        imports.append(float(done.stdout.strip().splitlines()[-1]))
    for i in range(runs):
        host = start_devhost(workdir, broker, f"devhost-cold-{i}")
        devhosts.append(host.ready_seconds)
        host.stop()
    return ColdStart(runs, median(imports) * 1000, median(processes) * 1000, median(devhosts) * 1000)
