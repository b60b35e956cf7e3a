"""paho clients the scenarios share: a timestamping subscriber and a long-lived publisher."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypedDict

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SID = re.compile(rb'"MessageSid":\s*"(\w+)"')
PASSWORD_VARIABLE = "BENCH_MQTT_PASSWORD"  # noqa: S105 - where the subscriber process finds it, not argv
REPO = Path(__file__).resolve().parent.parent


class _MaskedWebsocket(mqtt._WebsocketWrapper):
    """paho 2.2.0 answers a server's Ping with an unmasked Pong (and a Close with an unmasked Close).

    RFC 6455 §5.1: a client masks every frame, and a server must fail the connection on an unmasked one. The
    websockets server under amqtt pings every 20 s and closes with 1002 "incorrect masking" on paho's Pong;
    Mosquitto does not ping, so it never showed. Masking costs nothing here.
    """

    def _create_frame(self, opcode: int, data: bytearray, do_masking: int = 1) -> bytearray:
        return super()._create_frame(opcode, data, 1)


class MaskingClient(mqtt.Client):
    """A paho client whose WebSocket transport masks every frame it sends (see `_MaskedWebsocket`)."""

    def _create_socket(self) -> mqtt.SocketLike:
        sock = super()._create_socket()
        if isinstance(sock, mqtt._WebsocketWrapper):
            sock.__class__ = _MaskedWebsocket
        return sock


def clock() -> float:
    """CLOCK_MONOTONIC in seconds: one clock for every process on the machine, so a subscriber in another
    process stamps arrivals that the harness can subtract its own send times from."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class DeskLogin(TypedDict):
    client_id: str
    username: str
    password: str


def desk_login(session: dict[str, object]) -> DeskLogin:
    """A desk's MQTT credentials from what `/api/session` answered, as subscriber keyword arguments."""
    creds = session["mqtt"]
    assert isinstance(creds, dict)
    return DeskLogin(client_id=str(creds["clientId"]), username=str(creds["username"]), password=str(creds["password"]))


class Arrivals:
    """When each MessageSid first arrived, and every arrival in order, for exactly-once checks."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.order: list[str] = []
        self.dropped = 0
        self._cond = threading.Condition()

    def record(self, sid: str, at: float) -> None:
        with self._cond:
            self.order.append(sid)
            self.arrivals.setdefault(sid, at)
            self._cond.notify_all()

    def wait(self, sid: str, timeout: float) -> float | None:
        """When `sid` arrived (`clock()`), or None after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: sid in self.arrivals, timeout)
            return self.arrivals.get(sid)

    def count(self) -> int:
        with self._cond:
            return len(self.order)


class Subscriber(Arrivals):
    def __init__(
        self,
        port: int,
        *,
        transport: Literal["tcp", "websockets"],
        client_id: str,
        username: str | None,
        password: str | None,
        topics: list[str],
        on_arrival: Callable[[str, float], None] | None = None,
    ) -> None:
        super().__init__()
        self._ready = threading.Event()
        self._unsubscribed = threading.Event()
        self._port = port
        self._topics = topics
        self._on_arrival = on_arrival
        # A persistent session: if the connection drops, the broker queues QoS 1 messages for us and resends the
        # unacknowledged ones when paho reconnects, so a drop costs latency, not messages.
        client = MaskingClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, transport=transport
        )
        if transport == "websockets":
            client.ws_set_options(path="/mqtt")
        client.username_pw_set(username, password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._ready.set()

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._unsubscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        """Counted so a scenario can report drops, which the persistent session turns into delays."""
        if reason.is_failure:
            self.dropped += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = clock()
        m = SID.search(message.payload)
        if m is None:
            return
        sid = m.group(1).decode()
        self.record(sid, now)
        if self._on_arrival is not None:
            self._on_arrival(sid, now)

    def start(self, timeout: float = 15.0) -> None:
        self.client.connect("127.0.0.1", self._port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(timeout):
            raise TimeoutError("subscriber got no SUBACK")

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe first: the session outlives the connection, and the broker would keep queueing for it."""
        result, _ = self.client.unsubscribe(self._topics)
        if result == mqtt.MQTT_ERR_SUCCESS:
            self._unsubscribed.wait(timeout)
        self.client.disconnect()
        self.client.loop_stop()


class SubscriberProcess(Arrivals):
    """A Subscriber in a process of its own, as a browser is: in the harness's process, the subscriber had to
    win the GIL from the harness's own HTTP client, reading the webhook's answer, before it could stamp an
    arrival. The child prints `<MessageSid> <CLOCK_MONOTONIC ns>` per arrival and exits when its stdin closes."""

    def __init__(
        self,
        port: int,
        *,
        transport: Literal["tcp", "websockets"],
        client_id: str,
        username: str | None,
        password: str | None,
        topics: list[str],
    ) -> None:
        super().__init__()
        self._cmd = [sys.executable, "-m", "bench.mqttc", str(port), transport, client_id, username or "", *topics]
        self._env = {**os.environ, PASSWORD_VARIABLE: password or ""}
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, name="subscriber-reader", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        self._proc = subprocess.Popen(
            self._cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self._env, cwd=REPO
        )
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError("the subscriber process got no SUBACK")

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            word, _, value = line.strip().partition(" ")
            if word == "ready":
                self._ready.set()
            elif word == "dropped":
                self.dropped = int(value)
            elif value:
                self.record(word, int(value) / 1e9)

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._reader.join(5)


class Publisher:
    """A long-lived service client over TCP, as the relay's own publisher is."""

    def __init__(self, port: int, client_id: str, username: str, password: str) -> None:
        self._connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        client.username_pw_set(username, password)
        client.on_connect = lambda c, u, f, reason, p: None if reason.is_failure else self._connected.set()
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        if not self._connected.wait(15):
            raise TimeoutError("publisher not connected")
        self.client = client

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main(argv: list[str]) -> int:
    """`python -m bench.mqttc PORT TRANSPORT CLIENT_ID USERNAME TOPIC...`, for SubscriberProcess."""
    port, transport, client_id, username, *topics = argv
    assert transport in ("tcp", "websockets")
    out = threading.Lock()

    def emit(line: str) -> None:
        with out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    sub = Subscriber(
        int(port),
        transport="tcp" if transport == "tcp" else "websockets",
        client_id=client_id,
        username=username or None,
        password=os.environ.get(PASSWORD_VARIABLE) or None,
        topics=topics,
        on_arrival=lambda sid, at: emit(f"{sid} {round(at * 1e9)}"),
    )
    sub.start()
    emit("ready")
    sys.stdin.read()
    sub.stop()
    emit(f"dropped {sub.dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
