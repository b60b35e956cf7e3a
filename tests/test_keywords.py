"""Keyword conversations end to end: phones in the sandbox text the in-process relay through its webhook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from devhost.sandbox.webhooks import twiml_messages
from relay.errors import SettingsError
from relay.runtime import Runtime
from relay.store import UNROUTED
from relay.store.sqlite import SqliteStore
from tests.support.broker import BrokerProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import as_session, clock, desk, inbound_params, make_runtime
from tests.test_polling import Twilio, phones, runtime_for, sandbox_with_relay

HANDLERS = "help,stopwatch,autoreply"
HELP = "Reply STOP to opt out. Call 555-0100 for help."
AWAY = "We're closed; we'll answer in the morning."


@pytest.fixture
def twilio() -> Iterator[Twilio]:
    with sandbox_with_relay() as sandbox:
        yield sandbox


@pytest.fixture
def rt(twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str) -> Iterator[Runtime]:
    runtime = runtime_for(
        twilio, tmp_path, broker, signing_key, "push", KEYWORD_HANDLERS=HANDLERS, HELP_TEXT=HELP, AUTOREPLY_TEXT=AWAY
    )
    yield runtime
    runtime.close()


def says(twilio: Twilio, phone: str, body: str) -> list[str]:
    """The phone texts us; returns the <Message> bodies of the TwiML our webhook answered."""
    answer = twilio.reply(phone, body)
    assert answer["status"] == 200, answer
    return [m.body for m in twiml_messages(answer["twiml"])]


def wait_received(twilio: Twilio, phone: str, body: str, timeout: float = 10.0) -> None:
    """The sandbox delivers replies in the background; wait (bounded) until the phone shows this one."""
    deadline = time.monotonic() + timeout
    while body not in twilio.received(phone):
        assert time.monotonic() < deadline, f"{phone} never received {body!r}: {twilio.received(phone)}"
        time.sleep(0.05)


def test_help_is_answered_and_kept_from_the_desks(rt: Runtime, twilio: Twilio, broker: BrokerProcess) -> None:
    grant = desk(rt)
    phone = phones(1)[0]
    with Subscriber(broker.mqtt_port, as_session(grant, rt)) as sub:
        assert says(twilio, phone, "help") == [HELP]
        assert says(twilio, phone, "Info ") == [HELP]
        wait_received(twilio, phone, HELP)
        got = sub.drain(quiet=1.0)
    # Each HELP and each answer to it: kept from the live feed, on the handled topic.
    assert [(t, p["Body"]) for t, p in got] == [(f"sms/{UNROUTED}/handled", b) for b in ("help", HELP, "Info ", HELP)]
    # With Advanced Opt-Out, Twilio has answered HELP itself and says so in OptOutType: we stay quiet.
    result = rt.inbound.ingest(inbound_params(phone, "HELP", OptOutType="HELP"))
    assert result.reply is None
    assert rt.inbound.ingest(inbound_params(phone, "STOP")).reply is None


def test_autoreply_once_per_conversation_while_no_desk_is_signed_in(rt: Runtime, twilio: Twilio) -> None:
    p, q, r = phones(3)
    assert says(twilio, p, "Hello, is anyone there?") == [AWAY]
    assert says(twilio, p, "Hello??") == []
    assert says(twilio, q, "Hi") == [AWAY]
    wait_received(twilio, p, AWAY)
    first = rt.store.history(p, None, 10, audience=UNROUTED)[0]
    # Both still wait in the unrouted list for a desk to claim, with the automatic answer between them.
    assert sorted(m.direction for m in first) == ["automatic", "inbound", "inbound"]

    clock(rt).advance(timedelta(hours=rt.settings.conversation_ttl_hours, minutes=1))
    assert says(twilio, p, "Still there?") == [AWAY]  # a new conversation: answered again

    desk(rt)  # a desk signs in: somebody is listening
    assert says(twilio, r, "Hello") == []
    clock(rt).advance(timedelta(hours=rt.settings.session_ttl_hours, minutes=1))
    assert says(twilio, r, "Hello again") == [AWAY]  # its session lapsed unrenewed


def test_stopwatches_run_independently_per_sender(rt: Runtime, twilio: Twilio) -> None:
    a, b = phones(2)
    assert says(twilio, a, "TIME") == ["The stopwatch is not running. Text GO to start it."]
    assert says(twilio, a, "go") == ["Stopwatch started. Text HALT to stop, TIME for the time."]
    clock(rt).advance(timedelta(seconds=30))
    says(twilio, b, "GO")
    clock(rt).advance(timedelta(seconds=45))
    assert says(twilio, a, "time") == ["Running: 1:15."]
    assert says(twilio, b, "HALT") == ["Stopped at 0:45."]
    clock(rt).advance(timedelta(seconds=10))
    assert says(twilio, b, "TIME") == ["Stopped at 0:45."]
    assert says(twilio, a, "HALT") == ["Stopped at 1:25."]
    wait_received(twilio, a, "Stopped at 1:25.")
    answer, message = rt.store.history(a, None, 2, audience=UNROUTED)[0]
    assert message.payload["handledBy"] == "stopwatch"
    assert (answer.body, answer.payload["automatic"]["reason"]) == ("Stopped at 1:25.", "stopwatch")


def test_poll_mode_sends_the_answer_through_the_rest_api(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    twilio.relay.reachable = False
    rt = runtime_for(twilio, tmp_path, broker, signing_key, "poll", KEYWORD_HANDLERS="help", HELP_TEXT=HELP)
    try:
        rt.poller.poll()
        phone = phones(1)[0]
        twilio.reply(phone, "HELP")
        assert rt.poller.poll().ingested == 1
        wait_received(twilio, phone, HELP)
        assert rt.poller.poll().ingested == 0
        assert twilio.received(phone).count(HELP) == 1
    finally:
        rt.close()


def test_unknown_handler_names_the_setting(tmp_path: Path, broker: BrokerProcess, signing_key: str) -> None:
    store = SqliteStore(str(tmp_path / "relay.sqlite3"))
    try:
        with pytest.raises(SettingsError) as error:
            make_runtime(store, broker.mqtt_port, signing_key, "http://127.0.0.1:9", KEYWORD_HANDLERS="help,nope")
        assert error.value.name == "KEYWORD_HANDLERS"
        assert "nope" in str(error.value)
    finally:
        store.close()
