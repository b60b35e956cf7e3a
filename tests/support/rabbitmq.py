"""A real 3-node RabbitMQ cluster on loopback, with MQTT on quorum queues and the relay's JWTs for desks.

Each node has its own name, ports and data dir; all share one Erlang cookie (a private HOME) and a private epmd
on a free port, clear of the Debian service's 4369/5672/25672. Nodes start one after the other and find each other from
`classic_config`; `+sbwt none` stops Erlang's busy-waiting from starving the two cores. The relay signs in as
the internal user `relay-service`; desks present their session token, which the oauth2 backend verifies with
the relay's HS256 key. `docs/brokers.md` shows the same configuration for a real deployment.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from relay.tokens import RABBITMQ_AUDIENCE, SERVICE_USER
from tests.support.ports import free_port, wait_for_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
INFRA = Path(__file__).resolve().parents[2] / "infra" / "rabbitmq"
INFRA_CONF, INFRA_ADVANCED = INFRA / "rabbitmq.conf", INFRA / "advanced.config"
ADMIN_USER = "relay-admin"
WS_PATH = "/ws"
PR_SET_PDEATHSIG = 1


def available() -> bool:
    return SERVER.exists() and Path(EPMD).exists()


def password_hash(password: str) -> str:
    """RabbitMQ's salted SHA-256, as its definitions file expects."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def advanced_config(signing_key: str) -> str:
    """infra/rabbitmq/advanced.config with the key in, as an Erlang binary (`"` and backslash escaped)."""
    key = signing_key.replace("\\", "\\\\").replace('"', '\\"')
    return INFRA_ADVANCED.read_text().replace("@RELAY_SIGNING_KEY@", key)


@dataclass
class Node:
    name: str
    dir: Path
    mqtt_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    amqp_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}{WS_PATH}"


class RabbitCluster:
    """Started once per test session; `kill(i)` and `start_node(i)` let a test take one node down and back."""

    kind = "rabbitmq"

    def __init__(self, signing_key: str, size: int = 3, *, ready_timeout: float = 180.0) -> None:
        self.signing_key = signing_key
        self.ready_timeout = ready_timeout
        self.service_password = secrets.token_urlsafe(24)
        self.admin_password = secrets.token_urlsafe(24)
        self._dir = Path(tempfile.mkdtemp(prefix="rabbitmq-"))
        tag = secrets.token_hex(3)
        self.nodes = [Node(f"relay{i + 1}-{tag}@localhost", self._dir / f"node{i + 1}") for i in range(size)]
        self.epmd_port = free_port()
        self._epmd: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None
        self._turn = 0
        self._write_config()

    @property
    def mqtt_port(self) -> int:
        """Where the suites connect a desk: nodes 2 and 3 in turn, so desks sit on other nodes than the relay
        (which `relay_env` puts on node 1) and two desks of one test usually on different nodes."""
        self._turn += 1
        return self.nodes[1 + self._turn % (len(self.nodes) - 1)].mqtt_port

    @property
    def ws_port(self) -> int:
        return self.nodes[1].ws_port

    def relay_env(self) -> dict[str, str]:
        return {
            "MQTT_URL": ",".join(f"mqtt://127.0.0.1:{n.mqtt_port}" for n in self.nodes),
            "MQTT_BROWSER_URL": ",".join(n.ws_url for n in self.nodes[1:] + self.nodes[:1]),
            "MQTT_USERNAME": SERVICE_USER,
            "MQTT_PASSWORD": self.service_password,
            "MQTT_BROKER_ACCESS": "rabbitmq",
            "RABBITMQ_MANAGEMENT_URL": ",".join(n.management_url for n in self.nodes),
            "RABBITMQ_MANAGEMENT_USERNAME": ADMIN_USER,
            "RABBITMQ_MANAGEMENT_PASSWORD": self.admin_password,
        }

    def _write_config(self) -> None:
        home = self._dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        definitions = {
            "users": [
                {
                    "name": name,
                    "password_hash": password_hash(password),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": tags,
                }
                for name, password, tags in (
                    (SERVICE_USER, self.service_password, []),
                    (ADMIN_USER, self.admin_password, ["administrator"]),
                )
            ],
            "vhosts": [{"name": "/"}],
            "permissions": [
                {"user": name, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
                for name in (SERVICE_USER, ADMIN_USER)
            ],
        }
        (self._dir / "definitions.json").write_text(json.dumps(definitions))
        (self._dir / "advanced.config").write_text(advanced_config(self.signing_key))
        for node in self.nodes:
            node.dir.mkdir()
            (node.dir / "rabbitmq.conf").write_text(self._node_config(node))

    def _node_config(self, node: Node) -> str:
        """infra/rabbitmq/rabbitmq.conf with this node's ports and loopback addresses, this cluster's node
        names, the users from a definitions file, and quiet logs: the tested configuration is the shipped one."""
        settings = {}
        for line in INFRA_CONF.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, value = (part.strip() for part in line.split("=", 1))
                settings[key] = value
        settings = {k: v for k, v in settings.items() if not k.startswith("cluster_formation.classic_config.nodes.")}
        settings.update(
            {
                "mqtt.listeners.tcp.default": f"127.0.0.1:{node.mqtt_port}",
                "web_mqtt.tcp.ip": "127.0.0.1",
                "web_mqtt.tcp.port": str(node.ws_port),
                "management.tcp.ip": "127.0.0.1",
                "management.tcp.port": str(node.management_port),
                **{f"cluster_formation.classic_config.nodes.{i + 1}": n.name for i, n in enumerate(self.nodes)},
                "log.console": "false",
                "log.file.level": "warning",
            }
        )
        if node is self.nodes[0]:
            # One node imports the users: two importing at once while the cluster forms can fail a boot with
            # `user_already_exists`. The others get them from the cluster when they join.
            settings["definitions.import_backend"] = "local_filesystem"
            settings["definitions.local.path"] = str(self._dir / "definitions.json")
        assert (
            settings["web_mqtt.ws_path"] == WS_PATH and settings["auth_oauth2.resource_server_id"] == RABBITMQ_AUDIENCE
        )
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def _env(self, node: Node) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **keep,
            "HOME": str(self._dir / "home"),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self._dir / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(INFRA / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(node.dir / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
            "RUNNING_UNDER_SYSTEMD": "true",  # exec the VM, so the pid we hold is the node's own
        }

    def start(self) -> None:
        """One node after the other, each joining the cluster the ones before it formed. Started together they
        form it faster, but then two may join the MQTT plugin's client-id Raft cluster at once and one is left out
        (`$ra_join ... NOT appended`): lose a member later and the rest have no majority, so every MQTT CONNECT
        fails with "client ID registration timed out"."""
        started = time.monotonic()
        self._epmd = subprocess.Popen(
            [EPMD, "-port", str(self.epmd_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        wait_for_port(self.epmd_port, 10)
        try:
            for i in range(len(self.nodes)):
                self._spawn(i)
                self.wait_ready(i, max(1.0, started + self.ready_timeout - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started

    def _spawn(self, i: int) -> None:
        node = self.nodes[i]
        log = (node.dir / "console.log").open("ab")
        node.proc = subprocess.Popen(
            [str(SERVER)],
            env=self._env(node),
            cwd=node.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def start_node(self, i: int, timeout: float | None = None) -> float:
        """Restart one node (after `kill`), wait until it has rejoined; returns the seconds that took."""
        started = time.monotonic()
        self._spawn(i)
        self.wait_ready(i, timeout or self.ready_timeout)
        return time.monotonic() - started

    def kill(self, i: int) -> None:
        """`kill -9` the node's VM (and whatever it spawned), as a crash would."""
        node = self.nodes[i]
        proc, node.proc = node.proc, None
        if proc is None:
            return
        _signal_group(proc, signal.SIGKILL)
        proc.wait(10)

    def wait_ready(self, i: int, timeout: float) -> None:
        node = self.nodes[i]
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if node.proc is None or node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited before it was ready:\n{self.log(i)[-3000:]}")
            try:
                nodes = self.api(i, "GET", "/api/nodes", timeout=2).json()
                running = sorted(n["name"] for n in nodes if n.get("running"))
                if running == sorted(n.name for n in self.nodes if n.proc is not None):
                    vhost = self._vhost_state(i, node.name)
                    if vhost == "running":
                        wait_for_port(node.mqtt_port, max(0.5, deadline - time.monotonic()))
                        wait_for_port(node.ws_port, max(0.5, deadline - time.monotonic()))
                        return
                    last = f"vhost '/' is {vhost} on {node.name}"
                else:
                    last = f"running: {running}"
            except (httpx.HTTPError, ValueError, TypeError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise TimeoutError(f"{node.name} not ready after {timeout:.0f}s ({last}):\n{self.log(i)[-3000:]}")

    def _vhost_state(self, i: int, name: str) -> str:
        """A node that joined the cluster after booting alone may have vhost '/' stopped, and then refuses every
        MQTT CONNECT (`vhost_is_down`, a closed socket to the client). Start it there, as an operator would."""
        state = str(self.api(i, "GET", "/api/vhosts/%2F", timeout=2).json().get("cluster_state", {}).get(name))
        if state not in ("running", "None"):
            with contextlib.suppress(httpx.HTTPError):
                self.api(i, "POST", f"/api/vhosts/%2F/start/{name}", timeout=5)
        return state

    def api(self, i: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 10)
        node = self.nodes[i]
        return httpx.request(
            method, node.management_url + path, auth=(ADMIN_USER, self.admin_password), **kwargs
        ).raise_for_status()

    def connections(self, i: int = 0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api(i, "GET", "/api/connections").json()
        return found

    def log(self, i: int) -> str:
        logs = [*sorted((self.nodes[i].dir / "log").glob("*.log")), self.nodes[i].dir / "console.log"]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.exists())

    def memory(self, i: int) -> int:
        """Bytes the node's VM holds, from the kernel (RSS), comparable with Mosquitto's."""
        proc = self.nodes[i].proc
        assert proc is not None
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node (they stop together), then SIGKILL what is left; epmd last."""
        running = [n.proc for n in self.nodes if n.proc is not None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)
            proc.wait(10)
        for node in self.nodes:
            node.proc = None
        if self._epmd is not None:
            self._epmd.kill()
            self._epmd.wait(10)
            self._epmd = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _die_with_parent() -> None:
    """If pytest itself is killed (a timeout, ^C twice), the kernel kills the node too: no orphaned VMs."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """The node runs in its own session: signal the VM and its helpers (erl_child_setup, inet_gethost)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
