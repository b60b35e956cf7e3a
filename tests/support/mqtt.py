"""A real paho subscriber that collects what a desk would receive."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Subscriber:
    def __init__(self, port: int, session: dict[str, Any], *, transport: str = "tcp") -> None:
        creds = session["mqtt"]
        self.topics: list[str] = list(creds["topics"])
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.granted: list[int] = []
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._closed = threading.Event()
        self.refused: str | None = None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=creds["clientId"],
            transport="websockets" if transport == "websockets" else "tcp",
        )
        self.client.username_pw_set(creds["username"], creds["password"])
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *args: self._closed.set()
        self.port = port

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        self._connected.set()
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.granted = [r.value for r in reasons]
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received.put((message.topic, json.loads(message.payload)))

    def start(self, timeout: float = 10.0) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._subscribed.wait(0.05):
            if self._closed.is_set() and not self.refused:
                self.refused = "closed by the broker before a SUBACK"  # RabbitMQ's way of refusing a filter
            if self.refused or time.monotonic() > deadline:
                self.stop()
                raise ConnectionRefusedError(self.refused or "subscriber did not get a SUBACK")

    def wait_for(
        self, match: Callable[[str, dict[str, Any]], bool], timeout: float = 10.0
    ) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("expected message did not arrive")
            try:
                topic, payload = self.received.get(timeout=remaining)
            except queue.Empty:
                continue
            if match(topic, payload):
                return topic, payload

    def disconnected_by_broker(self, cause: Callable[[], object], timeout: float = 10.0) -> bool:
        """Run `cause` and report whether the broker then closed this connection within `timeout`."""
        gone = threading.Event()
        self.client.on_disconnect = lambda *args: gone.set()
        cause()
        return gone.wait(timeout)

    def drain(self, quiet: float = 0.5) -> list[tuple[str, dict[str, Any]]]:
        """Everything that arrives until nothing has for `quiet` seconds."""
        got = []
        while True:
            try:
                got.append(self.received.get(timeout=quiet))
            except queue.Empty:
                return got

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class PersistentDesk:
    """A desk's MQTT/TCP session with clean_session=False, resumed on whichever node it is sent to next, as a
    client with a list of broker URLs would. Records every payload with the time it arrived."""

    def __init__(self, client_id: str, username: str, password: str, topics: list[str]) -> None:
        self.client_id, self.username, self.password = client_id, username, password
        self.topics = topics
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.client: mqtt.Client | None = None
        self.dropped = threading.Event()

    def connect(self, port: int, timeout: float = 20.0) -> bool:
        """Connect and subscribe; whether the broker still had the session (CONNACK session present)."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        client.username_pw_set(self.username, self.password)
        ready, present = threading.Event(), []

        def on_connect(c: mqtt.Client, u: object, flags: mqtt.ConnectFlags, reason: object, p: object) -> None:
            present.append(flags.session_present)
            c.subscribe([(t, 1) for t in self.topics])

        def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.received.append((time.monotonic(), json.loads(message.payload)))

        client.on_connect = on_connect
        client.on_subscribe = lambda *args: ready.set()
        client.on_message = on_message
        client.on_disconnect = lambda *args: self.dropped.set()
        self.dropped.clear()
        client.connect("127.0.0.1", port, keepalive=5)
        client.loop_start()
        self.client = client
        if not ready.wait(timeout):
            raise TimeoutError(f"the desk could not subscribe on port {port}")
        return bool(present and present[0])

    def leave(self) -> None:
        """Drop the client whose node died; there is nobody to send a DISCONNECT to."""
        if self.client is not None:
            self.client.loop_stop()
            self.client = None

    def end(self) -> None:
        """DISCONNECT; the broker keeps the session (its queue) until `mqtt.subscription_ttl`."""
        if self.client is not None:
            self.client.disconnect()
            self.leave()

    def values(self, field: str) -> list[Any]:
        with self.lock:
            return [payload.get(field) for _, payload in self.received]
