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
