"""Session tokens: one staff session at one desk, short-lived, verified only with the configured algorithm and key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relay.errors import Unauthorized
from relay.settings import Settings
from relay.tokens import Staff, TokenIssuer, new_client_id, new_session_id
from relay.topics import Topics

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
KEY = "s" * 48
MARIA = Staff("n1", "Maria")
SID = "0123456789abcdef"


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_session_ids_are_random_and_client_ids_carry_desk_and_session() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 16 and "-" not in i for i in ids)
    assert new_client_id("reception", SID).startswith(f"reception-{SID}-")
    assert new_client_id("reception", SID) != new_client_id("reception", SID)


def test_a_token_carries_only_the_desk_and_its_topic_claims() -> None:
    token, expires = TokenIssuer(KEY, Topics()).issue("desk1", SID, MARIA, NOW, timedelta(hours=12))
    claims = jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert set(claims) == {"sub", "sid", "staff", "iat", "exp", "subs", "pub", "acl"}
    assert (claims["sub"], claims["sid"], claims["staff"]) == ("desk1", SID, {"id": "n1", "name": "Maria"})
    assert claims["subs"] == ["sms/desk1/#", "sms/unrouted/#"]
    assert claims["pub"] == []
    assert claims["acl"] == [
        {"permission": "allow", "action": "subscribe", "topic": "sms/desk1/#"},
        {"permission": "allow", "action": "subscribe", "topic": "sms/unrouted/#"},
        {"permission": "deny", "action": "all", "topic": "#"},
    ]
    assert expires == NOW + timedelta(hours=12)


def test_expiry() -> None:
    issuer = TokenIssuer(KEY, Topics())
    token, _ = issuer.issue("desk1", SID, MARIA, NOW, timedelta(hours=1))
    claims = issuer.verify(token, NOW + timedelta(minutes=59))
    assert (claims.web_app_id, claims.session_id, claims.staff) == ("desk1", SID, MARIA)
    with pytest.raises(Unauthorized) as expired:
        issuer.verify(token, NOW + timedelta(hours=1))
    assert expired.value.code == "token_expired"


def test_a_token_without_its_session_or_staff_is_refused() -> None:
    for missing in ("sid", "staff"):
        claims = {"sub": "desk1", "sid": SID, "staff": {"id": "n1", "name": "M"}, "iat": 1, "exp": 2**31}
        del claims[missing]
        with pytest.raises(Unauthorized):
            TokenIssuer(KEY, Topics()).verify(jwt.encode(claims, KEY, algorithm="HS256"), NOW)


def test_another_key_or_the_service_token_is_refused() -> None:
    token, _ = TokenIssuer("x" * 48, Topics()).issue("desk1", SID, MARIA, NOW, timedelta(hours=1))
    with pytest.raises(Unauthorized):
        TokenIssuer(KEY, Topics()).verify(token, NOW)
    service = TokenIssuer(KEY, Topics()).service_token(NOW, timedelta(hours=1))
    with pytest.raises(Unauthorized):
        TokenIssuer(KEY, Topics()).verify(service, NOW)


def test_rs256_signs_and_refuses_algorithm_confusion() -> None:
    pem = rsa_pem()
    issuer = TokenIssuer(pem, Topics(), "RS256")
    token, _ = issuer.issue("desk1", SID, MARIA, NOW, timedelta(hours=1))
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert issuer.verify(token, NOW).web_app_id == "desk1"
    hs_token, _ = TokenIssuer(KEY, Topics()).issue("desk1", SID, MARIA, NOW, timedelta(hours=1))
    with pytest.raises(Unauthorized):
        issuer.verify(hs_token, NOW)


def test_rs256_setting_takes_a_one_line_pem() -> None:
    pem = rsa_pem()
    base = {
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_FROM_NUMBER": "+14155550100",
        "RELAY_ACCESS_CODE": "c",
        "RELAY_SIGNING_ALGORITHM": "rs256",
    }
    settings = Settings.from_mapping({**base, "RELAY_SIGNING_KEY": pem.replace("\n", "\\n")})
    assert settings.relay_signing_algorithm == "RS256"
    assert settings.relay_signing_key == pem
    from relay.errors import SettingsError

    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping({**base, "RELAY_SIGNING_KEY": "s" * 48})
    assert failed.value.name == "RELAY_SIGNING_KEY"


def test_only_rabbitmq_tokens_carry_an_audience_and_each_side_insists_on_its_own() -> None:
    rabbit = TokenIssuer(KEY, Topics("clinic-a/sms"), audience="rabbitmq")
    token, _ = rabbit.issue("desk1", SID, MARIA, NOW, timedelta(hours=1))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "rabbitmq"
    assert "rabbitmq.read:*/amq.topic/clinic-a.sms.desk1.*" in claims["scope"].split()
    assert f"rabbitmq.configure:*/mqtt-subscription-desk1-{SID}-*" in claims["scope"].split()
    assert rabbit.verify(token, NOW).web_app_id == "desk1"
    plain, _ = TokenIssuer(KEY, Topics()).issue("desk1", SID, MARIA, NOW, timedelta(hours=1))
    assert "aud" not in jwt.decode(plain, options={"verify_signature": False})
    for issuer, other in ((TokenIssuer(KEY, Topics()), token), (rabbit, plain)):
        with pytest.raises(Unauthorized):
            issuer.verify(other, NOW)
