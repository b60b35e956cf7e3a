"""paho clients the scenarios share: a timestamping subscriber and a long-lived publisher."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SID = re.compile(rb'"MessageSid":\s*"(\w+)"')


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


class Subscriber:
    """Records when each MessageSid arrives (perf_counter), and every arrival for exactly-once checks."""

    @classmethod
    def for_session(
        cls, session: dict[str, object], port: int, transport: Literal["tcp", "websockets"], topics: list[str]
    ) -> Subscriber:
        """A desk's subscriber, with the MQTT credentials `/api/session` answered."""
        mqtt_creds = session["mqtt"]
        assert isinstance(mqtt_creds, dict)
        return cls(
            port,
            transport=transport,
            client_id=str(mqtt_creds["clientId"]),
            username=str(mqtt_creds["username"]),
            password=str(mqtt_creds["password"]),
            topics=topics,
        )

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
        self.arrivals: dict[str, float] = {}
        self.order: list[str] = []
        self.dropped = 0
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._unsubscribed = threading.Event()
        self._port = port
        self._topics = topics
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
        now = time.perf_counter()
        m = SID.search(message.payload)
        if m is None:
            return
        sid = m.group(1).decode()
        with self._cond:
            self.order.append(sid)
            self.arrivals.setdefault(sid, now)
            self._cond.notify_all()

    def start(self, timeout: float = 15.0) -> None:
        self.client.connect("127.0.0.1", self._port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(timeout):
            raise TimeoutError("subscriber got no SUBACK")

    def wait(self, sid: str, timeout: float) -> float | None:
        """When `sid` arrived, or None after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: sid in self.arrivals, timeout)
            return self.arrivals.get(sid)

    def count(self) -> int:
        with self._cond:
            return len(self.order)

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe first: the session outlives the connection, and the broker would keep queueing for it."""
        result, _ = self.client.unsubscribe(self._topics)
        if result == mqtt.MQTT_ERR_SUCCESS:
            self._unsubscribed.wait(timeout)
        self.client.disconnect()
        self.client.loop_stop()


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
