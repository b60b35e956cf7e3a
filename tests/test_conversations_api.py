"""Conversations as a desk sees them through the local host: routing, history, statuses, MMS, idempotency."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber


def api(host: DevhostProcess, session: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {session['token']}", **kw.pop("headers", {})}
    return httpx.request(method, f"{host.base_url}/api/{path}", headers=headers, timeout=15, **kw)


def reply(host: DevhostProcess, phone: str, body: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{host.sandbox_url}/phones/{phone}/reply", json={"body": body, **extra}, timeout=20)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def status_callback(host: DevhostProcess, sid: str, status: str, **extra: str) -> httpx.Response:
    url = f"{host.base_url}/api/sms_status"
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": host.account_sid, **extra}
    signature = RequestValidator(host.auth_token).compute_signature(url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


def history(host: DevhostProcess, session: dict[str, Any], phone: str) -> list[dict[str, Any]]:
    r = api(host, session, "GET", f"conversations/{phone.replace('+', '%2B')}/messages")
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_the_owner_gets_the_reply_an_alias_moves_it_and_a_new_browser_sees_the_history(
    devhost: DevhostProcess,
) -> None:
    a, b, phone = devhost.session("reception"), devhost.session("billing", "Ken"), "+14155550121"
    sent_a = api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "From Reception"}).json()
    assert reply(devhost, phone, "Answering the desk that wrote")["status"] == 200
    assert reply(devhost, phone, "#B this one is for Billing")["status"] == 200

    b_page = api(devhost, b, "GET", f"conversations/{phone.replace('+', '%2B')}/messages").json()
    assert [m["body"] for m in b_page["messages"]] == [
        "#B this one is for Billing",
        "Now with Billing",
        "Answering the desk that wrote",
        "From Reception",
    ]
    assert b_page["messages"][0]["displayBody"] == "this one is for Billing"
    assert (b_page["owner"]["id"], b_page["yours"]) == ("billing", True)

    elsewhere = devhost.session("reception", "Maria")  # another computer, the same desk
    delivered = until(lambda: history(devhost, elsewhere, phone)[-1]["status"] == "delivered")
    assert delivered, history(devhost, elsewhere, phone)
    mine = history(devhost, elsewhere, phone)
    assert [m["body"] for m in mine] == ["Now with Billing", "Answering the desk that wrote", "From Reception"]
    assert mine[-1]["sid"] == sent_a["sid"] and mine[-1]["sentBy"]["name"] == "Maria"
    conversations = api(devhost, elsewhere, "GET", "conversations").json()["conversations"]
    assert [c["phone"] for c in conversations] == [phone]
    assert conversations[0]["unread"] == 1


def test_status_reaches_the_sender_and_never_moves_backwards(devhost: DevhostProcess) -> None:
    a, phone = devhost.session(), "+14155550122"
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        sid = api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "status please"}).json()["sid"]
        _, delivered = sub.wait_for(lambda t, p: t.endswith("/status") and p["MessageStatus"] == "delivered")
    assert delivered["MessageSid"] == sid
    assert status_callback(devhost, sid, "sent").status_code == 204
    assert status_callback(devhost, sid, "sent").status_code == 204
    assert history(devhost, a, phone)[0]["status"] == "delivered"
    feed = api(devhost, a, "GET", "messages").json()["events"]
    sent_events = [e for e in feed if e["kind"] == "status" and e["payload"]["MessageSid"] == sid]
    # No callback for `queued`, the status the send answered with (Twilio sends none for it).
    assert [e["payload"]["MessageStatus"] for e in sent_events] == ["sent", "delivered"]


def test_failed_delivery_carries_twilios_error(devhost: DevhostProcess) -> None:
    a, phone = devhost.session(), "+14155550199"
    sid = api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "will fail"}).json()["sid"]
    failed = until(lambda: [m for m in history(devhost, a, phone) if m["status"] == "failed"])
    assert failed, history(devhost, a, phone)
    assert failed[0]["sid"] == sid
    assert failed[0]["errorCode"] == "30003"


def test_mms_reaches_the_desk_and_media_follows_the_conversations_owner(devhost: DevhostProcess) -> None:
    a, b, phone = devhost.session("reception"), devhost.session("billing", "Ken"), "+14155550123"
    api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "send a photo of the rash"})
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        sid = reply(devhost, phone, "here", image=True)["sid"]
        _, payload = sub.wait_for(lambda t, p: p.get("MessageSid") == sid)
    assert payload["NumMedia"] == "1"
    assert payload["media"] == [{"url": f"/api/media/{sid}/0", "contentType": "image/png"}]
    mine = api(devhost, a, "GET", f"media/{sid}/0")
    assert mine.status_code == 200
    assert mine.content.startswith(b"\x89PNG")
    assert mine.headers["content-type"] == "image/png"
    assert mine.headers["x-content-type-options"] == "nosniff"
    theirs = api(devhost, b, "GET", f"media/{sid}/0")
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "media_not_found"

    moved = api(devhost, a, "POST", f"conversations/{phone.replace('+', '%2B')}/transfer", json={"desk": "billing"})
    assert moved.status_code == 200, moved.text
    assert api(devhost, b, "GET", f"media/{sid}/0").content == mine.content  # the new owner opens the old MMS
    later = reply(devhost, phone, "another", image=True)["sid"]
    assert until(lambda: api(devhost, b, "GET", f"media/{later}/0").status_code == 200)
    assert api(devhost, a, "GET", f"media/{later}/0").status_code == 404  # nothing after the transfer
    assert api(devhost, a, "GET", f"media/{sid}/0").status_code == 200  # but what it had until then


def test_idempotency_key_texts_once(devhost: DevhostProcess) -> None:
    a, phone = devhost.session(), "+14155550124"
    key = str(uuid.uuid4())
    calls_before = len(httpx.get(f"{devhost.sandbox_url}/calls", timeout=5).json())
    first = api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "once"}, headers={"Idempotency-Key": key})
    again = api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "once"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    creates = [
        c
        for c in httpx.get(f"{devhost.sandbox_url}/calls", timeout=5).json()[calls_before:]
        if c["method"] == "POST" and c["path"].endswith("/Messages.json")
    ]
    assert len(creates) == 1


def test_unrouted_list_and_claim_through_the_api(devhost: DevhostProcess) -> None:
    a, b, phone = devhost.session("reception"), devhost.session("billing", "Ken"), "+14155550125"
    reply(devhost, phone, "new patient here")
    listed = api(devhost, b, "GET", "unrouted").json()["conversations"]
    assert phone in [c["phone"] for c in listed]
    claimed = api(devhost, a, "POST", f"conversations/{phone.replace('+', '%2B')}/claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json() == {"phone": phone, "webAppId": a["webAppId"]}
    again = api(devhost, b, "POST", f"conversations/{phone.replace('+', '%2B')}/claim")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_claimed"
    assert phone not in [c["phone"] for c in api(devhost, b, "GET", "unrouted").json()["conversations"]]
    assert [m["body"] for m in history(devhost, a, phone)] == ["new patient here"]


def enc(phone: str) -> str:
    return phone.replace("+", "%2B")


def listed(host: DevhostProcess, session: dict[str, Any], status: str | None = None) -> dict[str, bool]:
    r = api(host, session, "GET", "conversations", params={"status": status} if status else None)
    assert r.status_code == 200, r.text
    return {c["phone"]: c["done"] for c in r.json()["conversations"]}


def test_done_and_reopen_follow_the_desk_and_a_reply_reopens(devhost: DevhostProcess) -> None:
    a, b, phone = devhost.session("reception"), devhost.session("billing", "Ken"), "+14155550131"
    api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "your results are in"})
    assert api(devhost, b, "POST", f"conversations/{enc(phone)}/done").json()["error"]["code"] == (
        "conversation_not_found"
    )
    assert api(devhost, a, "POST", "conversations/%2B14155550999/done").status_code == 404
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        done = api(devhost, a, "POST", f"conversations/{enc(phone)}/done")
        assert (done.status_code, done.json()) == (200, {"phone": phone, "done": True})
        topic, told = sub.wait_for(lambda t, p: t.endswith("/done") and p.get("phone") == phone)
    assert topic == f"sms/{a['webAppId']}/done"
    assert (told["done"], told["by"]["name"]) == (True, "Maria")
    assert listed(devhost, a, "done")[phone] is True
    assert phone not in listed(devhost, a, "open")
    assert listed(devhost, a)[phone] is True  # the API's default is all
    assert api(devhost, a, "GET", "conversations", params={"status": "closed"}).json()["error"]["code"] == (
        "invalid_status"
    )
    page = api(devhost, a, "GET", f"conversations/{enc(phone)}/messages").json()
    assert page["state"] == "done"
    feed = [e for e in api(devhost, a, "GET", "messages").json()["events"] if e["kind"] == "done"]
    assert feed and feed[-1]["payload"]["phone"] == phone and feed[-1]["topic"].endswith("/done")

    reply(devhost, phone, "thanks!")
    assert until(lambda: listed(devhost, a, "open").get(phone) is False)
    assert api(devhost, a, "GET", f"conversations/{enc(phone)}/messages").json()["state"] == "open"
    api(devhost, a, "POST", f"conversations/{enc(phone)}/done")
    reopened = api(devhost, a, "POST", f"conversations/{enc(phone)}/reopen")
    assert (reopened.status_code, reopened.json()) == (200, {"phone": phone, "done": False})
    assert listed(devhost, a, "open")[phone] is False


def test_a_note_is_in_the_desks_thread_live_never_reaches_the_phone_and_travels_with_a_transfer(
    devhost: DevhostProcess,
) -> None:
    a, b, phone = devhost.session("reception"), devhost.session("billing", "Ken"), "+14155550132"
    api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "Is Tuesday fine?"})
    assert until(lambda: httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5).json())
    texts_before = httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5).json()
    calls_before = len(httpx.get(f"{devhost.sandbox_url}/calls", timeout=5).json())
    notes = f"conversations/{enc(phone)}/notes"

    for bad in ({"body": ""}, {"body": "   "}, {"body": "x" * 2001}, {"body": 5}, {}):
        r = api(devhost, a, "POST", notes, json=bad)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_body"), bad
    assert api(devhost, b, "POST", notes, json={"body": "not ours"}).json()["error"]["code"] == (
        "conversation_not_found"
    )
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        r = api(devhost, a, "POST", notes, json={"body": "She prefers mornings <b>only</b>"})
        assert r.status_code == 201, r.text
        topic, told = sub.wait_for(lambda t, p: t.endswith("/note") and p.get("phone") == phone)
    note = r.json()
    assert (note["direction"], note["body"], note["sentBy"]["name"], note["to"]) == (
        "note",
        "She prefers mornings <b>only</b>",
        "Maria",
        phone,
    )
    assert topic == f"sms/{a['webAppId']}/note" and told["MessageSid"] == note["sid"]
    assert api(devhost, a, "POST", notes, json={"body": "x" * 2000}).status_code == 201
    assert [m["direction"] for m in history(devhost, a, phone)][:2] == ["note", "note"]
    feed = [e for e in api(devhost, a, "GET", "messages").json()["events"] if e["kind"] == "note"]
    assert note["sid"] in [e["payload"]["MessageSid"] for e in feed]
    lists = {c["phone"]: c["lastMessage"] for c in api(devhost, a, "GET", "conversations").json()["conversations"]}
    assert lists[phone]["direction"] == "note"

    time.sleep(0.5)  # anything on its way to the phone would be there by now
    assert httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5).json() == texts_before
    calls = httpx.get(f"{devhost.sandbox_url}/calls", timeout=5).json()[calls_before:]
    assert [c for c in calls if c["method"] == "POST" and c["path"].endswith("/Messages.json")] == []

    moved = api(devhost, a, "POST", f"conversations/{enc(phone)}/transfer", json={"desk": "billing"})
    assert moved.status_code == 200, moved.text
    theirs = history(devhost, b, phone)
    assert note["sid"] in [m["sid"] for m in theirs]  # the new desk reads the note with the rest
    later = api(devhost, a, "POST", notes, json={"body": "too late"})
    assert (later.status_code, later.json()["error"]["code"]) == (409, "not_owner")
    assert api(devhost, b, "POST", notes, json={"body": "Billing took it"}).status_code == 201
    assert "Billing took it" not in [m["body"] for m in history(devhost, a, phone)]


def test_stop_and_start_show_on_the_conversation_and_reach_the_desk_live(devhost: DevhostProcess) -> None:
    a, phone = devhost.session("reception"), "+14155550133"
    api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "Reminder: flu shots this week"})

    def opted_out() -> tuple[bool, bool]:
        listed = {c["phone"]: c["optedOut"] for c in api(devhost, a, "GET", "conversations").json()["conversations"]}
        page = api(devhost, a, "GET", f"conversations/{enc(phone)}/messages").json()
        return listed[phone], page["optedOut"]

    assert opted_out() == (False, False)
    with Subscriber(devhost.broker.mqtt_port, a) as sub:
        reply(devhost, phone, "yes")  # an opt-in word from a number that never opted out: nothing to tell
        reply(devhost, phone, "STOP")
        topic, told = sub.wait_for(lambda t, p: t.endswith("/optout"))
        assert (topic, told["phone"], told["optedOut"]) == (f"sms/{a['webAppId']}/optout", phone, True)
        assert opted_out() == (True, True)
        refused = api(devhost, a, "POST", "send_sms", json={"to": phone, "body": "are you sure?"})
        assert refused.json()["error"]["code"] == "opted_out"
        reply(devhost, phone, "START")
        _, told = sub.wait_for(lambda t, p: t.endswith("/optout"))
        assert told["optedOut"] is False
    assert opted_out() == (False, False)
    events = api(devhost, a, "GET", "messages").json()["events"]
    feed = [e["payload"]["optedOut"] for e in events if e["kind"] == "optout" and e["payload"]["phone"] == phone]
    assert feed == [True, False]
