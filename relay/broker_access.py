"""How a staff session gets onto the broker: one idea, two implementations.

JWT brokers (the embedded amqtt, EMQX) verify the session token themselves, so granting is free and sign-out is
a control message naming the session (or, when a desk is archived, the desk). Mosquitto has no JWT: the relay,
as its dynamic-security admin, creates a client per browser connection (bound to that client id, password = the
token) with the desk's role, which may read only the desk's topics, and deletes the session's clients at
sign-out and expiry, and the desk's role when the desk is archived.
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
SESSIONS = "dynsec-session"


class BrokerAccess(Protocol):
    def credentials(
        self, web_app_id: str, session_id: str, client_id: str, token: str, expires_at: datetime
    ) -> tuple[str, str]:
        """The MQTT username and password for this connection, provisioned on the broker if it needs that."""

    def revoke_session(self, web_app_id: str, session_id: str, expires_at: datetime) -> None:
        """Close one session's connections and refuse its credentials; the desk's other sessions carry on."""

    def revoke_desk(self, web_app_id: str, issued_before: datetime) -> None:
        """Close every connection of the desk and refuse every credential issued to it so far."""

    def sweep(self, now: datetime) -> int:
        """Remove what expired; returns how many grants were removed."""


class JwtAccess:
    def __init__(self, publisher: Publisher, topics: Topics) -> None:
        self._publisher = publisher
        self._topics = topics

    def credentials(
        self, web_app_id: str, session_id: str, client_id: str, token: str, expires_at: datetime
    ) -> tuple[str, str]:
        return web_app_id, token

    def revoke_session(self, web_app_id: str, session_id: str, expires_at: datetime) -> None:
        self._signout({"webAppId": web_app_id, "sessionId": session_id, "until": int(expires_at.timestamp()) + 1})

    def revoke_desk(self, web_app_id: str, issued_before: datetime) -> None:
        self._signout({"webAppId": web_app_id, "issuedBefore": int(issued_before.timestamp()) + 1})

    def _signout(self, payload: dict[str, object]) -> None:
        try:
            self._publisher.publish(self._topics.control("signout"), json.dumps(payload).encode())
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

    def credentials(
        self, web_app_id: str, session_id: str, client_id: str, token: str, expires_at: datetime
    ) -> tuple[str, str]:
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
        self._store.kv_put(GRANTS, client_id, {"webAppId": web_app_id, "sessionId": session_id}, expires_at)
        key = f"{web_app_id}|{session_id}"
        held = self._store.kv_get(SESSIONS, key, now) or {"clients": []}
        live = [c for c in held["clients"] if self._store.kv_get(GRANTS, c, now) is not None]
        self._store.kv_put(SESSIONS, key, {"clients": sorted({*live, client_id})}, expires_at)
        return client_id, token

    def revoke_session(self, web_app_id: str, session_id: str, expires_at: datetime) -> None:
        key = f"{web_app_id}|{session_id}"
        held = self._store.kv_get(SESSIONS, key, datetime.now(UTC)) or {"clients": []}
        if self._delete(held["clients"]):
            self._store.kv_delete(SESSIONS, key)

    def revoke_desk(self, web_app_id: str, issued_before: datetime) -> None:
        """The desk's role, and with it every right its remaining clients had (sessions are revoked one by one
        before this, by the caller)."""
        try:
            self._run([{"command": "deleteRole", "rolename": f"desk-{web_app_id}"}])
        except RelayError as exc:
            log.warning("desk role not removed from the broker: %s", exc.message)

    def _delete(self, clients: list[str]) -> bool:
        if not clients:
            return True
        commands: list[dict[str, Any]] = [{"command": "deleteClient", "username": c} for c in clients]
        try:
            self._run(commands)
        except RelayError as exc:
            log.warning("sign-out not applied on the broker: %s", exc.message)
            return False
        for client_id in clients:
            self._store.kv_delete(GRANTS, client_id)
        return True

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
