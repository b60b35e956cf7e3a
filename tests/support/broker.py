"""Run the development broker (`python -m broker`) as a real subprocess on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.ports import free_port
from tests.support.processes import terminate

REPO = Path(__file__).resolve().parents[2]
READY_PREFIX = "broker ready "


class BrokerProcess:
    """`signing_key` and `topic_prefix` are read at each start, so a test can rotate the key and `restart()`."""

    def __init__(self, signing_key: str, topic_prefix: str = "sms", *, ready_timeout: float = 20.0) -> None:
        self.signing_key = signing_key
        self.topic_prefix = topic_prefix
        self.ready_timeout = ready_timeout
        self.mqtt_port = free_port()
        self.ws_port = free_port()
        self.returncode: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        """Return once the broker printed its readiness line; raise if it exits or is not ready in time."""
        if self._proc is not None:
            raise RuntimeError("broker already running")
        env = dict(os.environ, RELAY_SIGNING_KEY=self.signing_key, MQTT_TOPIC_PREFIX=self.topic_prefix)
        cmd = [
            sys.executable,
            "-m",
            "broker",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(self.mqtt_port),
            "--ws-port",
            str(self.ws_port),
        ]
        self._ready.clear()
        self.returncode = None
        self._proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._watch_stdout, args=(self._proc,), daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"broker exited with {code} before it was ready")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"broker not ready after {self.ready_timeout}s")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; return the exit code (negative when killed)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self.returncode
        self.returncode = terminate(proc, timeout)
        return self.returncode

    kind = "amqtt"

    def relay_env(self) -> dict[str, str]:
        """What the relay needs to use this broker: nothing beyond the shared signing key."""
        return {}

    def restart(self) -> int | None:
        """Same ports, fresh process (and so fresh in-memory state); return the old process's exit code."""
        code = self.stop()
        self.start()
        return code

    def _watch_stdout(self, proc: subprocess.Popen[str]) -> None:
        """Keep draining stdout so the broker never blocks on a full pipe."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(READY_PREFIX):
                self._ready.set()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
