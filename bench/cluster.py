"""Scenario 6: a 3-node RabbitMQ cluster on quorum queues: start-up, latency across nodes, failover, memory.

The cluster is the suite's (`tests.support.rabbitmq`), so the figures are for exactly the tested configuration.
- Latency: the relay's publisher on node 1, two persistent desk sessions (quorum queues) of one desk, one on node 1
  and one on node 2; each message carries its send time (CLOCK_MONOTONIC, shared by the processes).
- Failover: a steady stream with sequence numbers while `kill -9` takes the desk's node, then the relay's node.
  The publisher is the relay's own (`relay.publisher`, with the cluster's URL list); what it could not publish
  it retries, as the outbox does. Gap = the longest pause between two deliveries at the desk.
- Memory: WebSocket desks with clean sessions (as the web client connects) on node 2; its RSS before and after.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.fanout import _Desks
from bench.stats import Summary
from relay.errors import PublishFailed
from relay.publisher import Publisher
from relay.tokens import RABBITMQ_AUDIENCE, SERVICE_USER, Staff, TokenIssuer, new_client_id, new_session_id
from relay.topics import Topics
from tests.support.mqtt import PersistentDesk
from tests.support.rabbitmq import WS_PATH, RabbitCluster


@dataclass
class Failover:
    killed: str
    sent: int
    received: int
    lost: int
    duplicates: int
    gap_seconds: float
    rejoin_seconds: float


@dataclass
class ClusterResult:
    start_seconds: float = 0.0
    rate: float = 0.0
    same_node: Summary | None = None
    cross_node: Summary | None = None
    failovers: list[Failover] = field(default_factory=list)
    desks: int = 0
    rss_before: int = 0
    rss_after: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def per_desk(self) -> float:
        return (self.rss_after - self.rss_before) / self.desks if self.desks else 0.0


class _Stream:
    """Publishes `{"seq", "t"}` at a steady rate through the relay's publisher, retrying what failed."""

    def __init__(self, publisher: Publisher, topic: str, rate: float) -> None:
        self.publisher, self.topic, self.rate = publisher, topic, rate
        self.acked: set[int] = set()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pending: deque[int] = deque()
        start = time.monotonic()
        while not self._stop.is_set():
            self.sent += 1
            pending.append(self.sent)
            while pending:
                seq = pending[0]
                payload = json.dumps({"seq": seq, "t": time.monotonic_ns()}).encode()
                try:
                    self.publisher.publish(self.topic, payload, key=str(seq), on_acked=lambda s=seq: self.acked.add(s))
                except PublishFailed:
                    if not self.publisher.is_inflight(str(seq)):
                        break  # not handed to paho: retry on the next tick, as the outbox would
                pending.popleft()
            delay = start + self.sent / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def __enter__(self) -> _Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _desk_session(issuer: TokenIssuer, web_app_id: str) -> tuple[str, str]:
    """A client id and token exactly as `/api/session` makes them."""
    sid = new_session_id()
    token, _ = issuer.issue(web_app_id, sid, Staff("bench", "Bench"), datetime.now(UTC), timedelta(hours=2))
    return new_client_id(web_app_id, sid), token


def _publisher(cluster: RabbitCluster, timeout: float = 2.0) -> Publisher:
    env = cluster.relay_env()
    publisher = Publisher(
        env["MQTT_URL"],
        client_id=f"{SERVICE_USER}-{secrets.token_hex(6)}",
        username=SERVICE_USER,
        password=lambda: env["MQTT_PASSWORD"],
        timeout_seconds=timeout,
    )
    publisher.start()
    if not publisher.wait_connected(20):
        raise TimeoutError("the publisher did not connect to node 1")
    return publisher


def _latency(cluster: RabbitCluster, issuer: TokenIssuer, result: ClusterResult, messages: int) -> None:
    desks = []
    for node in (0, 1):
        client_id, token = _desk_session(issuer, "latency")
        desk = PersistentDesk(client_id, "latency", token, ["sms/latency/#"])
        desk.connect(cluster.nodes[node].mqtt_port)
        desks.append(desk)
    publisher = _publisher(cluster)
    try:
        start = time.monotonic()
        for i in range(messages):
            delay = start + i / result.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            publisher.publish("sms/latency/inbound", json.dumps({"seq": i, "t": time.monotonic_ns()}).encode())
        deadline = time.monotonic() + 10
        while any(len(d.received) < messages for d in desks) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        publisher.stop()
    summaries = []
    for desk in desks:
        with desk.lock:
            seconds = [at - p["t"] / 1e9 for at, p in desk.received]
        summaries.append(Summary.of(seconds, lost=messages - len({p["seq"] for _, p in desk.received})))
        desk.end()
    result.same_node, result.cross_node = summaries


def _failover(cluster: RabbitCluster, issuer: TokenIssuer, result: ClusterResult, rate: float) -> None:
    client_id, token = _desk_session(issuer, "failover")
    desk = PersistentDesk(client_id, "failover", token, ["sms/failover/#"])
    desk.connect(cluster.nodes[1].mqtt_port)
    publisher = _publisher(cluster)
    try:
        with _Stream(publisher, "sms/failover/inbound", rate) as stream:
            time.sleep(3)
            first_kill = time.monotonic()
            cluster.kill(1)  # the desk's node; the desk moves to node 3
            desk.dropped.wait(15)
            desk.leave()
            desk.connect(cluster.nodes[2].mqtt_port)
            rejoin_desk = cluster.start_node(1)
            time.sleep(3)
            second_kill, boundary = time.monotonic(), stream.sent
            cluster.kill(0)  # the relay's node; the publisher moves to node 2
            time.sleep(5)
        acked = set(stream.acked)
        deadline = time.monotonic() + 20
        while acked - set(desk.values("seq")) and time.monotonic() < deadline:
            time.sleep(0.2)
        rejoin_relay = cluster.start_node(0)
    finally:
        publisher.stop()
    with desk.lock:
        received = [(at, int(p["seq"])) for at, p in desk.received]
    desk.end()
    windows = [
        ("the desk's node", first_kill, second_kill, range(1, boundary + 1), rejoin_desk),
        ("the relay's node", second_kill, float("inf"), range(boundary + 1, stream.sent + 1), rejoin_relay),
    ]
    for killed, begin, end, seq_range, rejoin in windows:
        wanted = {s for s in acked if s in seq_range}
        seqs = [seq for _, seq in received if seq in seq_range]
        times = [at for at, _ in received if begin - 1 <= at < end]
        result.failovers.append(
            Failover(
                killed=killed,
                sent=len(wanted),
                received=len(set(seqs) & wanted),
                lost=len(wanted - set(seqs)),
                duplicates=sum(n - 1 for n in Counter(seqs).values()),
                gap_seconds=max((b - a for a, b in itertools.pairwise(times)), default=0.0),
                rejoin_seconds=rejoin,
            )
        )


def _memory(cluster: RabbitCluster, issuer: TokenIssuer, result: ClusterResult, desks: int) -> None:
    creds = []
    for i in range(desks):
        web_app_id = f"desk_{i}"
        client_id, token = _desk_session(issuer, web_app_id)
        creds.append((client_id, web_app_id, token, f"sms/{web_app_id}/#"))
    time.sleep(1.0)
    result.rss_before = cluster.memory(1)
    pool = _Desks(path=WS_PATH)
    pool.add(cluster.nodes[1].ws_port, creds)
    deadline = time.monotonic() + 120
    while pool.subscribed + pool.refused < desks and time.monotonic() < deadline:
        pool.pump(0.05)
    end = time.monotonic() + 2.0  # let the node settle before reading its memory
    while time.monotonic() < end:
        pool.pump(0.05)
    result.rss_after = cluster.memory(1)
    result.desks = pool.subscribed
    if pool.refused:
        result.notes.append(f"{pool.refused} desk connections refused")
    pool.close()


def run_cluster(signing_key: str, *, messages: int, rate: float, desks: int) -> ClusterResult:
    result = ClusterResult(rate=rate)
    issuer = TokenIssuer(signing_key, Topics("sms"), audience=RABBITMQ_AUDIENCE)
    with RabbitCluster(signing_key) as cluster:
        result.start_seconds = cluster.started_in or 0.0
        _latency(cluster, issuer, result, messages)
        _failover(cluster, issuer, result, rate=100.0)
        _memory(cluster, issuer, result, desks)
    return result
