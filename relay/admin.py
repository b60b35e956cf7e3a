"""Operator actions: desks added, renamed and archived at run time, and staff sessions ended.

Guarded by RELAY_ADMIN_CODE or the App Service role `relay.admin`, never by the staff access code.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from relay.clock import Clock, iso
from relay.directory import DeskDirectory
from relay.errors import BadRequest, Forbidden, NotFound, TooManyRequests, Unauthorized
from relay.ownership import Ownership
from relay.sessions import LOGIN_WINDOW, PRESENCE_WINDOW, Principal, Sessions
from relay.settings import Settings
from relay.store import Store

ADMIN_ROLE = "relay.admin"


@dataclass(frozen=True)
class AdminRequest:
    code: str | None
    principal: Principal | None
    client_address: str


class Admin:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        directory: DeskDirectory,
        sessions: Sessions,
        ownership: Ownership,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._directory = directory
        self._sessions = sessions
        self._ownership = ownership
        self._clock = clock

    def check(self, request: AdminRequest) -> None:
        """An operator: the admin role under App Service, else the admin code (with the same lock-out as sign-in)."""
        if self._settings.relay_auth == "appservice" and request.principal is not None:
            if ADMIN_ROLE in request.principal.roles:
                return
            raise Forbidden(f"Your account has no {ADMIN_ROLE} role.", code="not_admin")
        expected = self._settings.relay_admin_code
        if not expected:
            raise Forbidden("Operator actions are off: set RELAY_ADMIN_CODE.", code="admin_disabled")
        now = self._clock.now()
        address = request.client_address or "unknown"
        failures, oldest = self._store.count_hits("admin-failure", address, now - LOGIN_WINDOW)
        if failures >= self._settings.login_max_failures:
            retry = int(((oldest or now) + LOGIN_WINDOW - now).total_seconds()) + 1
            raise TooManyRequests("Too many wrong admin codes; wait and try again.", retry_after=retry)
        if not hmac.compare_digest((request.code or "").encode(), expected.encode()):
            self._store.record_hit("admin-failure", address, now)
            raise Unauthorized("The admin code is wrong.", code="invalid_admin_code")

    def desks(self) -> dict[str, Any]:
        return {
            "desks": [
                {**d.to_json(), "archived": d.archived, "online": 0 if d.archived else self._sessions.online(d.id)}
                for d in self._directory.all()
            ]
        }

    def add_desk(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._directory.add(body.get("name"), body.get("alias"), self._clock.now()).to_json()

    def change_desk(self, desk: str, body: dict[str, Any]) -> dict[str, Any]:
        for key, code in (("name", "invalid_desk_name"), ("alias", "invalid_alias")):
            if key in body and not isinstance(body[key], str):
                raise BadRequest(f"'{key}' must be a string.", code=code)
        return self._directory.rename(desk, body.get("name"), body.get("alias"), self._clock.now()).to_json()

    def archive_desk(self, desk: str) -> dict[str, Any]:
        """No new message reaches it, its people are signed out, and its conversations wait in unrouted."""
        archived = self._directory.archive(desk)
        ended = self._sessions.end_desk(archived.id)
        now = self._clock.now()
        moved = 0
        for conversation in self._store.conversations(archived.id):
            owner = self._ownership.current(conversation.phone, [conversation.our_side])
            if owner is not None and owner.desk == archived.id:
                self._ownership.hand_over(conversation.phone, owner.our_side, None, now, reason="archived")
                moved += 1
        return {**archived.to_json(), "archived": True, "sessionsEnded": ended, "conversationsUnrouted": moved}

    def sessions(self) -> dict[str, Any]:
        now = self._clock.now()
        return {
            "sessions": [
                {
                    "id": s.id,
                    "desk": s.desk,
                    "staff": {"id": s.staff_id, "name": s.staff_name},
                    "startedAt": iso(s.started_at),
                    "expiresAt": iso(s.expires_at),
                    "online": now - s.seen_at <= PRESENCE_WINDOW,
                }
                for s in self._sessions.live_sessions()
            ]
        }

    def end_session(self, desk: str, session_id: str) -> None:
        """404 for a session that never was, so nothing is sent to the broker for it."""
        if not self._sessions.exists(desk, session_id):
            raise NotFound("There is no such session.", code="session_not_found")
        self._sessions.end(desk, session_id)

    def end_staff(self, staff_id: str) -> dict[str, int]:
        return {"sessionsEnded": self._sessions.end_staff(staff_id)}
