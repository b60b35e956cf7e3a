"""Reminders as core: answered with default settings, the automatic answer in the thread, STOP, failures, no
answer, and staff setting a state by hand through the real functions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.outbound import SendRequest
from relay.runtime import Runtime
from relay.store import UNROUTED
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import as_session, clock, desk
from tests.test_keywords import says, wait_received
from tests.test_polling import Twilio, phones, runtime_for, sandbox_with_relay

REMINDER = "Your appointment is on Tuesday at 9:15. Reply C to confirm or N to cancel."


@pytest.fixture
def twilio() -> Iterator[Twilio]:
    with sandbox_with_relay() as sandbox:
        yield sandbox


@pytest.fixture
def rt(twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str) -> Iterator[Runtime]:
    """Default settings: no KEYWORD_HANDLERS at all."""
    runtime = runtime_for(twilio, tmp_path, broker, signing_key, "push", REMINDER_NO_ANSWER_HOURS="2")
    assert runtime.settings.keyword_handlers == ()
    yield runtime
    runtime.close()


def remind(rt: Runtime, desk_id: str, phone: str) -> str:
    return rt.outbound.send(SendRequest(desk_id, phone, REMINDER, confirm=True)).sid


def later(rt: Runtime, twilio: Twilio, phone: str, body: str) -> list[str]:
    """A second later than the last message, so the thread's order is the order they were sent."""
    clock(rt).advance(timedelta(seconds=1))
    return says(twilio, phone, body)


def thread(rt: Runtime, desk_id: str, phone: str) -> list[dict[str, Any]]:
    return list(reversed(rt.conversations.messages(desk_id, phone, None, None)["messages"]))


def test_default_settings_confirm_decline_and_stop(rt: Runtime, twilio: Twilio, broker: BrokerProcess) -> None:
    grant = desk(rt)
    a, b, c, d = phones(4)
    sids = {p: remind(rt, grant.web_app_id, p) for p in (a, b, c, d)}
    topic = f"sms/{grant.web_app_id}/reminder"
    with Subscriber(broker.mqtt_port, as_session(grant, rt)) as sub:
        assert later(rt, twilio, a, "YES") == []  # Twilio's opt-in word: never a confirmation
        assert later(rt, twilio, a, "maybe, let me check") == []
        assert later(rt, twilio, a, "  c ") == [rt.settings.reminder_confirmed_text]
        assert says(twilio, b, "No") == [rt.settings.reminder_declined_text]
        says(twilio, c, "STOP")
        says(twilio, d, "CANCEL")  # Twilio's opt-out word: opted out, never a decline
        wait_received(twilio, a, rt.settings.reminder_confirmed_text)
        wait_received(twilio, b, rt.settings.reminder_declined_text)
        events = {p["MessageSid"]: p for t, p in sub.drain(quiet=1.0) if t == topic}
    assert {sid: events[sid]["state"] for sid in sids.values()} == {
        sids[a]: "confirmed",
        sids[b]: "declined",
        sids[c]: "opted_out",
        sids[d]: "opted_out",
    }
    assert events[sids[a]]["previous"] == "sent" and events[sids[a]]["lastReply"] == "  c "

    shown = thread(rt, grant.web_app_id, a)
    assert [(m["direction"], m["body"]) for m in shown] == [
        ("outbound", REMINDER),
        ("inbound", "YES"),
        ("inbound", "maybe, let me check"),
        ("inbound", "  c "),
        ("outbound", rt.settings.reminder_confirmed_text),
    ]
    assert shown[0]["reminder"] == "confirmed"
    assert shown[-1]["automatic"] == {"reason": "reminder", "inReplyTo": shown[-2]["sid"]}
    assert shown[-1]["sentBy"] is None and shown[0]["automatic"] is None
    # The automatic answer leaves the patient's messages unread for the desk.
    [summary] = [c for c in rt.conversations.of_desk(grant.web_app_id) if c["phone"] == a]
    assert summary["unread"] == 3

    assert says(twilio, a, "C") == []  # nothing waits for an answer any more: just a message for the desk
    assert rt.reminders.state_of(sids[a]) == "confirmed"


def test_settings_choose_the_answers_and_other_handlers_come_after(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    rt = runtime_for(
        twilio,
        tmp_path,
        broker,
        signing_key,
        "push",
        KEYWORD_HANDLERS="confirm,autoreply,help",  # the old name still starts; reminders come first anyway
        REMINDER_CONFIRMED_TEXT="See you then!",
        HELP_TEXT="Call 555-0100.",
    )
    try:
        grant = desk(rt)
        a, stranger = phones(2)
        sid = remind(rt, grant.web_app_id, a)
        assert says(twilio, a, "y") == ["See you then!"]
        assert rt.reminders.state_of(sid) == "confirmed"
        assert says(twilio, stranger, "HELP") == ["Call 555-0100."]
        wait_received(twilio, stranger, "Call 555-0100.")
        [message, answer] = reversed(rt.store.history(stranger, None, 10, audience=UNROUTED)[0])
        assert (message.body, answer.body, answer.payload["automatic"]["reason"]) == ("HELP", "Call 555-0100.", "help")
        shown = thread(rt, UNROUTED, stranger)
        assert shown[-1]["direction"] == "outbound" and shown[-1]["automatic"]["reason"] == "help"
    finally:
        rt.close()


def test_no_answer_after_the_setting_and_a_late_answer_still_counts(rt: Runtime, twilio: Twilio) -> None:
    grant = desk(rt)
    a, b = phones(2)
    first, second = remind(rt, grant.web_app_id, a), remind(rt, grant.web_app_id, b)
    clock(rt).advance(timedelta(hours=1, minutes=59))
    assert rt.reminders.sweep() == 0
    clock(rt).advance(timedelta(minutes=2))
    assert rt.reminders.sweep() == 2
    assert rt.reminders.sweep() == 0
    assert (rt.reminders.state_of(first), rt.reminders.state_of(second)) == ("no_answer", "no_answer")
    assert says(twilio, a, "confirm") == [rt.settings.reminder_confirmed_text]
    assert rt.reminders.state_of(first) == "confirmed"


def patch(host: DevhostProcess, session: dict[str, Any], sid: str, body: Any, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {session['token']}", **kw.pop("headers", {})}
    return httpx.patch(f"{host.base_url}/api/reminders/{sid}", json=body, headers=headers, timeout=10, **kw)


def send(host: DevhostProcess, session: dict[str, Any], to: str, **extra: Any) -> str:
    r = httpx.post(
        f"{host.base_url}/api/send_sms",
        json={"to": to, "body": REMINDER, "confirm": True, **extra},
        headers={"Authorization": f"Bearer {session['token']}"},
        timeout=15,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sid"])


def test_staff_set_a_state_by_hand_with_who_and_a_note(devhost: DevhostProcess) -> None:
    maria, ken = devhost.session("reception", "Maria"), devhost.session("billing", "Ken")
    sid = send(devhost, maria, "+14155550141")
    with Subscriber(devhost.broker.mqtt_port, maria) as sub:
        r = patch(devhost, maria, sid, {"state": "cancelled", "note": "moved to 3 pm"})
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["state"], got["note"], got["by"]) == ("cancelled", "moved to 3 pm", maria["staff"])
        _, live = sub.wait_for(lambda t, p: t == "sms/reception/reminder" and p["MessageSid"] == sid)
    assert (live["state"], live["previous"], live["by"]["name"], live["note"]) == (
        "cancelled",
        "sent",
        "Maria",
        "moved to 3 pm",
    )
    history = httpx.get(
        f"{devhost.base_url}/api/conversations/+14155550141/messages",
        headers={"Authorization": f"Bearer {maria['token']}"},
        timeout=10,
    ).json()["messages"]
    assert history[0]["reminder"] == "cancelled"

    for body, status, code in (
        ({"state": "pending"}, 400, "invalid_state"),
        ({"state": "opted_out"}, 400, "invalid_state"),
        ({"state": ["confirmed"]}, 400, "invalid_state"),  # unhashable: was a 500, found by schemathesis
        ({"state": "confirmed", "note": "x" * 501}, 400, "invalid_note"),
        ({"state": "confirmed", "note": 5}, 400, "invalid_note"),
        ([1], 400, "invalid_json"),
    ):
        r = patch(devhost, maria, sid, body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
    assert patch(devhost, ken, sid, {"state": "confirmed"}).json()["error"]["code"] == "reminder_not_found"
    r = patch(devhost, maria, "SM" + "0" * 32, {"state": "confirmed"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "reminder_not_found")
    r = patch(devhost, maria, sid, {"state": "confirmed"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = httpx.get(f"{devhost.base_url}/api/reminders/{sid}", headers={"Authorization": f"Bearer {maria['token']}"})
    assert r.json()["state"] == "cancelled"


def test_a_failed_delivery_fails_the_reminder(devhost: DevhostProcess) -> None:
    maria = devhost.session("reception", "Maria")
    with Subscriber(devhost.broker.mqtt_port, maria) as sub:
        sid = send(devhost, maria, "+14155550199")  # the sandbox fails deliveries to ...0199
        _, live = sub.wait_for(lambda t, p: t == "sms/reception/reminder" and p["MessageSid"] == sid, timeout=15)
    assert live["state"] == "failed"
    deadline = time.monotonic() + 5
    while True:
        got = httpx.get(
            f"{devhost.base_url}/api/reminders/{sid}", headers={"Authorization": f"Bearer {maria['token']}"}
        ).json()
        if got["state"] == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got["state"] == "failed"
