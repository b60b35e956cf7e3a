"""`python -m bench.sampler OUT.json -- -m devhost ARGS...`: devhost under a sampling profiler of every thread.

pyinstrument follows only the thread it starts on, but the functions run in a thread pool; so this samples
`sys._current_frames()` every 10 ms and charges each thread's CPU time since the previous sample (its
pthread CPU clock) to its current stack. Threads that used no CPU are counted where they wait instead: parked
(select, an idle pool thread) or blocked (a lock, a PUBACK, a SQLite busy wait), which is where a GIL-bound
process loses its time under load.
"""

from __future__ import annotations

import json
import runpy
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType

INTERVAL = 0.01
PARKED = {
    ("threading.py", "wait"),
    ("selectors.py", "select"),
    ("client.py", "_loop"),  # paho's loop thread in select()
    ("thread.py", "_worker"),  # an idle ThreadPoolExecutor worker
    ("queue.py", "get"),
}
SITE = "site-packages/"
ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def where(path: str) -> str:
    """A short package name for a source path: site-packages/<pkg>, the repo's top folder, or stdlib:<module>."""
    if SITE in path:
        return path.split(SITE, 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(ROOT):
        return path[len(ROOT) :].split("/", 1)[0].removesuffix(".py")
    return "stdlib:" + Path(path).stem


def label(frame: FrameType) -> str:
    return f"{where(frame.f_code.co_filename)}:{frame.f_code.co_name}"


def role(name: str) -> str:
    """What a thread does in devhost, from its name."""
    if name == "MainThread":
        return "event loop (uvicorn, starlette, sandbox)"
    if name.startswith("AnyIO worker"):
        return "function threads (the relay's code)"
    if name.startswith("paho"):
        return "paho network loop"
    return "other"


def top(counts: dict[str, float], n: int) -> dict[str, float]:
    return {k: round(v, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:n]}


class Sampler:
    def __init__(self) -> None:
        self.cpu_by_role: defaultdict[str, float] = defaultdict(float)
        self.cpu_inclusive: defaultdict[str, float] = defaultdict(float)
        self.blocked: Counter[str] = Counter()
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(INTERVAL):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except OSError:
                    continue
                used = cpu - self._last.get(ident, cpu)
                self._last[ident] = cpu
                self._sample(frame, used, role(names.get(ident, "")))

    def _sample(self, frame: FrameType, used: float, thread_role: str) -> None:
        parked = (Path(frame.f_code.co_filename).name, frame.f_code.co_name) in PARKED
        if used <= 0:
            if not parked:
                self.blocked[label(frame)] += 1
            return
        self.cpu_by_role[thread_role] += used
        if parked:  # the work happened between samples; only the thread's role is known
            return
        seen: set[str] = set()
        f: FrameType | None = frame
        while f is not None:
            key = label(f)
            if key not in seen:
                seen.add(key)
                self.cpu_inclusive[key] += used
            f = f.f_back

    def report(self, seconds: float) -> dict[str, object]:
        return {
            "seconds": round(seconds, 1),
            "interval_ms": INTERVAL * 1000,
            "cpu_by_role": top(self.cpu_by_role, 10),
            "cpu_inclusive": top(self.cpu_inclusive, 80),
            "blocked_samples": dict(self.blocked.most_common(10)),
        }


def main() -> int:
    out = Path(sys.argv[1])
    rest = sys.argv[sys.argv.index("--") + 1 :]
    if rest[:1] != ["-m"] or len(rest) < 2:
        raise SystemExit("usage: python -m bench.sampler OUT.json -- -m MODULE ARGS...")
    sys.argv = [rest[1], *rest[2:]]
    # uvicorn re-raises SIGTERM after its graceful shutdown; exit through `finally` so the report is written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    sampler = Sampler()
    begin = time.monotonic()
    sampler.start()
    try:
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        sampler.stop()
        out.write_text(json.dumps(sampler.report(time.monotonic() - begin), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
