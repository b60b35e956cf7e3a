"""What amqtt's JWT plugins leave open: client-id binding, wills, and sign-out.

`UserAuthJwtPlugin` checks signature, expiry and `sub` == username; `TopicAuthJwtPlugin` checks topics against
`subs`/`pub`. This plugin adds, at CONNECT:
- the client id must be `<webAppId>-<sid>-...` (the relay service: `relay-service...`), so one desk cannot take
  over, or squat, another desk's session, and one staff session's connections can be told from another's;
- a will must lie inside the token's `pub` claim, since amqtt broadcasts wills without the publish check
  (desks have an empty `pub`, so a desk may not set a will at all);
- a token of a signed-out session, or issued at or before its desk was archived, is refused.
It also applies sign-outs the relay service publishes on `<prefix>/_control/signout`: one session's
(`{"webAppId", "sessionId", "until"}`) or a whole desk's (`{"webAppId", "issuedBefore"}`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from amqtt.plugins import TopicMatcher
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import ApplicationMessage, Session

from relay.tokens import HS256, SERVICE_USER

logger = logging.getLogger(__name__)

Disconnector = Callable[[str], Awaitable[int]]  # a client-id prefix -> how many sessions were closed


class DeskGuardPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    @dataclass
    class Config:
        secret_key: str
        signout_topic: str

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._signed_out: dict[str, float] = {}  # desk -> tokens issued at or before this are refused
        self._ended: dict[str, float] = {}  # session id -> until when its tokens could still be presented
        self._disconnect: Disconnector | None = None

    def bind_disconnector(self, disconnect: Disconnector) -> None:
        """The broker hands us the way to drop live connections (plugins have no access to them)."""
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
        sub, sid = claims["sub"], claims.get("sid")
        client_id = session.client_id or ""
        required_prefix = SERVICE_USER if sub == SERVICE_USER else f"{sub}-{sid}-"
        if sub != SERVICE_USER and not isinstance(sid, str):
            return False
        if not client_id.startswith(required_prefix):
            logger.info("refused %s: client id is not bound to the token", sub)
            return False
        if session.will_flag and not _allowed(session.will_topic or "", claims.get("pub")):
            logger.info("refused %s: will topic outside the token's pub claim", sub)
            return False
        cutoff = self._signed_out.get(sub)
        if cutoff is not None and float(claims["iat"]) <= cutoff:
            logger.info("refused %s: token issued before the desk was closed", sub)
            return False
        if isinstance(sid, str) and sid in self._ended:
            logger.info("refused %s: the session has signed out", sub)
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
        web_app_id, session_id, at = signout
        if session_id is None:
            self._signed_out[web_app_id] = max(at, self._signed_out.get(web_app_id, at))
            prefix = f"{web_app_id}-"
        else:
            now = time.time()
            self._ended = {k: v for k, v in self._ended.items() if v > now}  # expired tokens are refused anyway
            self._ended[session_id] = at
            prefix = f"{web_app_id}-{session_id}-"
        dropped = await self._disconnect(prefix) if self._disconnect else 0
        logger.info("signed out %s: %d connection(s) closed", prefix, dropped)


def _allowed(topic: str, filters: object) -> bool:
    matcher = TopicMatcher()
    return isinstance(filters, list) and any(isinstance(f, str) and matcher.is_topic_allowed(topic, f) for f in filters)


def _parse_signout(data: bytes) -> tuple[str, str | None, float] | None:
    """(desk, session id or None for the whole desk, the time it applies to)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    web_app_id, session_id = body.get("webAppId"), body.get("sessionId")
    at = body.get("until") if session_id is not None else body.get("issuedBefore")
    if not isinstance(web_app_id, str) or not web_app_id or web_app_id == SERVICE_USER or "-" in web_app_id:
        return None
    if session_id is not None and (not isinstance(session_id, str) or not session_id or "-" in session_id):
        return None
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    return web_app_id, session_id, float(at)
