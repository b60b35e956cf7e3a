"""What amqtt's JWT plugins leave open: client-id binding, wills, and sign-out.

`UserAuthJwtPlugin` checks signature, expiry and `sub` == username; `TopicAuthJwtPlugin` checks topics against
`subs`/`pub`. This plugin adds, at CONNECT:
- the client id must be `<webAppId>-...` (the relay service: `relay-service...`), so one desk cannot take over,
  or squat, another desk's session;
- a will must lie inside the token's `pub` claim, since amqtt broadcasts wills without the publish check
  (desks have an empty `pub`, so a desk may not set a will at all);
- a token issued at or before a sign-out of its webAppId is refused.
It also applies sign-outs the relay service publishes on `<prefix>/_control/signout`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from amqtt.plugins import TopicMatcher
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import ApplicationMessage, Session

from relay.tokens import HS256, SERVICE_USER

logger = logging.getLogger(__name__)

Disconnector = Callable[[str], Awaitable[int]]


class DeskGuardPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    @dataclass
    class Config:
        secret_key: str
        signout_topic: str

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._signed_out: dict[str, float] = {}
        self._disconnect: Disconnector | None = None

    def bind_disconnector(self, disconnect: Disconnector) -> None:
        """The broker hands us the way to drop a webAppId's live connections (plugins have no access to them)."""
        self._disconnect = disconnect

    async def authenticate(self, *, session: Session) -> bool | None:
        if not session.username or not session.password:
            return False
        try:
            claims = jwt.decode(
                session.password,
                self.config.secret_key,
                algorithms=[HS256],
                options={"require": ["sub", "iat", "exp"]},
            )
        except jwt.InvalidTokenError:
            return False
        sub = claims["sub"]
        client_id = session.client_id or ""
        required_prefix = SERVICE_USER if sub == SERVICE_USER else f"{sub}-"
        if not client_id.startswith(required_prefix):
            logger.info("refused %s: client id is not bound to the token", sub)
            return False
        if session.will_flag and not _allowed(session.will_topic or "", claims.get("pub")):
            logger.info("refused %s: will topic outside the token's pub claim", sub)
            return False
        cutoff = self._signed_out.get(sub)
        if cutoff is not None and float(claims["iat"]) <= cutoff:
            logger.info("refused %s: token issued before sign-out", sub)
            return False
        return True

    async def on_broker_message_broadcast(self, *, client_id: str, message: ApplicationMessage) -> None:
        """Fired only for publishes the topic ACL allowed, so only the relay service can reach the control topic."""
        if message.topic != self.config.signout_topic:
            return
        signout = _parse_signout(bytes(message.data or b""))
        if signout is None:
            logger.warning("ignored a malformed sign-out from %s", client_id)
            return
        web_app_id, issued_before = signout
        self._signed_out[web_app_id] = max(issued_before, self._signed_out.get(web_app_id, issued_before))
        dropped = await self._disconnect(web_app_id) if self._disconnect else 0
        logger.info("signed out %s: %d session(s) closed", web_app_id, dropped)


def _allowed(topic: str, filters: object) -> bool:
    matcher = TopicMatcher()
    return isinstance(filters, list) and any(isinstance(f, str) and matcher.is_topic_allowed(topic, f) for f in filters)


def _parse_signout(data: bytes) -> tuple[str, float] | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    web_app_id, issued_before = body.get("webAppId"), body.get("issuedBefore")
    if not isinstance(web_app_id, str) or not web_app_id or web_app_id == SERVICE_USER:
        return None
    if isinstance(issued_before, bool) or not isinstance(issued_before, int | float):
        return None
    return web_app_id, float(issued_before)
