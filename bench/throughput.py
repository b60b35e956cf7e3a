"""Scenario 2: inbound throughput with wrk posting pre-signed webhooks, every MessageSid checked exactly once."""

from __future__ import annotations

import math
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profiler
from bench.forms import SidSource, inbound_params, signed
from bench.mqttc import DeskLogin, Subscriber
from bench.procs import Broker, start_bare, start_devhost

LUA = Path(__file__).with_name("webhooks.lua")
QUIET_SECONDS = 2.0
DRAIN_LIMIT_SECONDS = 60.0
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class ThroughputResult:
    broker: str
    seconds: float
    connections: int
    workers: int
    issued: int = 0
    issued_per_thread: dict[int, int] = field(default_factory=dict)
    ok: int = 0
    errors: int = 0
    exhausted: int = 0
    received: int = 0
    duplicates: int = 0
    unknown: int = 0
    missing: int = 0
    in_flight_at_stop: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    peak_rss: int = 0
    profile: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def run_throughput(
    workdir: Path,
    broker: Broker,
    *,
    seconds: int,
    connections: int,
    threads: int,
    sign_rate: int,
    workers: int = 1,
    profile_to: Path | None = None,
    bare: bool = False,
) -> ThroughputResult:
    """`sign_rate` bounds the webhooks/s the pre-signed files can feed; running out fails the run. `bare` runs
    the same load against `bench.bare`, the pipeline the relay's rate is a ratio of."""
    name = f"{'bare' if bare else 'devhost'}-{broker.kind}-{'profile' if profile_to else 'wrk'}"
    server = (
        start_bare(workdir, broker, name, workers) if bare else start_devhost(workdir, broker, name, workers=workers)
    )
    result = ThroughputResult(broker.kind, float(seconds), connections, workers)
    session = f"bench{secrets.token_hex(4)}"
    login = DeskLogin(
        client_id=f"reception-{session}-{secrets.token_hex(4)}",
        username="reception",
        password=broker.desk_token("reception", session),
    )
    try:
        sub = Subscriber(broker.mqtt_port, transport="tcp", topics=["sms/unrouted/#"], **login)
        sub.start()
        try:
            prefix = workdir / f"{name}-requests"
            slices = _write_requests(prefix, f"{server.base_url}/api/receive_sms", threads, sign_rate * seconds)
            spy = None if profile_to is None else profiler.start(server.process.pid, seconds, profile_to)
            output = _wrk(prefix, server.base_url, seconds=seconds, connections=connections, threads=threads)
            _parse_wrk(output, result)
            if spy is not None and profile_to is not None:
                result.profile = profiler.finish(spy, profile_to, seconds)
            _drain(sub, result.ok)
            _check(result, slices, sub.order)
        finally:
            sub.stop()
            if sub.dropped:
                result.failures.append(f"the subscriber lost its connection {sub.dropped} times")
        result.peak_rss = server.process.peak_rss()
    finally:
        server.process.stop()
    return result


def _write_requests(prefix: Path, url: str, threads: int, total: int) -> list[list[str]]:
    """One file per wrk thread; returns each thread's MessageSids in the order it will post them."""
    sids = SidSource()
    slices: list[list[str]] = []
    per_thread = math.ceil(total / threads)
    for t in range(threads):
        mine: list[str] = []
        with Path(f"{prefix}-{t}.txt").open("w", encoding="ascii") as out:
            for i in range(per_thread):
                sid = sids()
                body, signature = signed(url, inbound_params(sid, i))
                out.write(f"{signature}\t{body.decode()}\n")
                mine.append(sid)
        slices.append(mine)
    return slices


def _wrk(prefix: Path, base_url: str, *, seconds: int, connections: int, threads: int) -> str:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(LUA), f"{base_url}/api/receive_sms", "--", str(prefix)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return done.stdout


def _parse_wrk(output: str, result: ThroughputResult) -> None:
    for line in output.splitlines():
        if line.startswith("bench-thread "):
            _, thread, issued, ok, other, exhausted = line.split()
            result.issued_per_thread[int(thread)] = int(issued)
            result.issued += int(issued)
            result.ok += int(ok)
            result.errors += int(other)
            result.exhausted += int(exhausted)
        elif m := re.match(r"\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", line):
            value = float(m.group(2)) * _UNITS[m.group(3)]
            if m.group(1) == "50":
                result.p50_ms = value
            else:
                result.p99_ms = value
        elif m := re.search(r"requests in ([\d.]+)(us|ms|s|m),", line):
            result.seconds = float(m.group(1)) * _UNITS[m.group(2)] / 1000
    if result.issued == 0:
        raise RuntimeError(f"wrk printed no per-thread counts:\n{output}")


def _drain(sub: Subscriber, expected: int) -> None:
    """Until everything answered 200 arrived, or nothing more arrived for a quiet spell (bounded)."""
    deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
    last, last_change = sub.count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sub.count()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > (0.5 if now >= expected else QUIET_SECONDS):
            return


def _check(result: ThroughputResult, slices: list[list[str]], order: list[str]) -> None:
    """Exactly once: no duplicate, nothing unknown, nothing missing beyond the requests still in flight at stop."""
    received = set(order)
    issued = {sid for t, mine in enumerate(slices) for sid in mine[: result.issued_per_thread.get(t, 0)]}
    result.received = len(order)
    result.duplicates = len(order) - len(received)
    result.unknown = len(received - issued)
    result.in_flight_at_stop = result.issued - result.ok - result.errors
    result.missing = max(0, len(issued - received) - result.in_flight_at_stop)
    if result.exhausted:
        result.failures.append(f"the pre-signed webhooks ran out ({result.exhausted} requests); raise --sign-rate")
    if result.errors:
        result.failures.append(f"{result.errors} webhooks were not answered 200")
    if result.duplicates:
        result.failures.append(f"{result.duplicates} MessageSids arrived more than once")
    if result.unknown:
        result.failures.append(f"{result.unknown} MessageSids arrived that were never sent")
    if result.missing:
        result.failures.append(f"{result.missing} webhooks answered 200 never arrived (loss)")
