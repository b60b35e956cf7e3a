"""Routing rules, run against SQLite and Azurite alike, with a real broker, the sandbox and an injected clock."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from relay.errors import Conflict
from relay.outbound import SendRequest
from relay.runtime import Runtime
from relay.sessions import SessionGrant
from relay.store import UNROUTED, Store
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore
from tests.support.broker import BrokerProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import as_session, clock, desk, inbound_params, make_runtime


@pytest.fixture(params=["sqlite", "tables"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> Iterator[Runtime]:
    store: Store
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "relay.sqlite3"))
    else:
        store = TableStore(request.getfixturevalue("azurite"), table_prefix="r" + uuid.uuid4().hex[:10])
    rt = make_runtime(store, broker.mqtt_port, signing_key, sandbox_url)
    yield rt
    rt.close()


def text(rt: Runtime, grant: SessionGrant, to: str, body: str = "hello") -> str:
    return rt.outbound.send(SendRequest(grant.web_app_id, to, body)).sid


def phone_says(rt: Runtime, phone: str, body: str, sid: str | None = None) -> dict[str, str]:
    params = inbound_params(phone, body, sid)
    rt.inbound.ingest(params)
    return params


def audience_of(rt: Runtime, sid: str) -> str:
    message = rt.store.get_message(sid)
    assert message is not None
    return message.web_app_id


def fresh_phone() -> str:
    return f"+1415555{secrets.randbelow(90) + 10:02d}{secrets.randbelow(90) + 10:02d}"


def test_most_recent_sender_wins(runtime: Runtime) -> None:
    a, b, phone = desk(runtime), desk(runtime), fresh_phone()
    text(runtime, a, phone)
    clock(runtime).advance(timedelta(minutes=1))
    text(runtime, b, phone)
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "yes")["MessageSid"]) == b.web_app_id
    text(runtime, a, phone)
    clock(runtime).advance(timedelta(seconds=1))
    assert audience_of(runtime, phone_says(runtime, phone, "again")["MessageSid"]) == a.web_app_id


def test_alias_prefix_overrides_and_is_stripped_from_display_only(runtime: Runtime) -> None:
    a, b, phone = desk(runtime), desk(runtime), fresh_phone()
    text(runtime, a, phone)
    text(runtime, b, phone)
    body = f"{a.alias.lower()} Is Dr. Lee in today?"
    params = phone_says(runtime, phone, body)
    message = runtime.store.get_message(params["MessageSid"])
    assert message is not None
    assert message.web_app_id == a.web_app_id
    assert message.payload["Body"] == body
    assert message.payload["displayBody"] == "Is Dr. Lee in today?"


def test_expiry_slides_with_every_message_and_then_lapses(runtime: Runtime) -> None:
    a, phone = desk(runtime), fresh_phone()
    text(runtime, a, phone)
    clock(runtime).advance(timedelta(hours=3))
    assert audience_of(runtime, phone_says(runtime, phone, "one")["MessageSid"]) == a.web_app_id
    clock(runtime).advance(timedelta(hours=3))
    assert audience_of(runtime, phone_says(runtime, phone, "two")["MessageSid"]) == a.web_app_id
    clock(runtime).advance(timedelta(hours=4, minutes=1))
    late = phone_says(runtime, phone, "three")
    assert audience_of(runtime, late["MessageSid"]) == UNROUTED
    history = runtime.conversations.messages(a.web_app_id, phone, None, None)["messages"]
    assert [m["body"] for m in history] == ["two", "one", "hello"]


def test_claiming_an_unrouted_conversation_routes_later_replies(runtime: Runtime, broker: BrokerProcess) -> None:
    a, b, phone = desk(runtime), desk(runtime), fresh_phone()
    first = phone_says(runtime, phone, "is anyone there?")
    assert audience_of(runtime, first["MessageSid"]) == UNROUTED
    assert [c["phone"] for c in runtime.conversations.unrouted()].count(phone) == 1
    with Subscriber(broker.mqtt_port, as_session(b, runtime)) as watcher:
        runtime.conversations.claim(a.web_app_id, phone)
        _, payload = watcher.wait_for(lambda t, p: t == "sms/unrouted/claimed" and p["phone"] == phone)
    assert payload["webAppId"] == a.web_app_id
    with pytest.raises(Conflict):
        runtime.conversations.claim(b.web_app_id, phone)
    assert phone not in [c["phone"] for c in runtime.conversations.unrouted()]
    clock(runtime).advance(timedelta(seconds=1))
    assert audience_of(runtime, phone_says(runtime, phone, "thanks")["MessageSid"]) == a.web_app_id
    history = runtime.conversations.messages(a.web_app_id, phone, None, None)["messages"]
    assert [m["body"] for m in history] == ["thanks", "is anyone there?"]


def test_twenty_concurrent_duplicate_webhooks_store_and_publish_once(runtime: Runtime, broker: BrokerProcess) -> None:
    a, phone = desk(runtime), fresh_phone()
    text(runtime, a, phone)
    sid = "SM" + secrets.token_hex(16)
    barrier = threading.Barrier(20, timeout=10)

    def deliver() -> None:
        barrier.wait()
        phone_says(runtime, phone, "duplicate me", sid)

    with Subscriber(broker.mqtt_port, as_session(a, runtime)) as sub:
        threads = [threading.Thread(target=deliver) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        seen = [p for t, p in sub.drain(1.5) if t.endswith("/inbound") and p.get("MessageSid") == sid]
    assert len(seen) == 1
    history = runtime.conversations.messages(a.web_app_id, phone, None, None)["messages"]
    assert [m["sid"] for m in history].count(sid) == 1
    feed = runtime.conversations.feed(a.web_app_id, None)["events"]
    assert [e["payload"].get("MessageSid") for e in feed if e["kind"] == "inbound"].count(sid) == 1


def test_history_pages_in_order_without_gaps(runtime: Runtime) -> None:
    a, phone = desk(runtime), fresh_phone()
    text(runtime, a, phone, "start")
    for i in range(12):
        clock(runtime).advance(timedelta(seconds=1))
        phone_says(runtime, phone, f"m{i}")
    seen: list[str] = []
    cursor = None
    while True:
        page = runtime.conversations.messages(a.web_app_id, phone, cursor, "5")
        seen += [m["body"] for m in page["messages"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in reversed(range(12))] + ["start"]


def test_closing_the_outbox_records_every_acknowledgement_first(runtime: Runtime) -> None:
    """Acks are written by a background thread; Runtime.close() closes the outbox, then the store."""
    a, phone = desk(runtime), fresh_phone()
    sids = [phone_says(runtime, phone, f"ack {i}")["MessageSid"] for i in range(30)]
    text(runtime, a, phone)
    runtime.publisher.stop()
    runtime.outbox.close()
    pending = runtime.store.pending_events(clock(runtime).now(), 500)
    assert [e for e in pending if e.payload.get("MessageSid") in sids] == []
