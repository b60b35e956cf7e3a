"""Desk sessions: the operator gate, identity that survives reloads, aliases, sign-out."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.broker_access import BrokerAccess
from relay.clock import Clock
from relay.errors import TooManyRequests, Unauthorized
from relay.settings import Settings
from relay.store import Store
from relay.tokens import TokenIssuer, new_client_id, new_web_app_id

ALIAS_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LOGIN_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class SessionGrant:
    web_app_id: str
    alias: str
    token: str
    expires_at: datetime
    client_id: str
    mqtt_username: str
    mqtt_password: str


@dataclass(frozen=True)
class SessionRequest:
    access_code: str | None
    web_app_id: str | None
    previous_token: str | None
    bearer: str | None
    client_address: str
    principal: str | None = None  # App Service Authentication's user id, when trusted


class Sessions:
    def __init__(
        self, settings: Settings, store: Store, issuer: TokenIssuer, clock: Clock, access: BrokerAccess
    ) -> None:
        self._settings = settings
        self._store = store
        self._issuer = issuer
        self._clock = clock
        self._access = access

    @property
    def ttl(self) -> timedelta:
        return timedelta(hours=self._settings.session_ttl_hours)

    @property
    def horizon(self) -> timedelta:
        return self.ttl + timedelta(days=self._settings.session_resume_days)

    def open(self, request: SessionRequest) -> SessionGrant:
        """Renew with a live Bearer token, or pass the gate and resume (or start) an identity."""
        now = self._clock.now()
        if request.bearer:
            return self._grant(self.authenticate(request.bearer), now)
        self._pass_gate(request, now)
        web_app_id = self._resumable(request, now) or new_web_app_id()
        return self._grant(web_app_id, now)

    def authenticate(self, token: str) -> str:
        """The webAppId of a live, not signed-out token; 401 otherwise."""
        now = self._clock.now()
        claims = self._issuer.verify(token, now)
        if self._signed_out(claims.web_app_id, claims.issued_at, now):
            raise Unauthorized("This desk has signed out; sign in again.", code="signed_out")
        return claims.web_app_id

    def sign_out(self, token: str) -> str:
        web_app_id = self.authenticate(token)
        now = self._clock.now()
        self._store.kv_put("signout", web_app_id, {"at": now.timestamp()}, now + self.horizon)
        record = self._store.kv_get("desk", web_app_id, now)
        if record and record.get("alias"):
            self._store.kv_delete("alias", str(record["alias"]).lstrip("#"))
        self._access.revoke(web_app_id, now)
        return web_app_id

    def is_signed_out(self, web_app_id: str) -> bool:
        now = self._clock.now()
        return self._store.kv_get("signout", web_app_id, now) is not None

    def alias_owner(self, alias: str) -> str | None:
        entry = self._store.kv_get("alias", alias.upper(), self._clock.now())
        return str(entry["webAppId"]) if entry else None

    def _signed_out(self, web_app_id: str, issued_at: datetime, now: datetime) -> bool:
        entry = self._store.kv_get("signout", web_app_id, now)
        return entry is not None and issued_at.timestamp() <= float(entry["at"])

    def _pass_gate(self, request: SessionRequest, now: datetime) -> None:
        if self._settings.relay_auth == "appservice":
            if not request.principal:
                raise Unauthorized("Sign in through the site's login first.", code="not_signed_in")
            return
        address = request.client_address or "unknown"
        failures, oldest = self._store.count_hits("login-failure", address, now - LOGIN_WINDOW)
        if failures >= self._settings.login_max_failures:
            retry = int(((oldest or now) + LOGIN_WINDOW - now).total_seconds()) + 1
            raise TooManyRequests("Too many wrong access codes; wait and try again.", retry_after=retry)
        given = (request.access_code or "").encode()
        if not hmac.compare_digest(given, self._settings.relay_access_code.encode()):
            self._store.record_hit("login-failure", address, now)
            raise Unauthorized("The access code is wrong.", code="invalid_access_code")

    def _resumable(self, request: SessionRequest, now: datetime) -> str | None:
        if not request.web_app_id or not request.previous_token:
            return None
        try:
            claims = self._issuer.verify(
                request.previous_token, now, allow_expired_for=timedelta(days=self._settings.session_resume_days)
            )
        except Unauthorized:
            return None
        if claims.web_app_id != request.web_app_id or self._signed_out(claims.web_app_id, claims.issued_at, now):
            return None
        return claims.web_app_id

    def _grant(self, web_app_id: str, now: datetime) -> SessionGrant:
        token, expires = self._issuer.issue(web_app_id, now, self.ttl)
        self._store.kv_put("presence", "desks", {"webAppId": web_app_id}, expires)  # for autoreply: a desk is in
        client_id = new_client_id(web_app_id)
        username, password = self._access.credentials(web_app_id, client_id, token, expires)
        return SessionGrant(
            web_app_id=web_app_id,
            alias=self._alias_for(web_app_id, now),
            token=token,
            expires_at=expires,
            client_id=client_id,
            mqtt_username=username,
            mqtt_password=password,
        )

    def _alias_for(self, web_app_id: str, now: datetime) -> str:
        """Short, unambiguous, unique among unexpired sessions; kept for as long as the identity lives."""
        expires = now + self.horizon
        record = self._store.kv_get("desk", web_app_id, now)
        if record and record.get("alias"):
            code = str(record["alias"]).lstrip("#")
            if self.alias_owner(code) == web_app_id:
                self._store.kv_put("alias", code, {"webAppId": web_app_id}, expires)
                self._store.kv_put("desk", web_app_id, record, expires)
                return f"#{code}"
        for attempt in range(60):
            length = 2 if attempt < 20 else 3 if attempt < 40 else 4
            code = "".join(secrets.choice(ALIAS_ALPHABET) for _ in range(length))
            if self._store.kv_insert("alias", code, {"webAppId": web_app_id}, expires, now):
                self._store.kv_put("desk", web_app_id, {"alias": code}, expires)
                return f"#{code}"
        raise RuntimeError("no free alias after 60 attempts")
