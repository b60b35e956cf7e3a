"""RabbitMQ as the broker: it verifies session tokens itself (oauth2 backend), the relay ends connections.

RabbitMQ checks a token's signature, audience and scopes once, at CONNECT: it neither notices when the token
expires on a live connection nor knows of sign-outs. So the relay keeps, in the store, which client ids it
handed out with which expiry, which sessions ended and which desks were closed, and closes connections through
the management API: at once on sign-out and archiving, and on every sweep for whatever has lapsed since, or
has come back with a token of an ended session.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from relay.clock import Clock
from relay.errors import Unavailable
from relay.store import Store

log = logging.getLogger("relay.rabbitmq")

GRANTS = "rabbitmq-grant"  # client id -> its session, until the token expires
ENDED = "rabbitmq-ended"  # "<desk>|<session>" -> signed out, until its tokens would have expired
CLOSED = "rabbitmq-closed-desk"  # desk -> tokens issued before `issuedBefore` are dead
ISSUED = "rabbitmq-session"  # "<desk>|<session>" -> when it last got a client id
LISTING_LAG = timedelta(seconds=5)  # new connections are listed after collect_statistics_interval, later under load
LONGEST_SESSION = timedelta(days=31)  # above SESSION_TTL_HOURS' ceiling: a closed desk's mark outlives its tokens


class Management:
    """The management HTTP API of a cluster: any node's answers for the whole cluster, so try them in turn."""

    def __init__(self, urls: tuple[str, ...], username: str, password: str, timeout_seconds: float = 5.0) -> None:
        self._urls = urls
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._auth = f"Basic {credentials}"
        self._timeout = timeout_seconds

    def connections(self) -> list[dict[str, Any]]:
        found = json.loads(self._call("GET", "/api/connections?columns=name,user,client_properties,protocol"))
        return found if isinstance(found, list) else []

    def close(self, name: str, reason: str) -> None:
        try:
            self._call("DELETE", "/api/connections/" + urllib.parse.quote(name, safe=""), {"X-Reason": reason})
        except Unavailable as exc:
            if "404" not in exc.message:  # already gone: closed by the client, or by another relay instance
                raise

    def _call(self, method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
        problems = []
        for url in self._urls:
            request = urllib.request.Request(  # noqa: S310 - http(s) only: the settings check the scheme
                url + path, method=method, headers={"Authorization": self._auth, **(headers or {})}
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                    body: bytes = response.read()
                    return body
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise Unavailable(
                        f"RabbitMQ's management API answered {exc.code}.", code="broker_refused"
                    ) from None
                problems.append(f"{url}: {exc.code}")
            except (OSError, ValueError) as exc:
                problems.append(f"{url}: {exc}")
        raise Unavailable(f"No RabbitMQ management API answered ({'; '.join(problems)}).", code="broker_unavailable")


def client_id_of(connection: dict[str, Any]) -> str | None:
    """MQTT connections carry the client id in their client properties; other protocols have none."""
    props = connection.get("client_properties")
    value = props.get("client_id") if isinstance(props, dict) else None
    return value if isinstance(value, str) else None


class RabbitAccess:
    """The `BrokerAccess` for RabbitMQ; `service_user` is the relay's own login, whose connections stay."""

    def __init__(self, management: Management, store: Store, clock: Clock, service_user: str) -> None:
        self._management = management
        self._store = store
        self._clock = clock
        self._service_user = service_user

    def credentials(
        self, web_app_id: str, session_id: str, client_id: str, token: str, expires_at: datetime
    ) -> tuple[str, str]:
        now = self._clock.now().timestamp()
        grant = {"webAppId": web_app_id, "sessionId": session_id, "issuedAt": now}
        self._store.kv_put(GRANTS, client_id, grant, expires_at)
        self._store.kv_put(ISSUED, f"{web_app_id}|{session_id}", {"at": now}, expires_at)
        return web_app_id, token

    def revoke_session(self, web_app_id: str, session_id: str, expires_at: datetime) -> None:
        key, now = f"{web_app_id}|{session_id}", self._clock.now()
        self._store.kv_put(ENDED, key, {}, expires_at)
        issued = self._store.kv_get(ISSUED, key, now)
        young = issued is not None and now.timestamp() - float(issued["at"]) < LISTING_LAG.total_seconds()
        self._close_matching(f"{web_app_id}-{session_id}-", "signed out", patience=LISTING_LAG if young else None)

    def revoke_desk(self, web_app_id: str, issued_before: datetime) -> None:
        mark = {"issuedBefore": issued_before.timestamp()}
        self._store.kv_put(CLOSED, web_app_id, mark, issued_before + LONGEST_SESSION)
        self._close_matching(f"{web_app_id}-", "desk archived")

    def _close_matching(self, prefix: str, reason: str, patience: timedelta | None = None) -> None:
        """Best effort now: the sweep closes whatever this missed (the API down, a reconnect racing us). With
        `patience`, a session that got its client id moments ago is looked for again until that has passed, as
        its connection may not be listed yet."""
        deadline = time.monotonic() + (patience.total_seconds() if patience else 0)
        try:
            while True:
                closed = 0
                for connection in self._management.connections():
                    client_id = client_id_of(connection)
                    if client_id and client_id.startswith(prefix) and connection.get("user") != self._service_user:
                        self._management.close(str(connection["name"]), reason)
                        closed += 1
                if closed or time.monotonic() >= deadline:
                    return
                time.sleep(0.25)
        except Unavailable as exc:
            log.warning("sign-out not applied on the broker yet: %s", exc.message)

    def sweep(self, now: datetime) -> int:
        """Close every desk connection that no live grant covers; returns how many were closed."""
        closed = 0
        for connection in self._management.connections():
            client_id = client_id_of(connection)
            if client_id is None or connection.get("user") == self._service_user:
                continue
            reason = self._dead(client_id, now)
            if reason:
                self._management.close(str(connection["name"]), reason)
                closed += 1
        for client_id, _ in self._store.kv_expired(GRANTS, now, 500):
            self._store.kv_delete(GRANTS, client_id)
        return closed

    def _dead(self, client_id: str, now: datetime) -> str | None:
        grant = self._store.kv_get(GRANTS, client_id, now)
        if grant is None:
            return "token expired"
        if self._store.kv_get(ENDED, f"{grant['webAppId']}|{grant['sessionId']}", now) is not None:
            return "signed out"
        closed = self._store.kv_get(CLOSED, grant["webAppId"], now)
        if closed is not None and float(grant["issuedAt"]) <= float(closed["issuedBefore"]):
            return "desk archived"
        return None
