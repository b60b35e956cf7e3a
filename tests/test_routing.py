"""Routing rules, run against SQLite and Azurite alike, with a real broker, the sandbox and an injected clock."""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from relay.errors import Conflict, OwnedElsewhere, Unauthorized
from relay.outbound import SendRequest
from relay.runtime import Runtime
from relay.sessions import SessionGrant
from relay.store import UNROUTED, Store
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore
from tests.support.azurite import connection_string
from tests.support.broker import BrokerProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import as_session, clock, desk, inbound_params, make_runtime
from tests.support.tableproxy import CountingProxy


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


def history_of(rt: Runtime, desk_id: str, phone: str) -> list[str]:
    return [m["body"] for m in rt.conversations.messages(desk_id, phone, None, None)["messages"]]


def test_the_owner_desk_keeps_the_conversation_and_another_desk_must_take_it_over(
    runtime: Runtime, broker: BrokerProcess
) -> None:
    maria, ken, phone = desk(runtime, "reception", "Maria"), desk(runtime, "billing", "Ken"), fresh_phone()
    text(runtime, maria, phone, "Your appointment is tomorrow")
    with pytest.raises(Conflict) as refused:
        text(runtime, ken, phone, "About your bill")
    assert refused.value.code == "owned_by_other_desk" and "Reception" in refused.value.message
    assert isinstance(refused.value, OwnedElsewhere)
    assert refused.value.owner == {"id": "reception", "name": "Reception", "alias": "R"}
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "ok")["MessageSid"]) == "reception"
    clock(runtime).advance(timedelta(minutes=1))

    with (
        Subscriber(broker.mqtt_port, as_session(maria, runtime)) as at_reception,
        Subscriber(broker.mqtt_port, as_session(ken, runtime)) as at_billing,
    ):
        runtime.outbound.send(SendRequest("billing", phone, "About your bill", sent_by=ken.staff, take_over=True))
        for watcher, desk_id in ((at_reception, "reception"), (at_billing, "billing")):
            topic, line = watcher.wait_for(lambda t, p: t.endswith("/owner"))
            assert topic == f"sms/{desk_id}/owner"
            assert (line["Body"], line["reason"]) == ("Now with Billing (Ken)", "takeover")
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "paid")["MessageSid"]) == "billing"
    assert history_of(runtime, "billing", phone) == [
        "paid",
        "About your bill",
        "Now with Billing (Ken)",
        "ok",
        "Your appointment is tomorrow",
    ]
    assert history_of(runtime, "reception", phone) == ["Now with Billing (Ken)", "ok", "Your appointment is tomorrow"]


def test_an_alias_reaches_that_desk_moves_the_conversation_and_is_stripped_from_display_only(
    runtime: Runtime,
) -> None:
    maria, phone = desk(runtime, "reception", "Maria"), fresh_phone()
    text(runtime, maria, phone)
    clock(runtime).advance(timedelta(minutes=1))
    body = "#b Is my invoice paid?"
    params = phone_says(runtime, phone, body)
    message = runtime.store.get_message(params["MessageSid"])
    assert message is not None
    assert message.web_app_id == "billing"
    assert message.payload["Body"] == body
    assert message.payload["displayBody"] == "Is my invoice paid?"
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "thanks")["MessageSid"]) == "billing"
    assert history_of(runtime, "reception", phone) == ["Now with Billing", "hello"]
    assert audience_of(runtime, phone_says(runtime, phone, "#ZZZ not a desk")["MessageSid"]) == "billing"


def test_a_reply_long_after_the_ttl_reaches_the_owner_and_reopens_the_conversation(runtime: Runtime) -> None:
    maria, phone = desk(runtime, "reception", "Maria"), fresh_phone()
    text(runtime, maria, phone, "Reply C to confirm")
    runtime.ownership.set_state(phone, runtime.settings.our_side, "done")
    assert runtime.conversations.messages("reception", phone, None, None)["state"] == "done"
    clock(runtime).advance(timedelta(hours=runtime.settings.conversation_ttl_hours, days=2))
    late = phone_says(runtime, phone, "C")
    assert audience_of(runtime, late["MessageSid"]) == "reception"
    assert phone not in [c["phone"] for c in runtime.conversations.unrouted()]
    page = runtime.conversations.messages("reception", phone, None, None)
    assert (page["state"], page["yours"], page["owner"]["id"]) == ("open", True, "reception")
    assert [m["body"] for m in page["messages"]] == ["C", "Reply C to confirm"]


def test_transfer_hands_over_history_and_note_and_the_next_reply(runtime: Runtime, broker: BrokerProcess) -> None:
    maria, ken, phone = desk(runtime, "reception", "Maria"), desk(runtime, "billing", "Ken"), fresh_phone()
    text(runtime, maria, phone, "Your invoice is attached")
    clock(runtime).advance(timedelta(minutes=1))
    phone_says(runtime, phone, "Why is it so high?")
    clock(runtime).advance(timedelta(minutes=1))
    caller = runtime.sessions.authenticate(maria.token)
    with Subscriber(broker.mqtt_port, as_session(ken, runtime)) as at_billing:
        runtime.conversations.transfer(caller, phone, {"desk": "billing", "note": "Insurance question"})
        _, line = at_billing.wait_for(lambda t, p: t == "sms/billing/owner")
    assert (line["note"], line["by"]["name"], line["from"]["id"]) == ("Insurance question", "Maria", "reception")
    assert phone in [c["phone"] for c in runtime.conversations.of_desk("billing")]
    page = runtime.conversations.messages("billing", phone, None, None)
    assert [m["body"] for m in page["messages"]] == [
        "Now with Billing (Maria)",
        "Why is it so high?",
        "Your invoice is attached",
    ]
    assert page["messages"][0]["line"]["note"] == "Insurance question"
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "ok")["MessageSid"]) == "billing"
    assert history_of(runtime, "reception", phone)[0] == "Now with Billing (Maria)"

    with pytest.raises(Conflict) as again:
        runtime.conversations.transfer(caller, phone, {"desk": "billing"})
    assert again.value.code == "not_owner"


def test_of_two_simultaneous_transfers_exactly_one_wins(runtime: Runtime) -> None:
    runtime.directory.add("Nurse line", "N", runtime.clock.now())
    maria, phone = desk(runtime, "reception", "Maria"), fresh_phone()
    text(runtime, maria, phone)
    caller = runtime.sessions.authenticate(maria.token)
    barrier = threading.Barrier(2, timeout=10)
    outcomes: dict[str, str] = {}

    def transfer(target: str) -> None:
        barrier.wait()
        try:
            runtime.conversations.transfer(caller, phone, {"desk": target})
            outcomes[target] = "won"
        except Conflict as exc:
            outcomes[target] = exc.code

    threads = [threading.Thread(target=transfer, args=(t,)) for t in ("billing", "nurse_line")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(outcomes.values()) == ["not_owner", "won"]
    winner = next(d for d, o in outcomes.items() if o == "won")
    assert runtime.conversations.messages("reception", phone, None, None)["owner"]["id"] == winner


def test_claiming_an_unrouted_conversation_routes_later_replies(runtime: Runtime, broker: BrokerProcess) -> None:
    a, b, phone = desk(runtime, "reception"), desk(runtime, "billing"), fresh_phone()
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


@pytest.fixture
def counted(
    azurite: str, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> Iterator[tuple[Runtime, CountingProxy]]:
    """A runtime on Table Storage behind a proxy that counts its round trips."""
    port = re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)/", azurite)
    assert port is not None
    proxy = CountingProxy(int(port.group(1)))
    proxy.start()
    store = TableStore(connection_string(proxy.port), table_prefix="r" + uuid.uuid4().hex[:10])
    rt = make_runtime(store, broker.mqtt_port, signing_key, sandbox_url)
    try:
        yield rt, proxy
    finally:
        rt.close()
        proxy.stop()


def monotonic() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def test_a_routed_reply_costs_four_table_round_trips(counted: tuple[Runtime, CountingProxy]) -> None:
    """Each round trip is a billed Table transaction, all serial on the webhook's path (docs/scale.md): the
    owner's row, the MessageSid arbiter, the phone's history row, and one transaction in the desk's partition
    (event, receipt, head, conversation summary, search words). The published mark follows within two of the
    store's mark windows, in one transaction with its neighbours' (or inside the desk's next append)."""
    rt, proxy = counted
    store = rt.store
    assert isinstance(store, TableStore)
    a, phone = desk(rt), fresh_phone()
    text(rt, a, phone)
    phone_says(rt, phone, "warm: the desk's first reply from this phone")
    # Past the desk list's 2 s cache: the desk change feed keeps it, so a reply after a quiet spell costs 4 too.
    time.sleep(3.0)
    assert rt.desk_changes.epoch() is not None
    start = monotonic()
    params = phone_says(rt, phone, "Running 5 minutes late, sorry!")
    answered = monotonic()
    time.sleep(2 * store.mark_window + 1.0)  # what no append carried is marked by then
    during, after = proxy.counted(start, answered), proxy.counted(answered, monotonic())
    assert audience_of(rt, params["MessageSid"]) == a.web_app_id
    assert sum(during.values()) <= 4, during
    assert sum(after.values()) <= 1 and set(after) <= {"POST $batch " + store.table("events").table_name}, after
    assert rt.store.pending_events(clock(rt).now() + timedelta(seconds=1), 10) == []


def test_on_a_busy_desk_every_published_mark_rides_in_a_later_message(counted: tuple[Runtime, CountingProxy]) -> None:
    """Replies every 0.4 s for longer than a mark window: the youngest mark when the window closed waited one
    more window for the next reply to carry it, so no transaction was spent on marks alone."""
    rt, proxy = counted
    store = rt.store
    assert isinstance(store, TableStore)
    a, phone = desk(rt), fresh_phone()
    text(rt, a, phone)  # its mark rides in the first reply's append
    batches = "POST $batch " + store.table("events").table_name
    start, replies = monotonic(), 0
    while monotonic() - start < store.mark_window + 2.0:
        phone_says(rt, phone, f"reply {replies}")
        replies += 1
        time.sleep(0.4)
    assert proxy.counted(start, monotonic())[batches] == replies  # each reply's own append, nothing else
    time.sleep(2 * store.mark_window + 1.0)
    assert rt.store.pending_events(clock(rt).now() + timedelta(seconds=1), 10) == []


def test_archiving_a_desk_sends_its_conversations_to_unrouted_where_another_desk_claims_them(
    runtime: Runtime,
) -> None:
    runtime.directory.add("Lab", "L", runtime.clock.now())
    lab, phone = desk(runtime, "lab", "Ann"), fresh_phone()
    text(runtime, lab, phone, "Your results are in")
    clock(runtime).advance(timedelta(minutes=1))
    archived = runtime.admin.archive_desk("lab")
    assert (archived["sessionsEnded"], archived["conversationsUnrouted"]) == (1, 1)
    assert phone in [c["phone"] for c in runtime.conversations.unrouted()]
    with pytest.raises(Unauthorized) as refused:
        runtime.sessions.authenticate(lab.token)
    assert refused.value.code == "desk_archived"
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "#L are they ok?")["MessageSid"]) == UNROUTED
    runtime.conversations.claim("reception", phone)
    assert history_of(runtime, "reception", phone)[-1] == "Your results are in"
    clock(runtime).advance(timedelta(minutes=1))
    assert audience_of(runtime, phone_says(runtime, phone, "thanks")["MessageSid"]) == "reception"
