"""Session tokens: short-lived JWTs for one staff member's session at one desk, also used as the MQTT password.

They carry the desk (`sub`, which is also the webAppId), the session (`sid`), who is signed in (`staff`), and the
topic claims the broker enforces (`subs`, `pub`, and EMQX's `acl`). For RabbitMQ they also carry `aud` and the
same rights as RabbitMQ `scope`s; only then, so the other brokers never see an audience they would refuse.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from relay.errors import Unauthorized
from relay.topics import Topics

HS256 = "HS256"
ALGORITHMS = (HS256, "RS256")
SERVICE_USER = "relay-service"
RABBITMQ_AUDIENCE = "rabbitmq"  # the oauth2 backend's resource server id, and so the prefix of its scopes


@dataclass(frozen=True)
class Staff:
    id: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class TokenClaims:
    web_app_id: str  # the desk id
    session_id: str
    staff: Staff
    issued_at: datetime
    expires_at: datetime


def new_session_id() -> str:
    """64 random bits in hex: no '-', so it can sit inside a client id between the desk and the suffix."""
    return secrets.token_hex(8)


def new_client_id(web_app_id: str, session_id: str) -> str:
    """Per connection and unguessable, `<desk>-<session>-<random>`, so the broker can tie it to the token."""
    return f"{web_app_id}-{session_id}-{secrets.token_hex(6)}"


class TokenIssuer:
    """HS256 with a shared secret (the embedded broker, EMQX), or RS256 with a PEM private key for brokers that
    check tokens against a certificate (Azure Event Grid's CUSTOM-JWT; untested here)."""

    def __init__(self, signing_key: str, topics: Topics, algorithm: str = "HS256", audience: str | None = None) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {algorithm}")
        self._algorithm = algorithm
        self._topics = topics
        self._audience = audience
        self._key: str | RSAPrivateKey = signing_key
        self._verify_key: str | RSAPublicKey = signing_key
        if algorithm == "RS256":
            private = serialization.load_pem_private_key(signing_key.encode(), password=None)
            if not isinstance(private, RSAPrivateKey):
                raise ValueError("RS256 needs an RSA private key")
            self._key, self._verify_key = private, private.public_key()

    def issue(
        self, web_app_id: str, session_id: str, staff: Staff, now: datetime, ttl: timedelta
    ) -> tuple[str, datetime]:
        expires = now + ttl
        claims = {
            "sub": web_app_id,
            "sid": session_id,
            "staff": staff.to_json(),
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "subs": self._topics.filters_for(web_app_id),
            "pub": [],
            "acl": _emqx_acl(subscribe=self._topics.filters_for(web_app_id), publish=[]),
        }
        if self._audience:
            claims["aud"] = self._audience
            claims["scope"] = " ".join(self._rabbitmq_scopes(web_app_id, session_id))
        return jwt.encode(claims, self._key, algorithm=self._algorithm), expires

    def _rabbitmq_scopes(self, web_app_id: str, session_id: str) -> list[str]:
        """Read the desk's routing keys on amq.topic (MQTT `/` is `.` there, `#` becomes `*`), and use only the
        session's own subscription queues, which RabbitMQ names `mqtt-subscription-<client id>qos<n>`."""
        keys = [f.replace("/", ".").replace("#", "*") for f in self._topics.filters_for(web_app_id)]
        queues = f"*/mqtt-subscription-{web_app_id}-{session_id}-*"
        scopes = [f"{self._audience}.read:*/amq.topic/{key}" for key in keys]
        return scopes + [f"{self._audience}.{right}:{queues}" for right in ("configure", "write", "read")]

    def service_token(self, now: datetime, ttl: timedelta) -> str:
        """The relay's own broker credential for the embedded broker: publish anywhere under the prefix, and hear
        other instances' desk changes."""
        changes = [self._topics.control("desks")]
        claims = {
            "sub": SERVICE_USER,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "subs": changes,
            "pub": [self._topics.everything()],
            "acl": _emqx_acl(subscribe=changes, publish=[self._topics.everything()]),
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm)

    def verify(self, token: str, now: datetime) -> TokenClaims:
        """Check signature, expiry and shape; whether the session is still open is the sessions' business."""
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self._algorithm],
                audience=self._audience,
                # Times are checked below against our clock, not PyJWT's, so tests and skewed instances agree.
                options={"require": ["sub", "sid", "exp", "iat"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            raise Unauthorized("The session token is invalid.", code="invalid_token") from None
        exp = float(claims["exp"])
        if now.timestamp() >= exp:
            raise Unauthorized("The session token has expired.", code="token_expired")
        sub, sid, staff = claims["sub"], claims["sid"], claims.get("staff")
        if not isinstance(sub, str) or not sub or sub == SERVICE_USER or not isinstance(sid, str) or not sid:
            raise Unauthorized("The session token is invalid.", code="invalid_token")
        if not (isinstance(staff, dict) and all(isinstance(staff.get(k), str) for k in ("id", "name"))):
            raise Unauthorized("The session token is invalid.", code="invalid_token")
        tz = now.tzinfo
        return TokenClaims(
            web_app_id=sub,
            session_id=sid,
            staff=Staff(staff["id"], staff["name"]),
            issued_at=datetime.fromtimestamp(float(claims["iat"]), tz),
            expires_at=datetime.fromtimestamp(exp, tz),
        )


def _emqx_acl(subscribe: list[str], publish: list[str]) -> list[dict[str, str]]:
    """The same rights in EMQX's JWT `acl` claim (5.5+ format), ending in an explicit deny of everything else."""
    rules = [{"permission": "allow", "action": "subscribe", "topic": t} for t in subscribe]
    rules += [{"permission": "allow", "action": "publish", "topic": t} for t in publish]
    return [*rules, {"permission": "deny", "action": "all", "topic": "#"}]
