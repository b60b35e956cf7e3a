"""Staff sessions at desks: the gate (access code or App Service principal), tokens, presence and sign-out.

A session is one person signed in to one desk from one browser. Signing out ends that session only; the desk and
everyone else at it carry on. Desk-wide and person-wide revocations are operator actions.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.broker_access import BrokerAccess
from relay.clock import Clock
from relay.desks import Desk, DeskRuleError, clean_name
from relay.directory import DeskDirectory
from relay.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from relay.settings import Settings
from relay.store import Store
from relay.store.staff import StaffSession
from relay.tokens import Staff, TokenIssuer, new_client_id, new_session_id

LOGIN_WINDOW = timedelta(minutes=15)
PRESENCE_WINDOW = timedelta(seconds=90)  # the web client says it is there every 60 s
DESK_ROLE = "desk."


@dataclass(frozen=True)
class Principal:
    """App Service Authentication's signed-in user, read from headers only it can set (see the settings check)."""

    id: str
    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class SessionRequest:
    access_code: str | None
    desk: object  # a desk id, or None for the default desk
    staff_name: object
    bearer: str | None
    client_address: str
    principal: Principal | None = None


@dataclass(frozen=True)
class Caller:
    """Who is asking, from a live session token."""

    desk: str
    session_id: str
    staff: Staff

    @property
    def web_app_id(self) -> str:
        return self.desk


@dataclass(frozen=True)
class SessionGrant:
    desk: Desk
    staff: Staff
    session_id: str
    token: str
    expires_at: datetime
    client_id: str
    mqtt_username: str
    mqtt_password: str

    @property
    def web_app_id(self) -> str:
        return self.desk.id


def staff_id_for_name(name: str) -> str:
    """Self-declared names get a stable id, so an operator can end every session of 'Maria' at once."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "n" + hashlib.sha256(folded.encode()).hexdigest()[:15]


class Sessions:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        issuer: TokenIssuer,
        clock: Clock,
        access: BrokerAccess,
        directory: DeskDirectory,
    ) -> None:
        self._settings = settings
        self._store = store
        self._issuer = issuer
        self._clock = clock
        self._access = access
        self._directory = directory

    @property
    def ttl(self) -> timedelta:
        return timedelta(hours=self._settings.session_ttl_hours)

    def open(self, request: SessionRequest) -> SessionGrant:
        """Renew a live session with its Bearer token, or pass the gate and start a session at a desk."""
        now = self._clock.now()
        if request.bearer:
            return self._renew(self.authenticate(request.bearer), now)
        staff, allowed = self._pass_gate(request, now)
        desk = self._choose_desk(request.desk, allowed)
        session = StaffSession(new_session_id(), desk.id, staff.id, staff.name, now, now + self.ttl, now)
        self._store.staff.open(session)
        return self._grant(desk, staff, session.id, now)

    def authenticate(self, token: str) -> Caller:
        """The caller of a live token whose session is still open at a live desk; 401 otherwise."""
        now = self._clock.now()
        claims = self._issuer.verify(token, now)
        desk = self._directory.get(claims.web_app_id)
        if desk is None or desk.archived:  # first: archiving also ends the sessions, and this says why
            raise Unauthorized("This desk has been archived; sign in to another desk.", code="desk_archived")
        session = self._store.staff.get(claims.web_app_id, claims.session_id)
        if session is None or not session.live(now):
            raise Unauthorized("This session has ended; sign in again.", code="signed_out")
        return Caller(claims.web_app_id, claims.session_id, claims.staff)

    def sign_out(self, token: str) -> Caller:
        caller = self.authenticate(token)
        self.end(caller.desk, caller.session_id)
        return caller

    def exists(self, desk: str, session_id: str) -> bool:
        return self._store.staff.get(desk, session_id) is not None

    def end(self, desk: str, session_id: str) -> None:
        session = self._store.staff.get(desk, session_id)
        self._store.staff.revoke(desk, session_id)
        self._access.revoke_session(desk, session_id, session.expires_at if session else self._clock.now())

    def seen(self, caller: Caller) -> None:
        """The browser says it is still there: presence for the desk's online count."""
        self._store.staff.touch(caller.desk, caller.session_id, self._clock.now())

    def online(self, desk: str) -> int:
        """How many different people have a browser open at the desk now."""
        now = self._clock.now()
        return len({s.staff_id for s in self._store.staff.of_desk(desk, now) if now - s.seen_at <= PRESENCE_WINDOW})

    def live_sessions(self) -> list[StaffSession]:
        return self._store.staff.everywhere(self._clock.now())

    def end_staff(self, staff_id: str) -> int:
        """An operator ends every session of one person; returns how many."""
        sessions = [s for s in self.live_sessions() if s.staff_id == staff_id]
        for s in sessions:
            self.end(s.desk, s.id)
        return len(sessions)

    def end_desk(self, desk: str) -> int:
        """Every session of an archived desk, and its broker access as a whole."""
        now = self._clock.now()
        sessions = self._store.staff.of_desk(desk, now)
        for s in sessions:
            self.end(desk, s.id)
        self._access.revoke_desk(desk, now)
        return len(sessions)

    def _renew(self, caller: Caller, now: datetime) -> SessionGrant:
        desk = self._directory.live_desk(caller.desk)
        self._store.staff.touch(caller.desk, caller.session_id, now, now + self.ttl)
        return self._grant(desk, caller.staff, caller.session_id, now)

    def _pass_gate(self, request: SessionRequest, now: datetime) -> tuple[Staff, frozenset[str] | None]:
        """Who signs in, and which desk ids they may join (None: any)."""
        if self._settings.relay_auth == "appservice":
            principal = request.principal
            if principal is None:
                raise Unauthorized("Sign in through the site's login first.", code="not_signed_in")
            desks = frozenset(r[len(DESK_ROLE) :] for r in principal.roles if r.startswith(DESK_ROLE))
            if not desks:
                raise Forbidden("Your account has no desk role (desk.<id>); ask an administrator.", code="no_desk")
            name = _staff_name(principal.name or principal.id)
            return Staff(principal.id[:128], name), desks
        address = request.client_address or "unknown"
        failures, oldest = self._store.count_hits("login-failure", address, now - LOGIN_WINDOW)
        if failures >= self._settings.login_max_failures:
            retry = int(((oldest or now) + LOGIN_WINDOW - now).total_seconds()) + 1
            raise TooManyRequests("Too many wrong access codes; wait and try again.", retry_after=retry)
        given = (request.access_code or "").encode()
        if not hmac.compare_digest(given, self._settings.relay_access_code.encode()):
            self._store.record_hit("login-failure", address, now)
            raise Unauthorized("The access code is wrong.", code="invalid_access_code")
        name = _staff_name(request.staff_name)
        return Staff(staff_id_for_name(name), name), None

    def _choose_desk(self, wanted: object, allowed: frozenset[str] | None) -> Desk:
        if wanted is not None and not isinstance(wanted, str):
            raise BadRequest("'desk' must be a desk id such as 'reception'.", code="invalid_desk")
        if wanted:
            desk = self._directory.live_desk(wanted)
            if allowed is not None and desk.id not in allowed:
                raise Forbidden(f"You have no role for the desk {desk.name}.", code="desk_not_allowed")
            return desk
        default = self._directory.default()
        if allowed is None or default.id in allowed:
            return default
        mine = [d for d in self._directory.live() if d.id in allowed]
        if not mine:
            raise Forbidden("None of your desk roles names a live desk.", code="no_desk")
        return mine[0]

    def _grant(self, desk: Desk, staff: Staff, session_id: str, now: datetime) -> SessionGrant:
        token, expires = self._issuer.issue(desk.id, session_id, staff, now, self.ttl)
        self._store.kv_put("presence", "desks", {"webAppId": desk.id}, expires)  # for autoreply: someone is in
        client_id = new_client_id(desk.id, session_id)
        username, password = self._access.credentials(desk.id, session_id, client_id, token, expires)
        return SessionGrant(desk, staff, session_id, token, expires, client_id, username, password)


def _staff_name(value: object) -> str:
    try:
        return clean_name(value, what="Your name", code="invalid_staff_name")
    except DeskRuleError as exc:
        raise BadRequest(str(exc), code=exc.code) from None
