"""The whole product through `python -m devhost`: sessions, sending, replies, routing, faults and bad input."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber

pytestmark = pytest.mark.parametrize("broker", ["amqtt", "mosquitto", "rabbitmq"], indirect=True, scope="module")

PATIENT = "+14155550101"
STRANGER = "+14155550177"


def send(host: DevhostProcess, session: dict[str, Any], to: str, body: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{host.base_url}/api/send_sms",
        json={"to": to, "body": body, **extra},
        headers={"Authorization": f"Bearer {session['token']}"},
        timeout=15,
    )


def reply(host: DevhostProcess, phone: str, body: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{host.sandbox_url}/phones/{phone}/reply", json={"body": body, **extra}, timeout=20)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def received_by(host: DevhostProcess, phone: str, body: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """What the phone got, once `body` is among it (the sandbox delivers after its status callbacks)."""
    deadline = time.monotonic() + timeout
    while True:
        texts: list[dict[str, Any]] = httpx.get(f"{host.sandbox_url}/phones/{phone}/messages", timeout=5).json()
        if any(t["body"] == body for t in texts) or time.monotonic() > deadline:
            return texts
        time.sleep(0.1)


def api_calls(host: DevhostProcess) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{host.sandbox_url}/calls", timeout=5).json()
    return calls


def test_reply_reaches_only_the_desk_that_texted(devhost: DevhostProcess) -> None:
    a, b = devhost.session("reception"), devhost.session("billing", "Ken")
    assert (a["webAppId"], a["desk"], a["staff"]["name"]) == (
        "reception",
        {"id": "reception", "name": "Reception", "alias": "R"},
        "Maria",
    )
    assert a["mqtt"]["topics"] == ["sms/reception/#", "sms/unrouted/#"]
    port = devhost.broker.mqtt_port
    with Subscriber(port, a) as sub_a, Subscriber(port, b) as sub_b:
        sent = send(devhost, a, PATIENT, "Your appointment is tomorrow 👋")
        assert sent.status_code == 201, sent.text
        assert set(sent.json()) == {"sid", "status", "to", "from"}
        echo_topic, echo = sub_a.wait_for(lambda t, p: t.endswith("/outbound"))
        assert echo_topic == f"sms/{a['webAppId']}/outbound"
        assert echo["MessageSid"] == sent.json()["sid"]

        texted = received_by(devhost, PATIENT, "Your appointment is tomorrow 👋")
        assert texted[-1]["body"] == "Your appointment is tomorrow 👋"

        body = "Ja, 明天见 🙂 — ça marche"
        answer = reply(devhost, PATIENT, body)
        assert answer["status"] == 200
        topic, payload = sub_a.wait_for(lambda t, p: t.endswith("/inbound") and p.get("Body") == body)
        assert topic == f"sms/{a['webAppId']}/inbound"
        for field in ("MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "From", "To", "Body", "NumMedia"):
            assert field in payload, field
        for field in ("NumSegments", "SmsStatus", "ApiVersion", "FromCountry", "ToCountry", "FromCity", "ToZip"):
            assert field in payload, field
        assert payload["From"] == PATIENT
        assert payload["webAppId"] == a["webAppId"]
        assert payload["MessageSid"] == answer["sid"]
        assert not [m for m in sub_b.drain(0.5) if m[1].get("Body") == body]


def test_reply_from_a_stranger_is_unrouted(devhost: DevhostProcess) -> None:
    a = devhost.session()
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        reply(devhost, STRANGER, "who is this?")
        topic, payload = sub.wait_for(lambda t, p: p.get("From") == STRANGER)
    assert topic == "sms/unrouted/inbound"
    assert payload["webAppId"] == "unrouted"


def test_webhook_without_a_valid_signature_is_refused_and_not_published(devhost: DevhostProcess) -> None:
    a = devhost.session()
    form = {"MessageSid": "SM" + "f" * 32, "From": PATIENT, "To": "+14155550100", "Body": "forged"}
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        missing = httpx.post(f"{devhost.base_url}/api/receive_sms", data=form, timeout=5)
        wrong = httpx.post(
            f"{devhost.base_url}/api/receive_sms", data=form, headers={"X-Twilio-Signature": "bm90IGl0"}, timeout=5
        )
        assert not [m for m in sub.drain(0.5) if m[1].get("Body") == "forged"]
    for r in (missing, wrong):
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b'{"to": "+14155550101", "body": "hi"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"body": "hi"}', "application/json", 400, "invalid_number"),
        (b'{"to": "+1415555", "body": "hi"}', "application/json", 400, "invalid_number"),
        (b'{"to": "+14155550101", "body": ""}', "application/json", 400, "invalid_body"),
        (('{"to": "+14155550101", "body": "' + "x" * 1601 + '"}').encode(), "application/json", 400, "invalid_body"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b'{"to": "+14155550101", "body": "\xff\xfe"}', "application/json", 400, "invalid_json"),
    ],
    ids=[
        "malformed-json",
        "wrong-content-type",
        "missing-to",
        "invalid-number",
        "empty-body",
        "1601-chars",
        "not-an-object",
        "non-utf8",
    ],
)
def test_bad_send_requests_get_their_error_and_never_reach_twilio(
    devhost: DevhostProcess, payload: bytes, content_type: str, status: int, code: str
) -> None:
    session = devhost.session()
    before = len(api_calls(devhost))
    r = httpx.post(
        f"{devhost.base_url}/api/send_sms",
        content=payload,
        headers={"Authorization": f"Bearer {session['token']}", "Content-Type": content_type},
        timeout=10,
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert len(api_calls(devhost)) == before


def test_1600_code_points_of_emoji_are_accepted(devhost: DevhostProcess) -> None:
    r = send(devhost, devhost.session(), PATIENT, "🙂" * 1600)
    assert r.status_code == 201, r.text


def test_wrong_access_code_and_missing_token_get_401(devhost: DevhostProcess) -> None:
    r = httpx.post(f"{devhost.base_url}/api/session", json={"accessCode": "nope"}, timeout=5)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_access_code"
    r = httpx.post(f"{devhost.base_url}/api/send_sms", json={"to": PATIENT, "body": "x"}, timeout=5)
    assert r.status_code == 401


def test_two_people_at_one_desk_each_get_a_session_and_sign_in_is_checked(devhost: DevhostProcess) -> None:
    maria, ken = devhost.session("reception", "Maria"), devhost.session("reception", "Ken")
    assert maria["webAppId"] == ken["webAppId"] == "reception"
    assert maria["mqtt"]["clientId"].split("-")[1] != ken["mqtt"]["clientId"].split("-")[1]
    default = devhost.session(staff="Ann")
    assert default["desk"]["id"] == "reception"
    desks = httpx.get(f"{devhost.base_url}/api/desks", headers={"Authorization": f"Bearer {ken['token']}"}, timeout=5)
    assert [d["id"] for d in desks.json()["desks"]] == ["reception", "billing"]
    assert httpx.get(f"{devhost.base_url}/api/desks", timeout=5).status_code == 401

    def refused(body: dict[str, Any]) -> tuple[int, str]:
        r = httpx.post(f"{devhost.base_url}/api/session", json={"accessCode": devhost.access_code, **body}, timeout=5)
        return r.status_code, r.json()["error"]["code"]

    assert refused({"staffName": "Maria", "desk": "nowhere"}) == (404, "desk_not_found")
    assert refused({"desk": "billing"}) == (400, "invalid_staff_name")
    assert refused({"staffName": "x" * 41}) == (400, "invalid_staff_name")
    assert refused({"staffName": "Eve\u202egnp.exe"}) == (400, "invalid_staff_name")
    assert refused({"staffName": "Maria", "desk": 7}) == (400, "invalid_desk")


def test_transfer_moves_history_note_and_the_next_reply_to_the_other_desk(devhost: DevhostProcess) -> None:
    phone = "+14155550131"
    maria, ken = devhost.session("reception", "Maria"), devhost.session("billing", "Ken")
    port = devhost.broker.mqtt_port
    assert send(devhost, maria, phone, "Your bill is ready").status_code == 201
    reply(devhost, phone, "Can I pay in two parts?")
    with Subscriber(port, maria) as at_reception, Subscriber(port, ken) as at_billing:
        moved = httpx.post(
            f"{devhost.base_url}/api/conversations/%2B14155550131/transfer",
            json={"desk": "billing", "note": "Wants a payment plan"},
            headers={"Authorization": f"Bearer {maria['token']}"},
            timeout=10,
        )
        assert moved.status_code == 200, moved.text
        for sub in (at_reception, at_billing):
            _, line = sub.wait_for(lambda t, p: t.endswith("/owner"))
            assert (line["Body"], line["note"]) == ("Now with Billing (Maria)", "Wants a payment plan")
        answer = reply(devhost, phone, "Thanks!")
        _, got = at_billing.wait_for(lambda t, p: p.get("MessageSid") == answer["sid"])
        assert got["webAppId"] == "billing"
        assert not [p for _, p in at_reception.drain(0.5) if p.get("MessageSid") == answer["sid"]]
    page = httpx.get(
        f"{devhost.base_url}/api/conversations/%2B14155550131/messages",
        headers={"Authorization": f"Bearer {ken['token']}"},
        timeout=5,
    ).json()
    assert [m["body"] for m in page["messages"]] == [
        "Thanks!",
        "Now with Billing (Maria)",
        "Can I pay in two parts?",
        "Your bill is ready",
    ]
    assert page["messages"][1]["line"]["note"] == "Wants a payment plan"


def test_bad_transfers_get_a_clear_error_and_change_nothing(devhost: DevhostProcess) -> None:
    phone, path = "+14155550132", "conversations/%2B14155550132"
    maria, ken = devhost.session("reception", "Maria"), devhost.session("billing", "Ken")
    assert send(devhost, maria, phone, "hello").status_code == 201
    assert devhost.admin("POST", "desks", json={"name": "Old lab", "alias": "OL"}).status_code == 201
    assert devhost.admin("POST", "desks/old_lab/archive").status_code == 200

    def transfer(session: dict[str, Any], body: dict[str, Any]) -> tuple[int, str]:
        r = httpx.post(
            f"{devhost.base_url}/api/{path}/transfer",
            json=body,
            headers={"Authorization": f"Bearer {session['token']}"},
            timeout=5,
        )
        return r.status_code, r.json()["error"]["code"]

    assert transfer(maria, {"desk": "old_lab"}) == (409, "desk_archived")
    assert transfer(maria, {"desk": "nowhere"}) == (404, "desk_not_found")
    assert transfer(maria, {}) == (400, "invalid_desk")
    assert transfer(maria, {"desk": "billing", "note": "x" * 501}) == (400, "invalid_note")
    assert transfer(ken, {"desk": "reception"}) == (409, "not_owner")
    page = httpx.get(
        f"{devhost.base_url}/api/{path}/messages", headers={"Authorization": f"Bearer {maria['token']}"}, timeout=5
    ).json()
    assert (page["owner"]["id"], [m["body"] for m in page["messages"]]) == ("reception", ["hello"])


def test_broker_down_then_back_delivers_every_reply_once(devhost: DevhostProcess) -> None:
    if devhost.broker.kind == "rabbitmq":
        pytest.skip("a whole cluster down takes ~2 min to restart; tests/test_failover.py kills one node at a time")
    a = devhost.session("billing")
    assert send(devhost, a, "+14155550111", "checking in").status_code == 201
    devhost.broker.stop()
    try:
        sids = [reply(devhost, "+14155550111", f"while down {i}") for i in range(3)]
        assert [s["status"] for s in sids] == [200, 200, 200]
        health = httpx.get(f"{devhost.base_url}/api/health", timeout=5)
        assert health.status_code == 503
        assert health.json()["broker"]["connected"] is False
    finally:
        devhost.broker.start()
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        got = [p for _, p in sub.drain(3.0) if str(p.get("Body", "")).startswith("while down")]
        deadline_tries = 10
        while len(got) < 3 and deadline_tries:
            got += [p for _, p in sub.drain(1.0) if str(p.get("Body", "")).startswith("while down")]
            deadline_tries -= 1
    assert sorted(p["Body"] for p in got) == [f"while down {i}" for i in range(3)]
    feed = httpx.get(
        f"{devhost.base_url}/api/messages", headers={"Authorization": f"Bearer {a['token']}"}, timeout=5
    ).json()
    in_feed = [
        e["payload"]["MessageSid"]
        for e in feed["events"]
        if e["kind"] == "inbound" and e["payload"]["From"] == "+14155550111"
    ]
    assert sorted(in_feed) == sorted(s["sid"] for s in sids)
