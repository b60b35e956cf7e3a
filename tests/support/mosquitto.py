"""Debian's Mosquitto with its dynamic-security plugin, as a production broker for the suites.

The relay is the dynsec admin (`relay-service`) and may publish under the topic prefix; desks get no rights
until the relay provisions a client and role for each connection.
"""

from __future__ import annotations

import getpass
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import terminate

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
SERVICE_USER = "relay-service"


def available() -> bool:
    return Path(MOSQUITTO).exists() and Path(DYNSEC_PLUGIN).exists() and shutil.which("mosquitto_ctrl") is not None


class MosquittoProcess:
    kind = "mosquitto"

    def __init__(self, topic_prefix: str = "sms", *, ready_timeout: float = 15.0) -> None:
        self.topic_prefix = topic_prefix
        self.ready_timeout = ready_timeout
        self.mqtt_port = free_port()
        self.ws_port = free_port()
        self.service_password = secrets.token_urlsafe(24)
        self._dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._configure()

    def _configure(self) -> None:
        dynsec = self._dir / "dynsec.json"
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(dynsec), SERVICE_USER, self.service_password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        data = json.loads(dynsec.read_text())
        for role in data["roles"]:
            if role["rolename"] == "admin":
                role["acls"].append({"acltype": "publishClientSend", "topic": f"{self.topic_prefix}/#", "allow": True})
        dynsec.write_text(json.dumps(data))
        (self._dir / "mosquitto.conf").write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    f"user {getpass.getuser()}",  # as root Mosquitto would switch to a user who cannot read this dir
                    "allow_anonymous false",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    f"listener {self.mqtt_port} 127.0.0.1",
                    f"listener {self.ws_port} 127.0.0.1",
                    "protocol websockets",
                    f"plugin {DYNSEC_PLUGIN}",
                    f"plugin_opt_config_file {dynsec}",
                    "",
                ]
            )
        )

    def relay_env(self) -> dict[str, str]:
        return {
            "MQTT_USERNAME": SERVICE_USER,
            "MQTT_PASSWORD": self.service_password,
            "MQTT_BROKER_ACCESS": "mosquitto-dynsec",
        }

    def start(self) -> None:
        log = (self._dir / "mosquitto.log").open("ab")
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self._dir / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.ready_timeout
        wait_for_port(self.mqtt_port, self.ready_timeout)
        wait_for_port(self.ws_port, max(0.5, deadline - time.monotonic()))

    def stop(self, timeout: float = 5.0) -> int | None:
        proc, self._proc = self._proc, None
        return terminate(proc, timeout)

    def restart(self) -> int | None:
        code = self.stop()
        self.start()
        return code

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
