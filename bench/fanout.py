"""Scenario 4: many web apps connected at once over WebSocket, each subscribed to its own topic and sent one message.

The subscribers are paho clients driven by one selector loop per worker process (no thread per client); the
messages are published QoS 1 by one service client at a steady rate, each carrying its send time
(CLOCK_MONOTONIC, shared by processes on one machine), so delivery latency is measured across processes.
"""

from __future__ import annotations

import multiprocessing
import secrets
import selectors
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.mqttc import MaskingClient, Publisher
from bench.procs import Broker
from bench.stats import Summary
from relay.tokens import new_client_id, new_session_id

CONNECT_SECONDS = 120.0
DELIVERY_SECONDS = 30.0
CONNECT_THREADS = 32
Credential = tuple[str, str, str, str]  # client id, username, password, topic


@dataclass
class FanoutResult:
    broker: str
    clients: int
    connected: int = 0
    rate: float = 0.0
    delivery: Summary | None = None
    connect_seconds: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.connected if self.connected else 0.0


class _Desks:
    """One worker's clients and the selector that drives them."""

    def __init__(self, path: str = "/mqtt") -> None:
        self.path = path
        self.selector = selectors.DefaultSelector()
        self.clients: list[mqtt.Client] = []
        self.subscribed = 0
        self.refused = 0
        self.latencies: list[float] = []

    def add(self, port: int, creds: list[Credential]) -> None:
        """Connect concurrently: each WebSocket handshake blocks its caller for a round trip or a delayed ACK."""
        with ThreadPoolExecutor(CONNECT_THREADS) as pool:
            clients = list(pool.map(lambda cred: self._connect(port, cred), creds))
        for client in clients:
            sock = client.socket()
            assert sock is not None
            self.selector.register(sock, selectors.EVENT_READ, client)
            self.clients.append(client)

    def _connect(self, port: int, cred: Credential) -> mqtt.Client:
        client_id, username, password, topic = cred
        client = MaskingClient(CallbackAPIVersion.VERSION2, client_id=client_id, transport="websockets", userdata=topic)
        client.ws_set_options(path=self.path)
        client.username_pw_set(username, password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.connect("127.0.0.1", port, keepalive=300)
        return client

    def _on_connect(self, client: mqtt.Client, topic: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused += 1
        else:
            client.subscribe(topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subscribed += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.latencies.append((time.monotonic_ns() - int(message.payload)) / 1e9)

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            key.data.loop_read()
        for client in self.clients:
            if client.want_write():
                client.loop_write()

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_write()


def worker(port: int, creds: list[Credential], conn: Connection) -> None:
    """Connect and subscribe every client, say so, then collect deliveries until told to stop."""
    desks = _Desks()
    desks.add(port, creds)
    deadline = time.monotonic() + CONNECT_SECONDS
    while desks.subscribed + desks.refused < len(creds) and time.monotonic() < deadline:
        desks.pump(0.05)
    conn.send(("ready", desks.subscribed, desks.refused))
    deadline = time.monotonic() + CONNECT_SECONDS
    while not conn.poll() and time.monotonic() < deadline:
        desks.pump(0.01)
    conn.send(("done", desks.latencies))
    desks.close()


def run_fanout(broker: Broker, *, clients: int, workers: int, rate: float) -> FanoutResult:
    result = FanoutResult(broker.kind, clients, rate=rate)
    desks: list[Credential] = []
    for _ in range(clients):
        web_app_id, session_id = f"d{secrets.token_hex(8)}", new_session_id()
        desks.append(
            (
                new_client_id(web_app_id, session_id),
                web_app_id,
                broker.desk_token(web_app_id, session_id),
                f"sms/{web_app_id}/inbound",
            )
        )
    result.rss_before = broker.process.rss()
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    begin = time.monotonic()
    for w in range(workers):
        parent, child = context.Pipe()
        proc = context.Process(target=worker, args=(broker.ws_port, desks[w::workers], child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        for pipe in pipes:
            if not pipe.poll(CONNECT_SECONDS + 10):
                raise TimeoutError("a fan-out worker did not connect its clients in time")
            _, subscribed, refused = pipe.recv()
            result.connected += subscribed
            if refused:
                result.notes.append(f"{refused} connections refused")
        result.connect_seconds = time.monotonic() - begin
        time.sleep(1.0)  # let the broker settle before reading its memory
        result.rss_after = broker.process.rss()
        user, password = broker.service_credentials()
        publisher = Publisher(broker.mqtt_port, "relay-service-bench", user, password)
        try:
            start = time.monotonic()
            for i, (_, _, _, topic) in enumerate(desks):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                publisher.publish(topic, str(time.monotonic_ns()).encode(), qos=1)
            time.sleep(min(DELIVERY_SECONDS, 2.0))
        finally:
            publisher.stop()
        latencies: list[float] = []
        for pipe in pipes:
            pipe.send("stop")
            if pipe.poll(DELIVERY_SECONDS):
                latencies += pipe.recv()[1]
        result.delivery = Summary.of(latencies, lost=clients - len(latencies))
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return result
