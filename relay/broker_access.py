"""How a desk gets onto the broker: one idea, two implementations.

JWT brokers (the embedded amqtt, EMQX) verify the session token themselves, so granting is free and sign-out is
a control message. Mosquitto has no JWT: the relay, as its dynamic-security admin, creates a client per browser
connection (bound to that client id, password = the token) with a role that may read only the desk's topics,
and deletes them at sign-out and expiry.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from relay.errors import PublishFailed, RelayError, Unavailable
from relay.publisher import Publisher
from relay.store import Store
from relay.topics import Topics

log = logging.getLogger("relay.broker_access")

DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"
GRANTS = "dynsec-grant"
DESKS = "dynsec-desk"


class BrokerAccess(Protocol):
    def credentials(self, web_app_id: str, client_id: str, token: str, expires_at: datetime) -> tuple[str, str]:
        """The MQTT username and password for this connection, provisioned on the broker if it needs that."""

    def revoke(self, web_app_id: str, issued_before: datetime) -> None:
        """Close the desk's connections and refuse its current credentials."""

    def sweep(self, now: datetime) -> int:
        """Remove what expired; returns how many grants were removed."""


class JwtAccess:
    def __init__(self, publisher: Publisher, topics: Topics) -> None:
        self._publisher = publisher
        self._topics = topics

    def credentials(self, web_app_id: str, client_id: str, token: str, expires_at: datetime) -> tuple[str, str]:
        return web_app_id, token

    def revoke(self, web_app_id: str, issued_before: datetime) -> None:
        payload = {"webAppId": web_app_id, "issuedBefore": int(issued_before.timestamp()) + 1}
        try:
            self._publisher.publish(self._topics.of("_control", "signout"), json.dumps(payload).encode())
        except RelayError as exc:
            log.warning("sign-out not sent to the broker: %s", exc.message)

    def sweep(self, now: datetime) -> int:
        return 0


class DynsecAccess:
    """Mosquitto's dynamic-security plugin, driven over `$CONTROL/dynamic-security/v1`."""

    def __init__(self, publisher: Publisher, topics: Topics, store: Store, timeout_seconds: float = 5.0) -> None:
        self._publisher = publisher
        self._topics = topics
        self._store = store
        self._timeout = timeout_seconds
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        publisher.listen(DYNSEC_TOPIC + "/response", self._on_response)

    def credentials(self, web_app_id: str, client_id: str, token: str, expires_at: datetime) -> tuple[str, str]:
        now = datetime.now(UTC)
        role = f"desk-{web_app_id}"
        acls = [
            {"acltype": kind, "topic": topic, "allow": True}
            for topic in self._topics.filters_for(web_app_id)
            for kind in ("subscribePattern", "publishClientReceive")
        ]
        replies = self._run(
            [
                {"command": "createRole", "rolename": role, "acls": acls},
                {
                    "command": "createClient",
                    "username": client_id,
                    "password": token,
                    "clientid": client_id,
                    "roles": [{"rolename": role}],
                },
            ]
        )
        failed = [r for r in replies if r.get("error") and "already exists" not in str(r["error"]).lower()]
        if failed:
            raise Unavailable(f"The broker refused to provision the desk: {failed[0]['error']}", code="broker_refused")
        self._store.kv_put(GRANTS, client_id, {"webAppId": web_app_id}, expires_at)
        desk = self._store.kv_get(DESKS, web_app_id, now) or {"clients": []}
        live = [c for c in desk["clients"] if self._store.kv_get(GRANTS, c, now) is not None]
        self._store.kv_put(DESKS, web_app_id, {"clients": sorted({*live, client_id})}, None)
        return client_id, token

    def revoke(self, web_app_id: str, issued_before: datetime) -> None:
        desk = self._store.kv_get(DESKS, web_app_id, issued_before) or {"clients": []}
        commands: list[dict[str, Any]] = [{"command": "deleteClient", "username": c} for c in desk["clients"]]
        commands.append({"command": "deleteRole", "rolename": f"desk-{web_app_id}"})
        try:
            self._run(commands)
        except RelayError as exc:
            log.warning("sign-out not applied on the broker: %s", exc.message)
            return
        for client_id in desk["clients"]:
            self._store.kv_delete(GRANTS, client_id)
        self._store.kv_delete(DESKS, web_app_id)

    def sweep(self, now: datetime) -> int:
        expired = self._store.kv_expired(GRANTS, now, 200)
        if not expired:
            return 0
        self._run([{"command": "deleteClient", "username": client_id} for client_id, _ in expired])
        for client_id, _ in expired:
            self._store.kv_delete(GRANTS, client_id)
        return len(expired)

    def _run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands and wait for their answers, matched on correlationData."""
        tag = secrets.token_hex(8)
        for i, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{i}"
        done = threading.Event()
        replies: list[dict[str, Any]] = []
        with self._lock:
            self._waiting[tag] = (done, replies)
        try:
            self._publisher.publish(DYNSEC_TOPIC, json.dumps({"commands": commands}).encode())
            if not done.wait(self._timeout):
                raise PublishFailed("The broker did not answer the dynamic-security command in time.")
        finally:
            with self._lock:
                self._waiting.pop(tag, None)
        return replies

    def _on_response(self, topic: str, payload: bytes) -> None:
        try:
            responses = json.loads(payload).get("responses", [])
        except ValueError:
            return
        answered = set()
        with self._lock:
            for response in responses:
                tag = str(response.get("correlationData", "")).rsplit("-", 1)[0]
                if tag in self._waiting:
                    self._waiting[tag][1].append(response)
                    answered.add(tag)
            for tag in answered:
                self._waiting[tag][0].set()
