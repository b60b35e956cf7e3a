"""How instances tell each other that the desks changed: a message on the relay's own MQTT connection.

The desk list is read on every routed message and changes a few times a year. With this feed an instance keeps
its list until a change is announced, instead of reading it again every couple of seconds; without it (a broker
that refuses the subscription, or the connection down) the directory falls back to its short cache. An
instance trusts the feed only once its own probe has come back on the current connection, so a subscription the
broker refused, or changes missed while disconnected, never leave a stale list trusted.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading

from relay.errors import PublishFailed
from relay.publisher import Publisher

log = logging.getLogger("relay.desks")


class DeskChanges:
    def __init__(self, publisher: Publisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic
        self._me = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._changes = 0  # announcements heard, this instance's own included
        self._echoed = -1  # the connection on which this instance's probe came back
        publisher.listen(topic, self._heard)

    def epoch(self) -> tuple[int, int] | None:
        """Stays the same while nothing can have changed unseen; None while the feed cannot be trusted."""
        connection = self._publisher.connections
        with self._lock:
            live = self._echoed == connection and self._publisher.connected
            return (connection, self._changes) if live else None

    def probe(self) -> None:
        """After each connect: the feed is trusted once this comes back through the broker."""
        self._send({"probe": self._publisher.connections, "from": self._me})

    def announce(self) -> None:
        """After a change is stored; if it cannot be sent, other instances see it when their trust runs out."""
        self._send({"changed": True, "from": self._me})

    def _send(self, message: dict[str, object]) -> None:
        try:
            self._publisher.publish(self._topic, json.dumps(message).encode())
        except PublishFailed as exc:
            log.warning("desk change feed: %s", exc.message)

    def _heard(self, topic: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        with self._lock:
            if message.get("from") == self._me and isinstance(message.get("probe"), int):
                self._echoed = message["probe"]
            else:  # a change, or another instance connecting: it may have seeded configured desks before it could say
                self._changes += 1
