"""`python -m bench.soak` (`make soak`): a long mixed load on the local host, sampling its processes over time.

Inbound webhooks, sends (and the sandbox's status callbacks for them), catch-up and conversation reads from
three desks with live MQTT subscriptions, for `SOAK_SECONDS` (default 30 minutes). Every sample records each
process's RSS, open file descriptors and threads, and the outbox's depth and the SQLite WAL's size; the figures
go into BENCHMARKS.md's Soak section, the other sections untouched. The devhost runs two worker processes, so
the functions (the workers) are measured apart from the sandbox, which lives in the supervisor and keeps every
message it was sent, as Twilio does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from twilio.request_validator import RequestValidator

from bench.procs import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    REPO,
    children,
    make_certificate,
    proc_status,
    start_amqtt,
    start_devhost,
)
from bench.report import SOAK_TITLE, render_soak, with_section

PATIENTS = [f"+1415555{2000 + i:04d}" for i in range(300)]
DESKS = 3


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss: dict[str, int]  # bytes, by process role
    fds: dict[str, int]
    threads: dict[str, int]
    outbox: int  # events stored and not yet acknowledged by the broker
    oldest_pending: float  # seconds
    wal: int  # bytes
    database: int
    webhooks: int
    sends: int
    reads: int


@dataclass
class SoakResult:
    seconds: float
    rate: float
    samples: list[Sample] = field(default_factory=list)
    webhooks: int = 0
    acknowledged: int = 0
    sends: int = 0
    sent: int = 0
    reads: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    lost: int = 0


class Desk:
    """A desk's session and live subscription, counting the distinct inbound messages it was published."""

    def __init__(self, session: dict[str, Any], mqtt_port: int) -> None:
        self.token = str(session["token"])
        creds = session["mqtt"]
        self.sids: set[str] = set()
        self.cursor = ""
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=creds["clientId"])
        self.client.username_pw_set(creds["username"], creds["password"])
        topics = [(t, 1) for t in creds["topics"]]
        self.client.on_connect = lambda c, *a: c.subscribe(topics)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", mqtt_port, keepalive=30)
        self.client.loop_start()

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/inbound"):
            with self._lock:
                self.sids.add(json.loads(message.payload)["MessageSid"])

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def process_figures(pid: int) -> tuple[int, int, int]:
    """RSS (bytes), open file descriptors, threads."""
    return proc_status(pid, "VmRSS"), len(os.listdir(f"/proc/{pid}/fd")), proc_status(pid, "Threads") // 1024


def roles(devhost_pid: int, broker_pid: int) -> dict[str, int]:
    workers = sorted(pid for pid in children(devhost_pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes())
    found = {"supervisor + sandbox": devhost_pid, "broker": broker_pid}
    found.update({f"worker {i + 1}": pid for i, pid in enumerate(workers)})
    return found


def store_figures(database: Path) -> tuple[int, float, int, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        depth, oldest = db.execute("SELECT count(*), min(created_at) FROM events WHERE published = 0").fetchone()
    wal = Path(f"{database}-wal")
    return (
        int(depth),
        max(0.0, time.time() - oldest) if oldest is not None else 0.0,
        wal.stat().st_size if wal.exists() else 0,
        database.stat().st_size,
    )


class Load:
    """Steady loops, each on its own thread and HTTP client, counting what they did and what failed."""

    def __init__(self, base_url: str, desks: list[Desk]) -> None:
        self.base_url = base_url
        self.desks = desks
        self.stop = threading.Event()
        self.counts: dict[str, int] = {"webhooks": 0, "acknowledged": 0, "sends": 0, "sent": 0, "reads": 0}
        self.errors: dict[str, int] = {}
        self.acknowledged: set[str] = set()
        self._lock = threading.Lock()
        self._validator = RequestValidator(AUTH_TOKEN)
        self._random = random.Random(14)

    def count(self, name: str, ok: bool, what: str) -> None:
        with self._lock:
            self.counts[name] += 1
            if not ok:
                self.errors[what] = self.errors.get(what, 0) + 1

    def every(self, interval: float, body: Callable[[httpx.Client], None]) -> threading.Thread:
        def loop() -> None:
            with httpx.Client(timeout=20) as client:
                next_at = time.monotonic()
                while not self.stop.is_set():
                    try:
                        body(client)
                    except httpx.HTTPError as exc:
                        self.count("reads", False, type(exc).__name__)
                    next_at += interval
                    self.stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def webhook(self, client: httpx.Client) -> None:
        url = f"{self.base_url}/api/receive_sms"
        sid = "SM" + os.urandom(16).hex()
        params = {
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": self._random.choice(PATIENTS),
            "To": FROM_NUMBER,
            "Body": f"soak {sid[-6:]}",
            "NumMedia": "0",
        }
        headers = {"X-Twilio-Signature": self._validator.compute_signature(url, params)}
        r = client.post(url, data=params, headers=headers)
        self.count("webhooks", r.status_code == 200, f"receive_sms {r.status_code}")
        if r.status_code == 200:
            with self._lock:
                self.counts["acknowledged"] += 1
                self.acknowledged.add(sid)

    def send(self, client: httpx.Client) -> None:
        desk = self._random.choice(self.desks)
        r = client.post(
            f"{self.base_url}/api/send_sms",
            json={"to": self._random.choice(PATIENTS), "body": "Your appointment is tomorrow at 9:30."},
            headers={"Authorization": f"Bearer {desk.token}"},
        )
        self.count("sends", r.status_code == 201, f"send_sms {r.status_code}")
        if r.status_code == 201:
            with self._lock:
                self.counts["sent"] += 1

    def read(self, client: httpx.Client) -> None:
        desk = self._random.choice(self.desks)
        headers = {"Authorization": f"Bearer {desk.token}"}
        r = client.get(f"{self.base_url}/api/conversations", headers=headers)
        self.count("reads", r.status_code == 200, f"conversations {r.status_code}")
        feed = client.get(
            f"{self.base_url}/api/messages", params={"after": desk.cursor} if desk.cursor else {}, headers=headers
        )
        self.count("reads", feed.status_code == 200, f"messages {feed.status_code}")
        if feed.status_code == 200:
            desk.cursor = feed.json().get("cursor") or desk.cursor


def run_soak(workdir: Path, *, seconds: float, sample_seconds: float, rate: float) -> SoakResult:
    cert, key = make_certificate(workdir)
    broker = start_amqtt(workdir, cert, key, "soak-" + "k" * 40)
    devhost = start_devhost(workdir, broker, "soak", workers=2)
    database = workdir / "soak" / "relay.sqlite3"
    result = SoakResult(seconds=seconds, rate=rate)
    desks: list[Desk] = []
    try:
        desks = [Desk(devhost.session(), broker.mqtt_port) for _ in range(DESKS)]
        procs = roles(devhost.process.pid, broker.process.pid)
        load = Load(devhost.base_url, desks)
        threads = [
            load.every(1 / rate, load.webhook),
            load.every(10 / rate, load.send),
            load.every(1.0, load.read),
        ]
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            figures = {role: process_figures(pid) for role, pid in procs.items()}
            depth, oldest, wal, size = store_figures(database)
            sample = Sample(
                at=elapsed,
                rss={r: f[0] for r, f in figures.items()},
                fds={r: f[1] for r, f in figures.items()},
                threads={r: f[2] for r, f in figures.items()},
                outbox=depth,
                oldest_pending=oldest,
                wal=wal,
                database=size,
                webhooks=load.counts["webhooks"],
                sends=load.counts["sends"],
                reads=load.counts["reads"],
            )
            result.samples.append(sample)
            print(
                f"soak: {elapsed:6.0f} s  "
                + "  ".join(f"{r} {v / 2**20:.1f} MiB/{sample.fds[r]} fds" for r, v in sample.rss.items())
                + f"  outbox {depth}  wal {wal / 2**20:.1f} MiB",
                flush=True,
            )
            if elapsed >= seconds:
                break
            time.sleep(min(sample_seconds, max(0.0, seconds - elapsed)))
        load.stop.set()
        for thread in threads:
            thread.join(30)
        drained = time.monotonic() + 30
        while store_figures(database)[0] and time.monotonic() < drained:
            time.sleep(0.5)
        time.sleep(2)  # the last publishes in flight to the subscribers
        result.webhooks, result.acknowledged = load.counts["webhooks"], load.counts["acknowledged"]
        result.sends, result.sent, result.reads = load.counts["sends"], load.counts["sent"], load.counts["reads"]
        result.errors = dict(load.errors)
        delivered = set().union(*(d.sids for d in desks))
        result.delivered = len(load.acknowledged & delivered)
        result.lost = len(load.acknowledged - delivered)
    finally:
        for desk in desks:
            desk.stop()
        devhost.stop()
        broker.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS") or 1800))
    p.add_argument("--sample-seconds", type=float, default=float(os.environ.get("SOAK_SAMPLE_SECONDS") or 30))
    p.add_argument("--rate", type=float, default=20.0, help="inbound webhooks per second; a tenth as many sends")
    p.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    p.add_argument("--json", type=Path, default=None, help="also write every sample here")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    try:
        result = run_soak(workdir, seconds=args.seconds, sample_seconds=args.sample_seconds, rate=args.rate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1), encoding="utf-8")
    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else "# Benchmarks\n"
    args.output.write_text(with_section(previous, SOAK_TITLE, render_soak(result)), encoding="utf-8")
    print(f"soak: wrote the {SOAK_TITLE.lstrip('# ')} section of {args.output}", flush=True)
    failed = result.lost or sum(result.errors.values())
    if failed:
        print(f"soak: FAILED: {result.lost} lost, errors {result.errors}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
