"""The local host's children: none outlives it, and the embedded broker is restarted when it dies.

Each child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), so even `kill -9` of the
devhost leaves no broker or worker holding the ports. SIGTERM and SIGINT become `Stopped`, so the code that
stops the children always runs; uvicorn re-raises the signal it caught after its own shutdown, which used to
kill the devhost before that code ran, and left the broker behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BROKER_READY_SECONDS = 20.0
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
STABLE_SECONDS = 30.0  # a broker up this long starts the backoff over
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: a child only calls into it


class Stopped(BaseException):
    """SIGTERM or SIGINT: stop every child, then exit 0."""


def stop_on_signals() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def die_with_parent(parent: int) -> None:
    """In a child: SIGKILL when `parent` dies; exit now if it already has (the fork raced its death)."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


class BrokerFailed(RuntimeError):
    pass


def start_broker(env: dict[str, str], mqtt_port: int, ws_port: int) -> subprocess.Popen[str]:
    """The embedded broker as a child process, so a slow subscriber never stalls the functions."""
    parent = os.getpid()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(mqtt_port),
            "--ws-port",
            str(ws_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,  # Ctrl-C reaches the devhost alone, which then stops the broker in its own time
        preexec_fn=lambda: die_with_parent(parent),  # one prctl call after fork, no locks taken
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + BROKER_READY_SECONDS
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("broker ready"):
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise BrokerFailed(f"the broker did not start on ports {mqtt_port}/{ws_port}")


def stop_process(proc: subprocess.Popen[str] | subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def say(message: str) -> None:
    print(f"devhost: {message}", file=sys.stderr, flush=True)


class BrokerSupervisor:
    """Starts the broker, restarts it with backoff whenever it exits unasked, and stops it on `stop()`.

    Restarts happen on the watcher thread, which lives until `stop()`: PR_SET_PDEATHSIG fires when the thread
    that started a child ends, so a broker can never outlive the thread that owns it either."""

    def __init__(self, env: dict[str, str], mqtt_port: int, ws_port: int) -> None:
        self._env = env
        self._ports = (mqtt_port, ws_port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._watcher = threading.Thread(target=self._watch, name="broker-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Raises BrokerFailed when the first start fails: a taken port is the developer's to fix."""
        self._proc = start_broker(self._env, *self._ports)
        self._watcher.start()

    def _watch(self) -> None:
        attempt, started = 0, time.monotonic()
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_SECONDS:
                attempt = 0
            delay = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
            attempt += 1
            say(f"the broker exited with {code}; restarting it in {delay:g} s (attempt {attempt})")
            if self._stopping.wait(delay):
                return
            try:
                fresh = start_broker(self._env, *self._ports)
            except BrokerFailed as exc:
                say(f"{exc}; trying again")
                continue
            with self._lock:
                self._proc, started = fresh, time.monotonic()
                stopping = self._stopping.is_set()
            if stopping:
                stop_process(fresh)
                return
            say(f"the broker is back (pid {fresh.pid})")

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        stop_process(proc)
        if self._watcher.is_alive():
            self._watcher.join(BROKER_READY_SECONDS)
