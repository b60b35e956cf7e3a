"""Scenario 5: cold start, in fresh processes: importing function_app, and devhost start to its first 200."""

from __future__ import annotations

import shutil
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
APP = ("function_app.py", "functions", "relay")  # what a publish ships (.funcignore leaves the rest out)
# The publish step in docs/deploy.md: bytecode checked against the source's hash, so a package's file times
# (a zip's, a read-only mount's) do not matter and an edited file is never run stale.
COMPILE = ("-m", "compileall", "-q", "-f", "--invalidation-mode", "checked-hash")


@dataclass(frozen=True)
class ColdStart:
    runs: int
    import_ms: float  # median time of `import function_app` inside a fresh interpreter, as published (bytecode)
    source_ms: float  # the same from source alone, each module compiled as it loads (no bytecode shipped)
    process_ms: float  # median wall time of that whole `python -c`, interpreter start included
    devhost_ms: float  # median devhost spawn to the first 200 on /api/health
    floor_ms: float  # median time of importing FLOOR alone, in fresh interpreters of the same run


def _package(workdir: Path, name: str, compiled: bool) -> Path:
    """A copy of what a publish ships, with our bytecode compiled as docs/deploy.md says, or without any."""
    root = workdir / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for part in APP:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / part)
    if compiled:
        subprocess.run([sys.executable, *COMPILE, *APP], cwd=root, check=True, timeout=120)
    return root


def _import_seconds(module: str, cwd: Path = REPO) -> tuple[float, float]:
    """In a fresh interpreter: the import's own time, and the whole process's."""
    begin = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", IMPORT.format(module)],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1]), time.monotonic() - begin


def run_coldstart(workdir: Path, broker: Broker, runs: int) -> ColdStart:
    published = _package(workdir, "package", compiled=True)
    source = _package(workdir, "package-source", compiled=False)
    imports, sources, processes, devhosts, floors = [], [], [], [], []
    for _ in range(runs):
        floors.append(_import_seconds(FLOOR)[0])  # alternated, so drift weighs on all alike
        took, whole = _import_seconds("function_app", published)
        imports.append(took)
        processes.append(whole)
        sources.append(_import_seconds("function_app", source)[0])
    for i in range(runs):
        host = start_devhost(workdir, broker, f"devhost-cold-{i}")
        devhosts.append(host.ready_seconds)
        host.stop()
    return ColdStart(
        runs,
        median(imports) * 1000,
        median(sources) * 1000,
        median(processes) * 1000,
        median(devhosts) * 1000,
        median(floors) * 1000,
    )
