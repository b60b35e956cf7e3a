"""`python -m devhost` as a subprocess on free ports, against a broker the test controls."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from tests.support.broker import BrokerProcess
from tests.support.mosquitto import MosquittoProcess
from tests.support.ports import free_port
from tests.support.processes import terminate
from tests.support.rabbitmq import RabbitCluster

REPO = Path(__file__).resolve().parents[2]


class DevhostProcess:
    def __init__(
        self,
        broker: BrokerProcess | MosquittoProcess | RabbitCluster | None,
        data_dir: Path,
        *,
        access_code: str,
        signing_key: str,
        extra_env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        workers: int = 1,
    ) -> None:
        self._broker = broker  # None: the devhost runs its own embedded broker, on these ports
        self.mqtt_port = broker.mqtt_port if broker else free_port()
        self.ws_port = broker.ws_port if broker else free_port()
        self.http_port = free_port()
        self.blob_port = free_port()  # Azurite's blob service, for pictures from the desk
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.workers = workers
        self.sandbox_port = free_port() if workers > 1 else self.http_port  # several workers: the sandbox apart
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}/sandbox"
        self.access_code = access_code
        self.admin_code = secrets.token_urlsafe(16)
        self.signing_key = signing_key
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.data_dir = data_dir
        self.extra_env = extra_env or {}
        self.ready_timeout = ready_timeout
        self.log_path = data_dir / "devhost.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MQTT_", "RELAY_"))}
        env.update(
            RELAY_ACCESS_CODE=self.access_code,
            RELAY_ADMIN_CODE=self.admin_code,
            RELAY_SIGNING_KEY=self.signing_key,
            MQTT_PUBLISH_TIMEOUT_SECONDS="2",
            RELAY_STORE=str(self.data_dir / "relay.sqlite3"),
            TWILIO_ACCOUNT_SID=self.account_sid,
            TWILIO_AUTH_TOKEN=self.auth_token,
        )
        if self._broker is not None:
            env.update(
                MQTT_URL=f"mqtt://127.0.0.1:{self.mqtt_port}", MQTT_BROWSER_URL=f"ws://127.0.0.1:{self.ws_port}/mqtt"
            )
            env.update(self._broker.relay_env())
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "devhost", "--http-port", str(self.http_port), "--data-dir", str(self.data_dir)]
        cmd += [
            "--mqtt-port",
            str(self.mqtt_port),
            "--ws-port",
            str(self.ws_port),
            "--sandbox",
            "--blob-port",
            str(self.blob_port),
        ]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers), "--sandbox-port", str(self.sandbox_port)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"devhost exited with {self._proc.returncode}:\n{self.log()}")
            try:
                ready = httpx.get(f"{self.base_url}/api/health", timeout=1).status_code == 200
                # With workers the sandbox listens in the supervisor, apart: ready when it answers too.
                if ready and httpx.get(f"{self.sandbox_url}/calls", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"devhost not healthy after {self.ready_timeout}s:\n{self.log()}")

    @property
    def broker(self) -> BrokerProcess | MosquittoProcess | RabbitCluster:
        assert self._broker is not None, "this devhost runs its own broker"
        return self._broker

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        terminate(proc, timeout=8)

    def session(self, desk: str | None = None, staff: str = "Maria", **extra: Any) -> dict[str, Any]:
        """A new staff session at a desk (the default desk, Reception, unless named), as a browser opens one."""
        body: dict[str, Any] = {"accessCode": self.access_code, "staffName": staff, **extra}
        if desk is not None:
            body["desk"] = desk
        r = httpx.post(f"{self.base_url}/api/session", json=body, timeout=10)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An operator's call to /api/admin/..., with the admin code."""
        headers = {"X-Admin-Code": self.admin_code, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.base_url}/api/admin/{path}", headers=headers, timeout=10, **kwargs)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
