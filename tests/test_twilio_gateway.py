"""The Twilio gateway against the sandbox: base URL override, error mapping, and where credentials may go."""

from __future__ import annotations

import pytest

from relay.errors import Conflict, NotFound, UpstreamRefused
from relay.settings import Settings
from relay.twilio_gateway import TwilioGateway
from tests.support.runtime import ACCOUNT, OURS, TOKEN


def gateway(sandbox_url: str | None, **env: str) -> TwilioGateway:
    values = {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": OURS,
        "RELAY_SIGNING_KEY": "k" * 40,
        "RELAY_ACCESS_CODE": "x",
        **env,
    }
    if sandbox_url:
        values["TWILIO_API_BASE_URL"] = sandbox_url + "/twilio"
    return TwilioGateway(Settings.from_mapping(values))


def test_region_and_edge_do_not_rewrite_a_loopback_base(sandbox_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    sent = gateway(sandbox_url).send("+14155550161", "hello", [], None)
    assert sent.sid.startswith("SM")
    assert sent.to == "+14155550161"
    assert sent.from_ == OURS


def test_twilio_refusals_keep_twilios_code(sandbox_url: str) -> None:
    with pytest.raises(UpstreamRefused) as refused:
        gateway(sandbox_url).send("+1415", "bad number slipped through", [], None)
    assert refused.value.twilio_code == 21211
    assert refused.value.to_json()["error"]["twilioCode"] == 21211  # type: ignore[index]


def test_wrong_credentials_are_a_twilio_refusal_not_a_crash(sandbox_url: str) -> None:
    with pytest.raises(UpstreamRefused) as refused:
        gateway(sandbox_url, TWILIO_AUTH_TOKEN="wrong").send("+14155550162", "x", [], None)
    assert refused.value.twilio_code == 20003


def test_opted_out_numbers_map_to_conflict(sandbox_url: str) -> None:
    import httpx

    httpx.post(f"{sandbox_url}/phones/+14155550163/reply", json={"body": "STOP"}, timeout=10)
    with pytest.raises(Conflict) as refused:
        gateway(sandbox_url).send("+14155550163", "x", [], None)
    assert refused.value.code == "opted_out"


def test_credentials_only_go_to_twilio_or_the_configured_sandbox(sandbox_url: str) -> None:
    production = gateway(None)
    assert production.media_allowed(f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1")
    for url in (
        "http://api.twilio.com/2010-04-01/Accounts/x/Media/y",
        "https://api.twilio.com.evil.example/x",
        "https://evil.example/api.twilio.com",
        "https://api.twilio.com:8443/x",
        "file:///etc/passwd",
    ):
        assert not production.media_allowed(url), url
    local = gateway(sandbox_url)
    assert local.media_allowed(f"{sandbox_url}/twilio/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1")
    assert not local.media_allowed("https://api.twilio.com/2010-04-01/x")
    with pytest.raises(NotFound):
        local.fetch_media("http://169.254.169.254/latest/meta-data")
