"""Who gets a reply: an alias prefix first, then the desk that most recently texted that phone within the TTL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.sessions import Sessions
from relay.store import UNROUTED, Store

ALIAS_PREFIX = re.compile(r"^\s*#([A-Za-z0-9]{2,4})(?=$|[\s:,.;!?-])[\s:,.;!?-]*")


@dataclass(frozen=True)
class Resolution:
    audience: str  # a webAppId, or UNROUTED
    display_body: str
    by_alias: bool


class Router:
    def __init__(self, store: Store, sessions: Sessions, ttl: timedelta) -> None:
        self._store = store
        self._sessions = sessions
        self._ttl = ttl

    def resolve(self, phone: str, our_sides: list[str], body: str, now: datetime) -> Resolution:
        match = ALIAS_PREFIX.match(body)
        if match:
            owner = self._sessions.alias_owner(match.group(1))
            if owner and not self._sessions.is_signed_out(owner):
                return Resolution(owner, body[match.end() :], by_alias=True)
        return Resolution(self.current(phone, our_sides, now) or UNROUTED, body, by_alias=False)

    def current(self, phone: str, our_sides: list[str], now: datetime) -> str | None:
        """Most recent wins: among live routes, the desk whose last outbound (or claim) is newest."""
        live = [
            r
            for r in self._store.routes(phone, [s for s in our_sides if s])
            if r.active_at + self._ttl > now and r.chosen_at.timestamp() > 0
        ]
        for route in sorted(live, key=lambda r: r.chosen_at, reverse=True):
            if not self._sessions.is_signed_out(route.web_app_id):
                return route.web_app_id
        return None
