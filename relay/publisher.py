"""The service's one long-lived MQTT client per process, reused across invocations.

paho resends an unacknowledged QoS 1 message by itself after a reconnect, so a publish that timed out
while connected is tracked as in flight and not handed to the outbox again; a publish attempted while
disconnected is never given to paho at all, and stays in the outbox. Given several broker URLs (a cluster's
nodes, comma-separated), it moves to the next one whenever a connection fails or drops.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from relay.breaker import Breaker
from relay.deadlines import broker_wait
from relay.errors import PublishFailed

log = logging.getLogger("relay.publisher")

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class BrokerAddress:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            path=unquote(parts.path) or "/mqtt",
        )


class Publisher:
    """Publishes QoS 1 and waits for PUBACK, bounded; reconnects by itself.

    Never hold our lock while calling into paho: paho calls on_publish holding its own mutex."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        username: str | None,
        password: Callable[[], str | None],
        timeout_seconds: float,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self._addresses = [BrokerAddress.parse(u.strip()) for u in url.split(",") if u.strip()]
        self._address = self._addresses[0]
        self._timeout = timeout_seconds
        self._password = password
        self._username = username
        self._on_connected = on_connected
        self._connected = threading.Event()
        self._connections = 0
        self._inflight: dict[int, tuple[str, Callable[[], None]]] = {}
        self._inflight_keys: set[str] = set()
        self._acked_early: set[int] = set()
        self._handlers: dict[str, Callable[[str, bytes], None]] = {}
        self._lock = threading.Lock()
        self.breaker = Breaker()
        self._drain_wanted = threading.Event()
        self._drainer: threading.Thread | None = None
        transport: Literal["tcp", "websockets"] = "websockets" if self._address.scheme in ("ws", "wss") else "tcp"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            transport=transport,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if transport == "websockets":
            client.ws_set_options(path=self._address.path)
        if self._address.scheme in ("mqtts", "wss"):
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._next_broker
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        self._client = client
        self._started = False

    def start(self) -> None:
        """Connect in the background; publishing before the broker answers fails fast, to the outbox."""
        if self._started:
            return
        self._started = True
        self._client.username_pw_set(self._username, self._password())
        self._client.connect_async(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def connections(self) -> int:
        """How many times this client has connected: what arrived on an earlier connection may have missed some."""
        return self._connections

    def listen(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Subscribe (now and after every reconnect) on the same connection, e.g. for broker control replies."""
        self._handlers[topic] = handler
        if self._connected.is_set():
            self._client.subscribe(topic, qos=1)

    def _handle_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        handler = self._handlers.get(message.topic)
        if handler is not None:
            handler(message.topic, bytes(message.payload))

    def is_inflight(self, key: str) -> bool:
        with self._lock:
            return key in self._inflight_keys

    def publish(self, topic: str, payload: bytes, *, key: str = "", on_acked: Callable[[], None] | None = None) -> None:
        """Publish QoS 1; `on_acked` runs when the PUBACK arrives, even after this call timed out."""
        if not self._connected.is_set():
            raise PublishFailed("The MQTT broker is not connected.")
        if not self.breaker.allow():
            raise PublishFailed("The MQTT broker is not acknowledging; the outbox publishes this later.")
        done = on_acked or (lambda: None)
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishFailed(f"The MQTT broker refused the publish ({mqtt.error_string(info.rc)}).")
        with self._lock:
            acked_already = info.mid in self._acked_early
            if acked_already:
                self._acked_early.discard(info.mid)
            else:
                self._inflight[info.mid] = (key, done)
                if key:
                    self._inflight_keys.add(key)
        if acked_already:
            done()
            return
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            raise PublishFailed("The MQTT connection dropped; paho sends the message after reconnecting.")
        wait = broker_wait(self._timeout)
        deadline = time.monotonic() + wait
        while not info.is_published() and time.monotonic() < deadline:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not info.is_published():
            self.breaker.failed()
            raise PublishFailed(f"No PUBACK from the MQTT broker within {wait:.3g} s.")

    def _handle_publish(self, client: mqtt.Client, userdata: object, mid: int, *args: object) -> None:
        with self._lock:
            key, done = self._inflight.pop(mid, ("", None))
            if done is None:
                self._acked_early.add(mid)
        if done is not None:
            try:
                done()
            except Exception:
                log.exception("after-PUBACK hook failed")
        with self._lock:
            self._inflight_keys.discard(key)  # only now: the hook has recorded the acknowledgement
        if self.breaker.answered():
            self._drain_later()

    def _drain_later(self) -> None:
        """The outbox holds what was published around the broker meanwhile; never drain on paho's thread.

        Always on the one drain thread: each new thread that touched the store kept a SQLite connection open
        after it ended, one more per reconnect or breaker close."""
        if self._on_connected is None:
            return
        with self._lock:
            if self._drainer is None:
                self._drainer = threading.Thread(target=self._drain_forever, name="outbox-drain", daemon=True)
                self._drainer.start()
        self._drain_wanted.set()

    def _drain_forever(self) -> None:
        assert self._on_connected is not None
        while True:
            self._drain_wanted.wait()
            self._drain_wanted.clear()
            try:
                self._on_connected()
            except Exception:
                log.exception("outbox drain failed")

    def _handle_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, *args: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason)
            client.username_pw_set(self._username, self._password())
            return
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        self._connections += 1
        self._connected.set()
        self.breaker.answered()
        log.info("MQTT connected to %s://%s:%s", self._address.scheme, self._address.host, self._address.port)
        self._drain_later()

    def _handle_disconnect(self, client: mqtt.Client, userdata: object, *args: object) -> None:
        if self._connected.is_set():
            log.warning("MQTT connection lost; reconnecting")
        self._connected.clear()
        client.username_pw_set(self._username, self._password())
        self._next_broker(client, userdata)

    def _next_broker(self, client: mqtt.Client, userdata: object) -> None:
        """paho reconnects to `client.host`/`port`: point them at the next URL of the list before it does."""
        if len(self._addresses) < 2:
            return
        self._address = self._addresses[(self._addresses.index(self._address) + 1) % len(self._addresses)]
        client._host, client._port = self._address.host, self._address.port  # the setters refuse inside a callback
        if client.transport == "websockets":
            client.ws_set_options(path=self._address.path)

    def stop(self) -> None:
        if not self._started:
            return
        self._connected.clear()  # a disconnect we asked for is not a lost connection
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
