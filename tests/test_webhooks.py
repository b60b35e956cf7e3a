"""Webhook signatures, checked with the twilio SDK on real azure.functions.HttpRequest objects."""

from __future__ import annotations

from urllib.parse import urlencode

import azure.functions as func
import pytest
from twilio.request_validator import HMAC_SHA256, RequestValidator

from functions.http import webhook_request
from relay.errors import Forbidden, PayloadTooLarge, UnsupportedMediaType
from relay.settings import Settings
from relay.webhooks import WebhookValidator, public_base, public_url

TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def settings(**env: str) -> Settings:
    base = {
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": "+14155550100",
        "RELAY_SIGNING_KEY": "k" * 40,
        "RELAY_ACCESS_CODE": "code",
        "WEBHOOK_HOSTS": "relay.example.org,mycompany.com",
    }
    return Settings.from_mapping({**base, **env})


def request(url: str, params: dict[str, str], headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST",
        url=url,
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        params={},
        body=urlencode(params).encode(),
    )


def signed(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def test_twilio_published_vector_is_accepted() -> None:
    req = request(VECTOR_URL, VECTOR_PARAMS, {"X-Twilio-Signature": VECTOR_SIGNATURE})
    WebhookValidator(settings()).validate(webhook_request(req))


@pytest.mark.parametrize(
    ("called", "signed_for"),
    [
        ("https://relay.example.org:443/api/receive_sms", "https://relay.example.org/api/receive_sms"),
        ("https://relay.example.org/api/receive_sms", "https://relay.example.org:443/api/receive_sms"),
        ("https://relay.example.org/api/receive_sms", "https://relay.example.org/api/receive_sms"),
    ],
)
def test_a_signature_with_or_without_the_port_validates(called: str, signed_for: str) -> None:
    params = {"MessageSid": "SM" + "b" * 32, "Body": "port?"}
    req = request(called, params, {"X-Twilio-Signature": signed(signed_for, params)})
    WebhookValidator(settings()).validate(webhook_request(req))
    other_port = signed("https://relay.example.org:8443/api/receive_sms", params)
    wrong = request(called, params, {"X-Twilio-Signature": other_port})
    with pytest.raises(Forbidden):
        WebhookValidator(settings()).validate(webhook_request(wrong))


def test_behind_a_tls_terminating_proxy_public_base_url_is_what_was_signed() -> None:
    params = {"MessageSid": "SM" + "a" * 32, "Body": "hi"}
    sig = signed("https://relay.example.org/api/receive_sms", params)
    req = request("http://127.0.0.1:7071/api/receive_sms", params, {"X-Twilio-Signature": sig})
    WebhookValidator(settings(PUBLIC_BASE_URL="https://relay.example.org")).validate(webhook_request(req))
    with pytest.raises(Forbidden):
        WebhookValidator(settings()).validate(webhook_request(req))


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("missing signature", lambda p, h: h.pop("X-Twilio-Signature")),
        ("tampered body", lambda p, h: p.update(Body="transfer all funds")),
        ("added field", lambda p, h: p.update(Extra="1")),
        ("another token", lambda p, h: h.update({"X-Twilio-Signature": signed(VECTOR_URL, VECTOR_PARAMS, "other")})),
    ],
)
def test_forged_signatures_are_refused(name: str, mutate: object) -> None:
    params = dict(VECTOR_PARAMS)
    headers = {"X-Twilio-Signature": VECTOR_SIGNATURE}
    assert callable(mutate)
    mutate(params, headers)
    with pytest.raises(Forbidden) as refused:
        WebhookValidator(settings()).validate(webhook_request(request(VECTOR_URL, params, headers)))
    assert refused.value.code == "invalid_signature"


def test_forwarded_headers_count_only_when_proxies_are_trusted() -> None:
    params = {"MessageSid": "SM" + "b" * 32}
    sig = signed("https://relay.example.org/api/receive_sms", params)
    headers = {"X-Twilio-Signature": sig, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "relay.example.org"}
    req = request("http://10.0.0.5:80/api/receive_sms", params, headers)
    WebhookValidator(settings(TRUSTED_PROXY_HOPS="1")).validate(webhook_request(req))
    with pytest.raises(Forbidden):
        WebhookValidator(settings()).validate(webhook_request(req))


def test_url_is_rebuilt_with_the_query_and_nearest_trusted_hop() -> None:
    s = settings(TRUSTED_PROXY_HOPS="1")
    url = public_url(s, "http://internal/api/receive_sms?x=1", {"x-forwarded-proto": "evil, https"})
    assert url == "https://internal/api/receive_sms?x=1"


def test_sha256_signatures_validate_through_the_sdk_with_the_shared_key() -> None:
    params = {"MessageSid": "SM" + "c" * 32, "Body": "hi"}
    url = "https://relay.example.org/api/receive_sms"
    sig = RequestValidator("shared-secret").compute_signature(url, params, HMAC_SHA256)
    headers = {"X-Twilio-Signature": sig, "X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_SHA256"}
    req = webhook_request(request(url, params, headers))
    WebhookValidator(settings(TWILIO_WEBHOOK_SHARED_KEY="shared-secret")).validate(req)
    with pytest.raises(Forbidden):
        WebhookValidator(settings()).validate(req)


def test_a_replay_signed_for_another_deployment_is_refused_by_its_host() -> None:
    """Host: is the caller's to write; with PUBLIC_BASE_URL unset only the hosts this deployment owns count."""
    params = {"MessageSid": "SM" + "d" * 32, "Body": "staging"}
    url = "http://staging.example.org/api/receive_sms"
    req = webhook_request(
        request(url, params, {"X-Twilio-Signature": signed(url, params), "Host": "staging.example.org"})
    )
    with pytest.raises(Forbidden) as refused:
        WebhookValidator(settings()).validate(req)
    assert refused.value.code == "host_not_allowed"
    WebhookValidator(settings(WEBHOOK_HOSTS="staging.example.org")).validate(req)
    WebhookValidator(settings(WEBHOOK_HOSTS="", WEBSITE_HOSTNAME="staging.example.org")).validate(req)
    with pytest.raises(Forbidden):
        WebhookValidator(settings(WEBHOOK_HOSTS="staging.example.org:8080")).validate(req)


def test_status_callbacks_go_only_to_a_host_this_deployment_owns() -> None:
    assert public_base(settings(), "http://relay.example.org:8080/api/send_sms", {}) == "http://relay.example.org:8080"
    assert public_base(settings(), "http://attacker.example/api/send_sms", {}) == ""
    chosen = settings(PUBLIC_BASE_URL="https://relay.example.org")
    assert public_base(chosen, "http://attacker.example/api/send_sms", {}) == "https://relay.example.org"


def test_a_webhook_that_is_not_a_form_or_too_large_is_refused_before_validation() -> None:
    req = func.HttpRequest(method="POST", url=VECTOR_URL, headers={"Content-Type": "application/json"}, body=b"{}")
    with pytest.raises(UnsupportedMediaType):
        webhook_request(req)
    big = request(VECTOR_URL, {"Body": "x" * 70_000})
    with pytest.raises(PayloadTooLarge):
        webhook_request(big)


def test_repeated_keys_are_signed_with_every_value_as_twilio_python_vectors_show() -> None:
    """twilio-python's duplicate-key vector (tests/unit/test_request_validator.py): Digits=5678&Digits=1234."""
    body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234"
    req = func.HttpRequest(
        method="POST",
        url=VECTOR_URL,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
        },
        body=body,
    )
    webhook = webhook_request(req)
    assert webhook.params["Digits"] == "5678"  # the relay still reads the first value
    WebhookValidator(settings()).validate(webhook)
    dropped = func.HttpRequest(
        method="POST", url=VECTOR_URL, headers=dict(req.headers), body=b"Sid=CA123&SidAccount=AC123&Digits=5678"
    )
    with pytest.raises(Forbidden):
        WebhookValidator(settings()).validate(webhook_request(dropped))
