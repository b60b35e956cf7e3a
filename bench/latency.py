"""Scenarios 1 and 3: inbound latency against the original design and the raw-broker limit; the send path.

Inbound: every 10 ms slot (100 msg/s) sends one webhook through each of our relays (plain TCP and TLS to the
broker, a new patient's to unrouted, and a reply routed to a desk with three staff connected) and one reference
message, alternately the raw limit and the original design. Each message is timed
from just before the request until a WebSocket subscriber receives it, and waited for before the next, in an
order that rotates per slot, so drift hits every variant alike.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bench.forms import SidSource, inbound_params, signed
from bench.mqttc import Publisher, SubscriberProcess, clock, desk_login
from bench.procs import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    Broker,
    Devhost,
    Process,
    start_devhost,
    start_original,
)
from bench.stats import Summary

ARRIVAL_TIMEOUT = 5.0
TOPIC = "sms/unrouted/inbound"
DESK = "reception"
ROUTED_PHONES = 50  # the patients the desk texted first, whose replies are routed to it
STAFF = 3  # browsers signed in to the desk: the measuring subscriber and two more


@dataclass
class LatencyResult:
    broker: str
    rate: float
    inbound: dict[str, Summary] = field(default_factory=dict)
    send: dict[str, Summary] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Webhook:
    """One keep-alive HTTP connection to a webhook endpoint, as a load balancer would hold."""

    def __init__(self, base_url: str, path: str = "/api/receive_sms", senders: tuple[str, ...] | None = None) -> None:
        parts = urlsplit(base_url)
        self._senders = senders  # the phones to send from, in turn; else a new patient each time
        self.url = base_url + path
        self._path = path
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        self.reconnects = 0

    def prepare(self, sid: str, index: int) -> Callable[[], None]:
        """Sign outside the timed part: Twilio signs before it sends."""
        sender = self._senders[index % len(self._senders)] if self._senders else None
        body, signature = signed(self.url, inbound_params(sid, index, sender=sender))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}

        def post() -> None:
            try:
                self._conn.request("POST", self._path, body, headers)
                response = self._conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                # The server dropped the idle keep-alive connection; a real client reconnects, timed.
                self.reconnects += 1
                self._conn.close()
                self._conn.request("POST", self._path, body, headers)
                response = self._conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{self.url} answered {response.status}")

        return post

    def close(self) -> None:
        self._conn.close()


def run_inbound(
    workdir: Path, broker: Broker, cert: Path, *, messages: int, rate: float, warmup: int, sends: int
) -> LatencyResult:
    result = LatencyResult(broker.kind, rate)
    started: list[Devhost | Process] = []
    try:
        dev = start_devhost(workdir, broker, f"devhost-{broker.kind}")
        started.append(dev)
        targets = {"ours": Webhook(dev.base_url), "routed": Webhook(dev.base_url, senders=_texted_by_desk(dev))}
        try:
            dev_tls = start_devhost(workdir, broker, f"devhost-{broker.kind}-tls", tls=True, cert=cert)
            started.append(dev_tls)
            targets["ours_tls"] = Webhook(dev_tls.base_url)
        except (RuntimeError, TimeoutError) as exc:
            result.notes.append(f"our relay over TLS could not start: {exc}")
        original, original_url = start_original(workdir, broker, cert)
        started.append(original)
        targets["original"] = Webhook(original_url)
        _measure_inbound(result, broker, dev, targets, messages=messages, rate=rate, warmup=warmup)
        result.send = run_send(dev, sends)
    finally:
        for proc in reversed(started):
            proc.stop()
    return result


def _measure_inbound(
    result: LatencyResult,
    broker: Broker,
    dev: Devhost,
    targets: dict[str, Webhook],
    *,
    messages: int,
    rate: float,
    warmup: int,
) -> None:
    topics = ["sms/unrouted/#", f"sms/{DESK}/#"]
    sub = SubscriberProcess(broker.ws_port, transport="websockets", topics=topics, **desk_login(dev.session(DESK)))
    staff = [
        SubscriberProcess(broker.ws_port, transport="websockets", topics=topics, **desk_login(dev.session(DESK)))
        for _ in range(STAFF - 1)
    ]
    for each in (sub, *staff):
        each.start()
    user, password = broker.service_credentials()
    raw = Publisher(broker.mqtt_port, "relay-service-bench-raw", user, password)
    sids = SidSource()

    def prepare(name: str, index: int) -> tuple[str, Callable[[], None]]:
        sid = sids()
        if name == "raw":
            payload = json.dumps(inbound_params(sid, index), separators=(",", ":")).encode()
            return sid, lambda: raw.publish(TOPIC, payload, qos=1)
        return sid, targets[name].prepare(sid, index)

    samples: dict[str, list[float]] = {name: [] for name in [*targets, "raw"]}
    lost = dict.fromkeys(samples, 0)

    def one(name: str, index: int) -> None:
        sid, send = prepare(name, index)
        start = clock()
        send()
        arrived = sub.wait(sid, ARRIVAL_TIMEOUT)
        if arrived is None:
            lost[name] += 1
        else:
            samples[name].append(arrived - start)

    try:
        for i in range(warmup):
            for name in samples:
                one(name, i)
        for values in samples.values():
            values.clear()
        lost.update(dict.fromkeys(lost, 0))
        ours = [n for n in ("ours", "routed", "ours_tls") if n in targets]
        interval = 1.0 / rate
        begin = time.perf_counter()
        for i in range(messages):
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            slot = [*ours, "raw" if i % 2 == 0 else "original"]
            turn = i % len(slot)
            for name in slot[turn:] + slot[:turn]:
                one(name, i)
    finally:
        raw.stop()
        for each in (sub, *staff):
            each.stop()
        if sub.dropped:
            result.notes.append(f"the WebSocket subscriber lost its connection {sub.dropped} times")
        for name, target in targets.items():
            target.close()
            if target.reconnects:
                result.notes.append(f"{name}: the server closed the keep-alive connection {target.reconnects} times")
    result.inbound = {name: Summary.of(values, lost[name]) for name, values in samples.items()}


def _texted_by_desk(dev: Devhost) -> tuple[str, ...]:
    """Phones the desk has texted, so their replies are routed to it (a number range the others never use)."""
    token = dev.session(DESK)["token"]
    phones = tuple(f"+1415557{i:04d}" for i in range(ROUTED_PHONES))
    with requests.Session() as http:
        for phone in phones:
            r = http.post(
                f"{dev.base_url}/api/send_sms",
                json={"to": phone, "body": "Your appointment is tomorrow at 9:00."},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            if r.status_code != 201:
                raise RuntimeError(f"send_sms answered {r.status_code}: {r.text[:200]}")
    return phones


def run_send(dev: Devhost, n: int, warmup: int = 20) -> dict[str, Summary]:
    """POST /api/send_sms against the sandbox vs the twilio SDK calling the sandbox directly, alternating."""
    token = dev.session()["token"]
    http = requests.Session()
    url = f"{dev.base_url}/api/send_sms"
    headers = {"Authorization": f"Bearer {token}"}
    client = Client(
        ACCOUNT_SID,
        AUTH_TOKEN,
        http_client=TwilioHttpClient(pool_connections=True, timeout=10),
        environment={"TWILIO_REGION": "", "TWILIO_EDGE": ""},
    )
    client.api.base_url = f"{dev.base_url}/sandbox/twilio"
    callback = f"{dev.base_url}/api/sms_status"

    def ours(to: str) -> None:
        r = http.post(url, json={"to": to, "body": "See you at 3pm."}, headers=headers, timeout=10)
        if r.status_code != 201:
            raise RuntimeError(f"send_sms answered {r.status_code}: {r.text[:200]}")

    def direct(to: str) -> None:
        # The callback our function asks for too: the sandbox's work for it then weighs on both variants alike.
        client.messages.create(to=to, from_=FROM_NUMBER, body="See you at 3pm.", status_callback=callback)

    calls: dict[str, Callable[[str], None]] = {"ours": ours, "direct": direct}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + n):
        order = list(calls) if i % 2 == 0 else list(reversed(calls))
        for name in order:
            to = f"+1415556{i % 10000:04d}"
            start = time.perf_counter()
            calls[name](to)
            if i >= warmup:
                samples[name].append(time.perf_counter() - start)
        time.sleep(0.005)
    http.close()
    return {name: Summary.of(values) for name, values in samples.items()}
