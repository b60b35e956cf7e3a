"""The Twilio sandbox, driven by the real twilio SDK over loopback HTTP, with a signature-checking receiver."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from devhost.sandbox.state import DateFilter
from tests.support.ports import free_port
from tests.support.sandbox import ACCOUNT, OUR, PHONE, POOL_2, SERVICE, TOKEN, Sandbox, sdk_client, wait_for

pytestmark = pytest.mark.timeout(30)

INBOUND_FIELDS = {
    "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid", "From", "To", "Body", "NumMedia",
    "NumSegments", "ReferralNumMedia", "SmsStatus", "ApiVersion", "FromCity", "FromState", "FromZip", "FromCountry",
    "ToCity", "ToState", "ToZip", "ToCountry",
}  # fmt: skip


def test_create_fetch_and_list_in_twilios_shape(sandbox: Sandbox) -> None:
    created = sandbox.client.messages.create(to=PHONE, from_=OUR, body="Your appointment is at 10:00")
    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert (created.status, created.direction, created.from_, created.to) == ("queued", "outbound-api", OUR, PHONE)
    assert (created.account_sid, created.api_version, created.num_segments, created.num_media) == (
        ACCOUNT,
        "2010-04-01",
        "1",
        "0",
    )
    assert created.date_created is not None and created.price is None and created.error_code is None
    assert created.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{created.sid}.json"

    delivered = wait_for(lambda: m if (m := created.fetch()).status == "delivered" else None)
    assert delivered.date_sent is not None
    assert [m.sid for m in sandbox.client.messages.list(to=PHONE)] == [created.sid]

    raw = sandbox.http.get(f"/sandbox/twilio{created.uri}", auth=(ACCOUNT, TOKEN)).json()
    assert set(raw) == {
        "account_sid", "api_version", "body", "date_created", "date_sent", "date_updated", "direction", "error_code",
        "error_message", "from", "messaging_service_sid", "num_media", "num_segments", "price", "price_unit", "sid",
        "status", "subresource_uris", "to", "uri",
    }  # fmt: skip
    assert raw["date_sent"].endswith(" +0000")
    [received] = sandbox.phone_messages(PHONE)
    assert (received["sid"], received["from"], received["body"], received["media"]) == (
        created.sid,
        OUR,
        "Your appointment is at 10:00",
        [],
    )


def test_validation_errors_are_twilio_errors_and_recorded(sandbox: Sandbox) -> None:
    assert sandbox.http.delete("/sandbox/calls").status_code == 204
    with pytest.raises(TwilioRestException) as invalid:
        sandbox.client.messages.create(to="+1415555", from_=OUR, body="hi")
    assert (invalid.value.code, invalid.value.status) == (21211, 400)
    assert "+1415555" in invalid.value.msg
    calls = sandbox.http.get("/sandbox/calls").json()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json", 400)
    ]

    cases: list[tuple[dict[str, Any], int]] = [
        ({"to": PHONE, "from_": OUR}, 21602),
        ({"to": PHONE, "from_": OUR, "body": "x" * 1601}, 21617),
        ({"to": PHONE, "body": "hi"}, 21603),
    ]
    for kwargs, code in cases:
        with pytest.raises(TwilioRestException) as error:
            sandbox.client.messages.create(**kwargs)
        assert error.value.code == code
    assert len(sandbox.http.get("/sandbox/calls").json()) == 4
    assert sandbox.state.find_messages(None, None, DateFilter()) == []


def test_bad_credentials_and_wrong_account(sandbox: Sandbox) -> None:
    with pytest.raises(TwilioRestException) as bad_auth:
        sdk_client(sandbox.base, token="not-the-token").messages.create(to=PHONE, from_=OUR, body="hi")
    assert (bad_auth.value.code, bad_auth.value.status) == (20003, 401)
    with pytest.raises(TwilioRestException) as wrong_account:
        sandbox.client.api.v2010.accounts("AC" + "9" * 32).messages("SM" + "0" * 32).fetch()
    assert (wrong_account.value.code, wrong_account.value.status) == (20404, 404)


def test_status_callbacks_arrive_signed_one_per_change(sandbox: Sandbox) -> None:
    callback = f"{sandbox.base}/api/sms_status"
    ok = sandbox.client.messages.create(to=PHONE, from_=OUR, body="a", status_callback=callback)
    failing = sandbox.client.messages.create(to="+14155550199", from_=OUR, body="b", status_callback=callback)
    lost = sandbox.client.messages.create(to="+14155550198", from_=OUR, body="c", status_callback=callback)

    def statuses(sid: str) -> list[dict[str, str]] | None:
        found = [r["form"] for r in sandbox.receiver.at("/api/sms_status") if r["form"]["MessageSid"] == sid]
        return found if len(found) == 2 else None

    # None for `queued`, the status the message was created with (see test_sandbox_fidelity for the sources).
    assert [f["MessageStatus"] for f in wait_for(lambda: statuses(ok.sid))] == ["sent", "delivered"]
    failed = wait_for(lambda: statuses(failing.sid))
    assert [f["MessageStatus"] for f in failed] == ["sent", "failed"]
    assert failed[-1]["ErrorCode"] == "30003" and failed[-1]["SmsStatus"] == "failed"
    undelivered = wait_for(lambda: statuses(lost.sid))
    assert [f["MessageStatus"] for f in undelivered] == ["sent", "undelivered"]
    assert undelivered[-1]["ErrorCode"] == "30005"
    assert all(r["valid"] for r in sandbox.receiver.at("/api/sms_status"))
    assert {k for k in statuses(ok.sid)[0]} == {  # type: ignore[index]
        "MessageSid", "SmsSid", "AccountSid", "From", "To", "MessageStatus", "SmsStatus", "ApiVersion",
    }  # fmt: skip
    fetched = failing.fetch()
    assert (fetched.status, fetched.error_code) == ("failed", 30003)
    # The callback log says what was called back and how our side answered, for the benchmark's p99.
    logged = httpx.get(f"{sandbox.base}/sandbox/callbacks", timeout=5).json()
    assert sorted(c["status"] for c in logged if c["sid"] == ok.sid) == ["delivered", "sent"]
    assert all(c["answered"] == 200 and 0 < c["seconds"] < 5 for c in logged)


def test_messaging_service_picks_a_sticky_pool_number(sandbox: Sandbox) -> None:
    created = sandbox.client.messages.create(messaging_service_sid=SERVICE, to=PHONE, body="hi")
    assert (created.from_, created.status, created.messaging_service_sid) == (None, "accepted", SERVICE)
    assert wait_for(lambda: m if (m := created.fetch()).status == "delivered" else None).from_ == OUR

    assert sandbox.reply("+14155550103", body="hello", to=POOL_2).json()["status"] == 200
    sticky = sandbox.client.messages.create(messaging_service_sid=SERVICE, to="+14155550103", body="hi")
    assert wait_for(lambda: m if (m := sticky.fetch()).status == "delivered" else None).from_ == POOL_2


def test_phone_reply_posts_a_signed_webhook_with_every_field(sandbox: Sandbox) -> None:
    answer = sandbox.reply(PHONE, body="Running late")
    assert answer.status_code == 200
    result = answer.json()
    assert (result["status"], result["twiml"]) == (200, "<Response/>")
    [webhook] = sandbox.receiver.at("/api/receive_sms")
    form = webhook["form"]
    assert webhook["valid"]
    assert set(form) == INBOUND_FIELDS
    assert (form["MessageSid"], form["From"], form["To"], form["Body"]) == (result["sid"], PHONE, OUR, "Running late")
    assert (form["SmsSid"], form["SmsMessageSid"], form["AccountSid"]) == (result["sid"], result["sid"], ACCOUNT)
    assert (form["SmsStatus"], form["ApiVersion"], form["NumMedia"], form["NumSegments"]) == (
        "received",
        "2010-04-01",
        "0",
        "1",
    )
    assert (form["FromCountry"], form["ToCountry"], form["MessagingServiceSid"]) == ("US", "US", SERVICE)

    assert sandbox.reply(PHONE, body="teapot").json()["status"] == 418
    assert sandbox.http.get("/sandbox/phones").json() == [PHONE]
    inbound = sandbox.client.messages(result["sid"]).fetch()
    assert (inbound.direction, inbound.status, inbound.from_, inbound.to) == ("inbound", "received", PHONE, OUR)


def test_public_base_url_is_what_gets_signed(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(public_base_url="https://relay.example.org")
    assert sandbox.reply(PHONE, body="hi").json()["status"] == 200
    callback = "https://relay.example.org/api/sms_status"
    sandbox.client.messages.create(to=PHONE, from_=OUR, body="a", status_callback=callback)
    wait_for(lambda: True if len(sandbox.receiver.at("/api/sms_status")) == 2 else None)
    assert [r["valid"] for r in sandbox.receiver.requests] == [True] * 3


def test_unreachable_webhook_is_a_502(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(webhook_url=f"http://127.0.0.1:{free_port()}/api/receive_sms")
    answer = sandbox.reply(PHONE, body="anyone there?")
    assert answer.status_code == 502 and answer.json()["sid"].startswith("SM")


def test_image_reply_media_redirects_to_a_credential_free_cdn(sandbox: Sandbox) -> None:
    result = sandbox.reply(PHONE, body="", image=True).json()
    form = sandbox.receiver.at("/api/receive_sms")[0]["form"]
    assert (form["NumMedia"], form["MediaContentType0"]) == ("1", "image/png")
    prefix = f"{sandbox.base}/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT}/Messages/{result['sid']}/Media/ME"
    assert form["MediaUrl0"].startswith(prefix)
    assert httpx.get(form["MediaUrl0"], timeout=5).status_code == 401
    redirect = httpx.get(form["MediaUrl0"], auth=(ACCOUNT, TOKEN), timeout=5)
    assert redirect.status_code == 307
    cdn = redirect.headers["location"]
    assert cdn.startswith(sandbox.base.replace("127.0.0.1", "localhost") + "/sandbox/cdn/")
    assert httpx.get(cdn, auth=(ACCOUNT, TOKEN), timeout=5).status_code == 400  # credentials are not wanted there
    media = httpx.get(cdn, timeout=5)
    assert media.status_code == 200 and media.headers["content-type"] == "image/png"
    assert media.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_list_pages_through_every_inbound_message_once(sandbox: Sandbox) -> None:
    since = datetime.now(UTC).replace(microsecond=0)
    sids = [sandbox.reply(f"+1415555{1000 + i % 7}", body=f"msg {i}", to=OUR).json()["sid"] for i in range(120)]
    sandbox.reply(PHONE, body="to the other number", to=POOL_2)
    sandbox.http.delete("/sandbox/calls")

    listed = sandbox.client.messages.list(to=OUR, date_sent_after=since, page_size=50)
    assert [m.sid for m in listed] == list(reversed(sids))
    assert {m.direction for m in listed} == {"inbound"}
    assert [c["status"] for c in sandbox.http.get("/sandbox/calls").json()] == [200, 200, 200]
    assert sandbox.client.messages.list(to=OUR, date_sent_before=since - timedelta(days=1)) == []

    first = sandbox.client.messages.page(to=OUR, page_size=50)
    second = first.next_page()
    assert second is not None and [m.sid for m in second] == list(reversed(sids))[50:100]
    back = second.previous_page()
    assert back is not None and [m.sid for m in back] == list(reversed(sids))[:50]


def test_twiml_message_reaches_the_phone(sandbox: Sandbox) -> None:
    result = sandbox.reply(PHONE, body="echo Thanks, see you soon").json()
    assert result["twiml"] == "<Response><Message>Thanks, see you soon</Message></Response>"
    texts = wait_for(lambda: m if (m := sandbox.phone_messages(PHONE)) else None)
    assert [(t["from"], t["to"], t["body"]) for t in texts] == [(OUR, PHONE, "Thanks, see you soon")]


def test_stop_blocks_sending_until_start(sandbox: Sandbox) -> None:
    sandbox.reply(PHONE, body=" stop ")
    with pytest.raises(TwilioRestException) as blocked:
        sandbox.client.messages.create(to=PHONE, from_=OUR, body="hello?")
    assert blocked.value.code == 21610
    sandbox.reply(PHONE, body="START")
    assert sandbox.client.messages.create(to=PHONE, from_=OUR, body="welcome back").status == "queued"


def test_phone_page_and_its_assets_are_served(sandbox: Sandbox) -> None:
    page = sandbox.http.get("/sandbox/phone")
    assert page.status_code == 200 and 'src="/sandbox/static/phone.js"' in page.text
    script = sandbox.http.get("/sandbox/static/phone.js")
    assert script.status_code == 200 and "innerHTML" not in script.text
    assert sandbox.http.get("/sandbox/static/phone.css").status_code == 200
