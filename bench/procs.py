"""The processes a benchmark runs: Mosquitto, the embedded amqtt broker, devhost and the original design.

Everything binds to 127.0.0.1 on free ports, logs to a file in the run's work directory, and is stopped by pid.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from relay.tokens import SERVICE_USER, Staff, TokenIssuer
from relay.topics import Topics

REPO = Path(__file__).resolve().parent.parent
SCRUBBED = ("TWILIO_", "MQTT_", "RELAY_", "SEND_LIMIT_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "0" * 31 + "1"
FROM_NUMBER = "+14155550100"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Until something accepts on the port; fails fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {port} after {timeout:g}s")


def clean_env(**extra: str) -> dict[str, str]:
    """The harness's environment without a developer's Twilio account, broker or proxy."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(SCRUBBED)}
    env.update(extra)
    return env


def proc_status(pid: int, field_name: str) -> int:
    """A memory figure from /proc/<pid>/status, in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field_name)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


@dataclass
class Process:
    """A child process with its log file; stop() is SIGTERM, then SIGKILL after a bounded wait."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def peak_rss(self) -> int:
        """Of this process and its direct children (devhost's worker processes), summed."""
        return sum(proc_status(pid, "VmHWM") for pid in (self.pid, *children(self.pid)))

    def stop(self, timeout: float = 8.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def spawn(name: str, cmd: list[str], workdir: Path, env: dict[str, str] | None = None) -> Process:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(cmd, cwd=REPO, env=env or clean_env(), stdout=out, stderr=subprocess.STDOUT)
    return Process(name, popen, log)


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A throwaway self-signed P-256 certificate for 127.0.0.1, which clients trust as their CA."""
    cert, key = workdir / "broker-cert.pem", workdir / "broker-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@dataclass
class Broker:
    """One broker under test with its three loopback listeners: MQTT/TCP, MQTT/WebSocket and MQTT/TLS."""

    kind: str  # "amqtt" or "mosquitto"
    process: Process
    mqtt_port: int
    ws_port: int
    tls_port: int
    signing_key: str
    _issuer: TokenIssuer = field(init=False)

    def __post_init__(self) -> None:
        self._issuer = TokenIssuer(self.signing_key, Topics("sms"))

    def service_credentials(self) -> tuple[str, str]:
        """amqtt checks them; Mosquitto (anonymous for the benchmark) ignores them."""
        now = datetime.now(UTC)
        return SERVICE_USER, self._issuer.service_token(now, timedelta(hours=2))

    def desk_token(self, web_app_id: str, session_id: str) -> str:
        """A token for one staff session at a desk; its client ids must start `<desk>-<session>-`."""
        staff = Staff("bench", "Bench")
        token, _ = self._issuer.issue(web_app_id, session_id, staff, datetime.now(UTC), timedelta(hours=2))
        return token

    def stop(self) -> None:
        self.process.stop()


def start_mosquitto(workdir: Path, cert: Path, key: Path, signing_key: str) -> Broker:
    """Anonymous on loopback: JWT/dynsec provisioning for Mosquitto is separate work."""
    mqtt_port, ws_port, tls_port = free_port(), free_port(), free_port()
    lines = [
        "per_listener_settings false",
        "allow_anonymous true",
        "persistence false",
        "set_tcp_nodelay true",
        "max_queued_messages 1000000",
        "max_connections -1",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        f"listener {mqtt_port} 127.0.0.1",
        f"listener {ws_port} 127.0.0.1",
        "protocol websockets",
        f"listener {tls_port} 127.0.0.1",
        f"certfile {cert}",
        f"keyfile {key}",
    ]
    if os.geteuid() == 0:
        lines.insert(0, "user root")  # else Mosquitto drops to 'mosquitto', which cannot read the key
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = spawn("mosquitto", ["/usr/sbin/mosquitto", "-c", str(conf)], workdir)
    for port in (mqtt_port, ws_port, tls_port):
        wait_port(port, proc.popen)
    return Broker("mosquitto", proc, mqtt_port, ws_port, tls_port, signing_key)


def start_amqtt(workdir: Path, cert: Path, key: Path, signing_key: str) -> Broker:
    """`python -m broker` plus a TLS listener (bench.amqtt_tls), since the product's CLI has none."""
    mqtt_port, ws_port, tls_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "bench.amqtt_tls", "--mqtt-port", str(mqtt_port), "--ws-port", str(ws_port)]
    cmd += ["--tls-port", str(tls_port), "--certfile", str(cert), "--keyfile", str(key)]
    env = clean_env(RELAY_SIGNING_KEY=signing_key, MQTT_TOPIC_PREFIX="sms")
    proc = spawn("amqtt", cmd, workdir, env)
    for port in (mqtt_port, ws_port, tls_port):
        wait_port(port, proc.popen)
    return Broker("amqtt", proc, mqtt_port, ws_port, tls_port, signing_key)


@dataclass
class Devhost:
    process: Process
    base_url: str
    access_code: str
    ready_seconds: float

    def session(self, desk: str | None = None) -> dict[str, object]:
        body = {"accessCode": self.access_code, "staffName": "Bench", **({"desk": desk} if desk else {})}
        r = httpx.post(f"{self.base_url}/api/session", json=body, timeout=10)
        r.raise_for_status()
        data: dict[str, object] = r.json()
        return data

    def stop(self) -> None:
        self.process.stop()


def start_devhost(
    workdir: Path,
    broker: Broker,
    name: str,
    *,
    tls: bool = False,
    cert: Path | None = None,
    workers: int = 1,
    store: str | None = None,
    **extra: str,
) -> Devhost:
    """devhost with the sandbox on a known Twilio account, publishing to `broker` (over TLS when asked), on
    SQLite unless `store` names another; `extra` adds settings."""
    port = free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    access_code = secrets.token_urlsafe(12)
    mqtt_url = f"mqtts://127.0.0.1:{broker.tls_port}" if tls else f"mqtt://127.0.0.1:{broker.mqtt_port}"
    env = clean_env(
        RELAY_ACCESS_CODE=access_code,
        RELAY_SIGNING_KEY=broker.signing_key,
        MQTT_URL=mqtt_url,
        MQTT_BROWSER_URL=f"ws://127.0.0.1:{broker.ws_port}/mqtt",
        RELAY_STORE=store or str(data / "relay.sqlite3"),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=FROM_NUMBER,
        SEND_LIMIT_PER_MINUTE="100000",
        SEND_LIMIT_PER_DAY="10000000",
        NEW_RECIPIENT_LIMIT_PER_HOUR="1000000",  # the send path texts a new number each time
        NEW_RECIPIENT_LIMIT_PER_HOUR_ALL_DESKS="1000000",
        POLL_SCHEDULE="*/30 * * * * *",  # the poll timer's schedule setting, as local.settings.example.json has it
        **extra,
    )
    if tls and cert is not None:
        env["SSL_CERT_FILE"] = str(cert)  # paho's tls_set() loads the default CAs, which OpenSSL reads from here
    cmd = [sys.executable, "-m", "devhost", "--http-port", str(port), "--data-dir", str(data)]
    cmd += ["--mqtt-port", str(broker.mqtt_port), "--ws-port", str(broker.ws_port), "--sandbox"]
    cmd += ["--workers", str(workers), "--blob-port", "0"]  # several devhosts at once: each its own blob service
    begin = time.monotonic()
    proc = spawn(name, cmd, workdir, env)
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, proc)
    return Devhost(proc, base_url, access_code, time.monotonic() - begin)


@dataclass
class Server:
    """A webhook server the load goes to: devhost, or the bare pipeline."""

    process: Process
    base_url: str


def start_bare(workdir: Path, broker: Broker, name: str, workers: int) -> Server:
    """`bench.bare` with `workers` processes, publishing to `broker` over TCP."""
    port = free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    user, password = broker.service_credentials()
    env = clean_env(
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        MQTT_USERNAME=user,
        MQTT_PASSWORD=password,
        BARE_DATABASE=str(data / "bare.sqlite3"),
        BARE_BROKER_PORT=str(broker.mqtt_port),
    )
    proc = spawn(
        name, [sys.executable, "-m", "bench.bare", "--port", str(port), "--workers", str(workers)], workdir, env
    )
    wait_port(port, proc.popen)
    return Server(proc, f"http://127.0.0.1:{port}")


def wait_healthy(base_url: str, proc: Process, timeout: float = 30.0) -> None:
    """Until /api/health answers 200: the store and the broker are both up."""
    start = time.monotonic()
    with httpx.Client(timeout=1) as client:
        while time.monotonic() - start < timeout:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log}")
            try:
                if client.get(f"{base_url}/api/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"{proc.name} not healthy after {timeout:g}s; see {proc.log}")


def start_original(workdir: Path, broker: Broker, cert: Path) -> tuple[Process, str]:
    """The 2018 design's webhook (bench.original), publishing over TLS to `broker`."""
    port = free_port()
    user, password = broker.service_credentials()
    cmd = [sys.executable, "-m", "bench.original", "--port", str(port), "--broker-port", str(broker.tls_port)]
    cmd += ["--cafile", str(cert)]
    env = clean_env(TWILIO_AUTH_TOKEN=AUTH_TOKEN, MQTT_USERNAME=user, MQTT_PASSWORD=password)
    proc = spawn(f"original-{broker.kind}", cmd, workdir, env)
    wait_port(port, proc.popen)
    return proc, f"http://127.0.0.1:{port}"
