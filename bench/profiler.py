"""The throughput path under py-spy: which code holds each worker's interpreter lock, sampled from outside.

An in-process sampler has to take the GIL to look, so it never sees the thread that holds it; and charging a
thread's CPU clock to wherever it stands at the next sample put the work of a thread that then queued on the
store's write lock at the lock. py-spy reads the stacks from another process, and `--gil` keeps only the
thread holding the GIL: where each worker's Python time goes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 100  # samples per second per process
ROLES = (  # the first frame, from the stack's root, that says what a thread is for
    ("_worker", "function threads (the relay's code)"),
    ("Client._thread_main", "paho network loop"),
    ("Outbox._record_acks", "outbox: recording PUBACKs"),
    ("SqliteStore._checkpoint_loop", "SQLite checkpointer"),
    ("BaseEventLoop.run_forever", "event loop (uvicorn)"),
)


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (requirements-dev.txt pins it)")
    return found


def start(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample devhost and its worker processes for `seconds`, in py-spy's raw (collapsed stack) format."""
    cmd = [py_spy(), "record", "-p", str(pid), "--subprocesses", "--gil", "--nonblocking", "-r", str(RATE)]
    cmd += ["-d", str(seconds), "-f", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def label(frame: str) -> str:
    """`Class.function (package/module.py:line)` as `package:function`; py-spy gives paths from sys.path."""
    name, _, location = frame.rpartition(" (")
    path = location.rsplit(":", 1)[0]
    return f"{path.split('/', 1)[0].removesuffix('.py')}:{name.rsplit('.', 1)[-1]}"


def split(line: str) -> tuple[str, list[str], int]:
    """A raw line: `process <pid>:"<cmdline>";` for devhost then the worker, frames, and a count. A command
    line may itself hold a `;`, so process frames are cut at their closing quote."""
    stack, _, count = line.rstrip().rpartition(" ")
    pid = ""
    while stack.startswith("process "):
        close = stack.index('"', stack.index('"') + 1)
        pid = stack[len("process ") : stack.index(":")]
        stack = stack[close + 2 :]
    return pid, stack.split(";") if stack else [], int(count)


def summarize(raw: Path, seconds: float) -> dict[str, Any]:
    per_process: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        pid, frames, n = split(line)
        total += n
        per_process[pid] += n
        roles[next((r for key, r in ROLES for f in frames if f.startswith(key + " ")), "other")] += n
        for key in {label(f) for f in frames}:
            inclusive[key] += n
        if frames:
            own[label(frames[-1])] += n
    return {
        "rate": RATE,
        "seconds": seconds,
        "samples": total,
        "gil_share_by_process": sorted((n / (RATE * seconds) for n in per_process.values()), reverse=True),
        "roles": dict(roles.most_common()),
        "inclusive": dict(inclusive.most_common(120)),
        "self": dict(own.most_common(40)),
    }


def finish(proc: subprocess.Popen[bytes], out: Path, seconds: float) -> dict[str, Any]:
    """The summary once py-spy has written its file, or RuntimeError with what it said."""
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise RuntimeError("py-spy did not finish") from None
    if code != 0 or not out.exists():
        said = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
        raise RuntimeError(f"py-spy exited with {code}: {said}")
    return summarize(out, seconds)
