"""The sandbox held to Twilio's published behaviour, and the relay to what that behaviour asks of it.

Each test cites the Twilio page or error code it comes from, so a reader can check the sandbox against Twilio:
the sandbox is only worth its tests where it behaves as Twilio does. The relay half runs the whole product
(`python -m devhost`) with the sandbox's optional Twilio behaviours on: callbacks delayed and reordered, Advanced
Opt-Out, and webhooks signed with a shared key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from relay.errors import UpstreamRefused
from relay.settings import Settings
from relay.twilio_gateway import TwilioGateway
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.runtime import ACCOUNT as RUNTIME_ACCOUNT
from tests.support.runtime import OURS as RUNTIME_OURS
from tests.support.runtime import TOKEN as RUNTIME_TOKEN
from tests.support.sandbox import ACCOUNT, OUR, PHONE, SERVICE, TOKEN, Sandbox, wait_for

SHARED_KEY = secrets.token_hex(16)


def refused(call: Callable[[], Any]) -> tuple[int | None, int]:
    with pytest.raises(TwilioRestException) as error:
        call()
    return error.value.code, error.value.status


# --- the REST API ---------------------------------------------------------------------------------------------


def test_media_of_a_message_is_listed_and_fetched_in_twilios_shape(sandbox: Sandbox) -> None:
    # Media resource: https://www.twilio.com/docs/messaging/api/media-resource (list and fetch; fields
    # account_sid, content_type, date_created, date_updated, parent_sid, sid, uri; the list key is media_list).
    sid = sandbox.reply(PHONE, body="", image=True).json()["sid"]
    [item] = sandbox.client.messages(sid).media.list()
    assert item.sid.startswith("ME") and len(item.sid) == 34
    assert (item.parent_sid, item.account_sid, item.content_type) == (sid, ACCOUNT, "image/png")
    assert item.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media/{item.sid}.json"
    assert item.date_created is not None
    fetched = sandbox.client.messages(sid).media(item.sid).fetch()
    assert (fetched.sid, fetched.parent_sid, fetched.content_type) == (item.sid, sid, "image/png")
    raw = sandbox.http.get(
        f"/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media.json", auth=(ACCOUNT, TOKEN)
    )
    assert set(raw.json()) == {
        "first_page_uri", "end", "media_list", "next_page_uri", "page", "page_size", "previous_page_uri", "start",
        "uri",
    }  # fmt: skip
    text = sandbox.client.messages.create(to=PHONE, from_=OUR, body="no media")
    assert sandbox.client.messages(text.sid).media.list() == []


def test_media_content_redirects_to_a_cdn_that_wants_no_credentials(sandbox: Sandbox) -> None:
    # Media resource, "Fetch a Media resource's content": the media URL (the resource URI without .json)
    # answers with a redirect to the file on Twilio's CDN, a signed, time-limited URL on another host.
    sid = sandbox.reply(PHONE, body="", image=True).json()["sid"]
    [item] = sandbox.client.messages(sid).media.list()
    url = f"{sandbox.base}/sandbox/twilio{item.uri.removesuffix('.json')}"
    answer = sandbox.http.get(url, auth=(ACCOUNT, TOKEN))
    assert answer.status_code == 307
    location = httpx.URL(answer.headers["location"])
    assert (httpx.URL(url).host, location.host) == ("127.0.0.1", "localhost")  # another origin
    assert httpx.get(location, auth=(ACCOUNT, TOKEN), timeout=5).status_code == 400  # like S3: no Authorization
    assert httpx.get(location, timeout=5).content.startswith(b"\x89PNG")


def test_an_mms_has_an_mm_sid_and_an_sms_an_sm_sid(sandbox: Sandbox) -> None:
    # Message resource, `sid`: "SM" for SMS, "MM" for MMS (https://www.twilio.com/docs/messaging/api/message-resource).
    mms = sandbox.client.messages.create(to=PHONE, from_=OUR, body="see", media_url=["https://example.com/a.png"])
    sms = sandbox.client.messages.create(to=PHONE, from_=OUR, body="plain")
    assert (mms.sid[:2], mms.num_media, sms.sid[:2]) == ("MM", "1", "SM")
    assert sandbox.reply(PHONE, body="", image=True).json()["sid"].startswith("MM")
    assert sandbox.reply(PHONE, body="words only").json()["sid"].startswith("SM")


def test_refusals_twilio_documents_for_a_bad_send(sandbox: Sandbox) -> None:
    create = sandbox.client.messages.create
    # 21609 Invalid StatusCallback: https://www.twilio.com/docs/api/errors/21609
    assert refused(lambda: create(to=PHONE, from_=OUR, body="x", status_callback="not a url")) == (21609, 400)
    bad_host = "https://relay_app.example.org/api/sms_status"
    assert refused(lambda: create(to=PHONE, from_=OUR, body="x", status_callback=bad_host)) == (21609, 400)
    # 21266 'To' and 'From' number cannot be the same: https://www.twilio.com/docs/api/errors/21266
    assert refused(lambda: create(to=OUR, from_=OUR, body="x")) == (21266, 400)
    # 21623 Number of media files exceeds allowed limit (10): https://www.twilio.com/docs/api/errors/21623
    eleven = [f"https://example.com/{n}.png" for n in range(11)]
    assert refused(lambda: create(to=PHONE, from_=OUR, body="x", media_url=eleven)) == (21623, 400)
    # 21620 Invalid media URL(s): https://www.twilio.com/docs/api/errors/21620
    assert refused(lambda: create(to=PHONE, from_=OUR, body="x", media_url=["not a url"])) == (21620, 400)
    assert sandbox.client.messages.list(to=PHONE) == []  # nothing was accepted
    ok = create(to=PHONE, from_=OUR, body="x", status_callback=f"{sandbox.base}/api/sms_status", media_url=eleven[:10])
    assert ok.num_media == "10"


def test_page_size_outside_one_to_a_thousand_is_refused_not_clamped(sandbox: Sandbox) -> None:
    # Paging: PageSize is 1 to 1000 (https://www.twilio.com/docs/usage/twilios-response#paging; the 2010 API's
    # OpenAPI description gives PageSize minimum 1, maximum 1000).
    messages = f"/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    for size in ("0", "1001", "-5"):
        answer = sandbox.http.get(messages, params={"PageSize": size}, auth=(ACCOUNT, TOKEN))
        assert answer.status_code == 400 and answer.json()["code"] == 20001, size
    assert sandbox.http.get(messages, params={"PageSize": "1000"}, auth=(ACCOUNT, TOKEN)).json()["page_size"] == 1000


# --- status callbacks -----------------------------------------------------------------------------------------


def statuses(sandbox: Sandbox, sid: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.receiver.at("/api/sms_status") if r["form"]["MessageSid"] == sid]


def callbacks(sandbox: Sandbox, sid: str, count: int) -> list[dict[str, str]]:
    """The first `count` callback forms for the message, in the order they arrived."""

    def arrived() -> list[dict[str, Any]] | None:
        found = statuses(sandbox, sid)
        return found if len(found) >= count else None

    return [r["form"] for r in wait_for(arrived)]


def test_no_callback_for_the_status_a_message_is_created_with(sandbox: Sandbox) -> None:
    # Outbound message status in status callbacks: a callback is sent when the status changes
    # (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status); the 201 already said queued
    # (or accepted, for a Messaging Service, whose queued then is a change).
    callback = f"{sandbox.base}/api/sms_status"
    direct = sandbox.client.messages.create(to=PHONE, from_=OUR, body="a", status_callback=callback)
    pooled = sandbox.client.messages.create(messaging_service_sid=SERVICE, to=PHONE, body="b", status_callback=callback)
    assert [f["MessageStatus"] for f in callbacks(sandbox, direct.sid, 2)] == ["sent", "delivered"]
    assert [f["MessageStatus"] for f in callbacks(sandbox, pooled.sid, 3)] == ["queued", "sent", "delivered"]


def test_callbacks_carry_the_documented_fields_only(sandbox: Sandbox) -> None:
    # Status callback parameters (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status):
    # MessageSid, MessageStatus, AccountSid, From, To, ApiVersion, SmsSid, SmsStatus, ErrorCode on failures (no
    # ErrorMessage), and RawDlrDoneDate (YYMMDDhhmm) on an SMS's delivered or undelivered.
    callback = f"{sandbox.base}/api/sms_status"
    ok = sandbox.client.messages.create(to=PHONE, from_=OUR, body="a", status_callback=callback)
    lost = sandbox.client.messages.create(to="+14155550198", from_=OUR, body="b", status_callback=callback)
    failed = sandbox.client.messages.create(to="+14155550199", from_=OUR, body="c", status_callback=callback)
    base = {"MessageSid", "SmsSid", "AccountSid", "From", "To", "MessageStatus", "SmsStatus", "ApiVersion"}
    done = {sid: callbacks(sandbox, sid, 2) for sid in (ok.sid, lost.sid, failed.sid)}
    assert set(done[ok.sid][0]) == base
    assert set(done[ok.sid][1]) == base | {"RawDlrDoneDate"}
    assert len(done[ok.sid][1]["RawDlrDoneDate"]) == 10 and done[ok.sid][1]["RawDlrDoneDate"].isdigit()
    assert set(done[lost.sid][1]) == base | {"ErrorCode", "RawDlrDoneDate"}
    assert set(done[failed.sid][1]) == base | {"ErrorCode"}
    assert all(r["valid"] for r in sandbox.receiver.at("/api/sms_status"))


def test_callbacks_may_arrive_late_and_out_of_order_when_jitter_is_on(make_sandbox: Callable[..., Sandbox]) -> None:
    # Twilio does not guarantee the order of status callbacks ("Status callback requests are HTTP requests and
    # are therefore subject to differences in latency... the order is not guaranteed"):
    # https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
    sandbox = make_sandbox(callback_jitter_ms=400, status_delay_seconds=0.001)
    callback = f"{sandbox.base}/api/sms_status"
    sent = [
        sandbox.client.messages.create(to=PHONE, from_=OUR, body=str(n), status_callback=callback) for n in range(20)
    ]
    orders = [[f["MessageStatus"] for f in callbacks(sandbox, m.sid, 2)] for m in sent]
    assert all(sorted(order) == ["delivered", "sent"] for order in orders)
    assert ["delivered", "sent"] in orders  # with 20 messages, some callbacks overtake (p of none ~ 1e-6)


# --- inbound webhooks -----------------------------------------------------------------------------------------


def test_inbound_webhooks_carry_referral_num_media(sandbox: Sandbox) -> None:
    # Incoming message webhook parameters include ReferralNumMedia
    # (https://www.twilio.com/docs/messaging/guides/webhook-request).
    sandbox.reply(PHONE, body="hi")
    [webhook] = sandbox.receiver.at("/api/receive_sms")
    assert webhook["form"]["ReferralNumMedia"] == "0" and "OptOutType" not in webhook["form"]


def test_advanced_opt_out_answers_keywords_itself_and_says_so_in_opt_out_type(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    # Advanced Opt-Out: Twilio replies to STOP/START/HELP itself and adds OptOutType=STOP|START|HELP to the
    # webhook (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out).
    sandbox = make_sandbox(advanced_opt_out=True)
    for body in ("help", "STOP", "start", "hello"):
        sandbox.reply(PHONE, body=body)
    types = [r["form"].get("OptOutType") for r in sandbox.receiver.at("/api/receive_sms")]
    assert types == ["HELP", "STOP", "START", None]
    texts = wait_for(lambda: m if len(m := sandbox.phone_messages(PHONE)) == 3 else None)
    assert [t["body"].split(" ")[0] for t in texts] == ["Reply", "You", "You"]  # HELP, then STOP's and START's


def test_webhooks_are_signed_with_the_shared_key_when_one_is_configured(make_sandbox: Callable[..., Sandbox]) -> None:
    # Webhook security, "HMAC-SHA256 signatures with a shared key": Twilio names the algorithm in
    # X-Twilio-Webhooks-Signature-Settings (https://www.twilio.com/docs/usage/webhooks/webhooks-security).
    sandbox = make_sandbox(webhook_shared_key=SHARED_KEY)
    sandbox.reply(PHONE, body="hi")
    sandbox.client.messages.create(to=PHONE, from_=OUR, body="a", status_callback=f"{sandbox.base}/api/sms_status")
    wait_for(lambda: True if len(sandbox.receiver.requests) == 3 else None)
    assert {(r["algorithm"], r["valid"]) for r in sandbox.receiver.requests} == {("HMAC_SHA256", True)}


# --- the relay, as the sandbox now shows it -------------------------------------------------------------------


def test_a_send_twilio_refuses_for_its_status_callback_tells_the_operator_what_to_fix(sandbox_url: str) -> None:
    # 21609 (https://www.twilio.com/docs/api/errors/21609): every send fails until the public address is fixed.
    settings = Settings.from_mapping(
        {
            "TWILIO_ACCOUNT_SID": RUNTIME_ACCOUNT,
            "TWILIO_AUTH_TOKEN": RUNTIME_TOKEN,
            "TWILIO_FROM_NUMBER": RUNTIME_OURS,
            "TWILIO_API_BASE_URL": sandbox_url + "/twilio",
            "RELAY_SIGNING_KEY": "k" * 40,
            "RELAY_ACCESS_CODE": "x",
        }
    )
    with pytest.raises(UpstreamRefused) as error:
        TwilioGateway(settings).send(PHONE, "hi", [], "http://relay_app.internal:7071/api/sms_status")
    assert error.value.twilio_code == 21609
    assert "PUBLIC_BASE_URL" in error.value.message


@pytest.fixture(scope="module")
def product(
    broker: BrokerProcess, signing_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    """The whole product with the sandbox's optional Twilio behaviours on."""
    env = {
        "SANDBOX_CALLBACK_JITTER_MS": "300",
        "SANDBOX_ADVANCED_OPT_OUT": "true",
        "TWILIO_WEBHOOK_SHARED_KEY": SHARED_KEY,
        "SEND_LIMIT_PER_MINUTE": "1000",
    }
    data_dir = tmp_path_factory.mktemp("fidelity")
    with DevhostProcess(
        broker, data_dir, access_code=secrets.token_urlsafe(12), signing_key=signing_key, extra_env=env
    ) as host:
        yield host


def test_the_relay_settles_on_the_final_status_whatever_order_callbacks_arrive_in(product: DevhostProcess) -> None:
    token = product.session()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    phones = [f"+1415555{2100 + n:04d}" for n in range(8)] + ["+14155550198"]
    with httpx.Client(base_url=product.base_url, headers=auth, timeout=15) as client:
        for phone in phones:
            assert client.post("/api/send_sms", json={"to": phone, "body": "jitter"}).status_code == 201

        def settled() -> dict[str, str] | None:
            found = {}
            for phone in phones:
                [message] = client.get(f"/api/conversations/{phone}/messages").json()["messages"]
                found[phone] = message["status"]
            return found if set(found.values()) <= {"delivered", "undelivered"} else None

        final = wait_for(settled, timeout=15)
    assert final == {**{p: "delivered" for p in phones[:-1]}, phones[-1]: "undelivered"}


def test_the_relay_accepts_shared_key_webhooks_and_leaves_advanced_opt_out_keywords_to_twilio(
    product: DevhostProcess,
) -> None:
    phone = "+14155552200"
    token = product.session()["token"]
    for body in ("HELP", "STOP"):
        answer = httpx.post(f"{product.sandbox_url}/phones/{phone}/reply", json={"body": body}, timeout=15).json()
        assert answer["status"] == 200  # signed with the shared key (HMAC-SHA256), and accepted
        assert "<Message>" not in answer["twiml"]  # Twilio answered the keyword; the relay adds nothing

    def received_both() -> list[dict[str, Any]] | None:
        texts: list[dict[str, Any]] = httpx.get(f"{product.sandbox_url}/phones/{phone}/messages").json()
        return texts if len(texts) == 2 else None

    received = wait_for(received_both)
    assert [m["body"].split(" ")[0] for m in received] == ["Reply", "You"]
    refused_send = httpx.post(
        f"{product.base_url}/api/send_sms",
        headers={"Authorization": f"Bearer {token}"},
        json={"to": phone, "body": "still there?"},
        timeout=15,
    )
    assert (refused_send.status_code, refused_send.json()["error"]["code"]) == (409, "opted_out")


def test_sends_twilio_would_refuse_are_refused_before_twilio_is_called(product: DevhostProcess) -> None:
    # What schemathesis found once the sandbox refused them as Twilio does: both reached Twilio and came back 502.
    auth = {"Authorization": f"Bearer {product.session()['token']}"}
    calls = len(httpx.get(f"{product.sandbox_url}/calls").json())
    cases = [
        ({"to": "+14155552300", "body": "x", "mediaUrl": ["https://"]}, "invalid_media"),  # 21620
        ({"to": "+14155552300", "body": "x", "mediaUrl": ["https://cdn_host.example.org/a.png"]}, "invalid_media"),
        ({"to": "+14155550100", "body": "to ourselves"}, "invalid_number"),  # 21266
    ]
    for body, code in cases:
        answer = httpx.post(f"{product.base_url}/api/send_sms", headers=auth, json=body, timeout=15)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, code), body
    assert len(httpx.get(f"{product.sandbox_url}/calls").json()) == calls
