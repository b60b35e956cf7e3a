"""One contract suite for every Store backend: SQLite in a temp dir, Azure Tables on a real Azurite emulator."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from azure.data.tables import TableServiceClient

from relay.store.base import UNROUTED, Event, EventPage, MessageRecord, StatusRecord, Store, StoreError
from relay.store.sqlite import SqliteStore
from relay.store.tablekit import enc
from relay.store.tables import CONVERSATIONS, EVENTS, HISTORY, TableStore, conversation_key
from tests.support.azurite import REPO_ROOT, connection_string
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DESK = "desk-a"
OTHER_DESK = "desk-b"
PHONE = "+15550001111"
OUR = "+15559990000"
R = TypeVar("R")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def message(
    sid: str,
    when: datetime,
    *,
    desk: str = DESK,
    phone: str = PHONE,
    direction: str = "inbound",
    body: str = "hello",
    our_side: str = OUR,
) -> MessageRecord:
    return MessageRecord(sid, direction, phone, our_side, desk, body, when, {"sid": sid, "body": body})


def event_for(record: MessageRecord) -> Event:
    return Event(record.web_app_id, record.direction, {"sid": record.sid}, record.created_at)


def save(store: Store, record: MessageRecord) -> Event:
    stored = store.save_message(record, event_for(record))
    assert stored is not None
    return stored


def race(count: int, work: Callable[[int], R]) -> list[R]:
    """Run `work` from `count` threads released together, so the store, not the test, decides the order."""
    barrier = threading.Barrier(count, timeout=10)

    def start(i: int) -> R:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count), timeout=45))


# -- messages


def test_save_message_once_per_sid(store: Store) -> None:
    record = message("SM1", at(0))
    stored = save(store, record)
    assert stored.key and stored.audience == DESK and stored.payload == {"sid": "SM1"}
    assert store.get_message("SM1") == record

    again = replace(record, body="a retried webhook")
    assert store.save_message(again, event_for(again)) is None
    assert store.get_message("SM1") == record
    assert [e.key for e in store.events_after([DESK], None, 10).events] == [stored.key]
    assert store.get_message("SM-missing") is None


def test_concurrent_duplicates_store_one_message_and_one_event(store: Store) -> None:
    record = message("SMdup", at(0))
    results = race(20, lambda _: store.save_message(record, event_for(record)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert [e.key for e in store.events_after([DESK], None, 50).events] == [winners[0].key]
    [conversation] = store.conversations(DESK)
    assert conversation.unread == 1


# -- statuses


def test_statuses_dedupe_and_keep_recorded_order(store: Store) -> None:
    save(store, message("SMs", at(0), direction="outbound"))
    recorded = [
        StatusRecord("SMs", "sent", None, None, at(1)),
        StatusRecord("SMs", "queued", None, None, at(2)),
        StatusRecord("SMs", "undelivered", "30003", "Unreachable handset", at(3)),
    ]
    keys = []
    for status in recorded:
        stored = store.add_status(status, Event(DESK, "status", {"status": status.status}, status.at))
        assert stored is not None
        keys.append(stored.key)
    duplicate = StatusRecord("SMs", "queued", None, None, at(9))
    assert store.add_status(duplicate, Event(DESK, "status", {"status": "queued"}, at(9))) is None
    assert store.statuses("SMs") == recorded
    assert store.statuses("SM-none") == []
    assert [e.key for e in store.events_after([DESK], None, 10).events][1:] == keys


def test_statuses_of_a_page_come_back_per_message_in_order(store: Store) -> None:
    sids = [f"SMp{i:02d}" for i in range(25)]
    for i, sid in enumerate(sids):
        for j, name in enumerate(("queued", "sent", "delivered")[: 1 + i % 3]):
            store.add_status(StatusRecord(sid, name, None, None, at(i + j)), Event(DESK, "status", {}, at(i + j)))
    found = store.statuses_of([*sids, "SM-none"])
    assert set(found) == {*sids, "SM-none"}
    assert found["SM-none"] == []
    for i, sid in enumerate(sids):
        assert found[sid] == store.statuses(sid)
        assert [r.status for r in found[sid]] == ["queued", "sent", "delivered"][: 1 + i % 3]


# -- routes


# -- history and conversations


def test_history_pages_newest_first_without_gaps_or_overlaps(store: Store) -> None:
    for i in range(25):
        save(store, message(f"SM{i:02d}", at(i), direction="inbound" if i % 2 else "outbound"))
    save(store, message("SMother-phone", at(101), phone="+15550002222"))

    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    for _ in range(5):
        page, cursor = store.history(PHONE, cursor, 10)
        sizes.append(len(page))
        seen.extend(m.sid for m in page)
        if cursor is None:
            break
    assert sizes == [10, 10, 5]
    assert seen == [f"SM{i:02d}" for i in reversed(range(25))]


def test_history_stops_at_until_and_filters_by_audience(store: Store) -> None:
    """A desk that handed a conversation on reads up to the hand-over; unrouted reads only what it was sent."""
    save(store, message("SM1", at(1), desk=UNROUTED))
    save(store, message("SM2", at(2)))
    save(store, message("SM3", at(3), desk=OTHER_DESK))
    assert [m.sid for m in store.history(PHONE, None, 10)[0]] == ["SM3", "SM2", "SM1"]
    assert [m.sid for m in store.history(PHONE, None, 10, until=at(2))[0]] == ["SM2", "SM1"]
    assert [m.sid for m in store.history(PHONE, None, 10, audience=UNROUTED)[0]] == ["SM1"]
    page, cursor = store.history(PHONE, None, 1, until=at(2))
    assert [m.sid for m in page] == ["SM2"] and cursor is not None
    assert [m.sid for m in store.history(PHONE, cursor, 5, until=at(2))[0]] == ["SM1"]


def test_history_breaks_time_ties_by_sid_descending(store: Store) -> None:
    for sid in ["SMb", "SMa", "SMc", "SMab"]:
        save(store, message(sid, at(0)))
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(6):
        page, cursor = store.history(PHONE, cursor, 1)
        seen.extend(m.sid for m in page)
        if cursor is None:
            break
    assert seen == ["SMc", "SMb", "SMab", "SMa"]


def test_conversations_order_and_unread(store: Store) -> None:
    second = "+15550002222"
    save(store, message("SM1", at(1)))
    save(store, message("SM2", at(2)))
    save(store, message("SM3", at(3), phone=second))
    assert [(c.phone, c.unread) for c in store.conversations(DESK)] == [(second, 1), (PHONE, 2)]

    save(store, message("SM4", at(4), direction="outbound", body="reply"))
    [first, other] = store.conversations(DESK)
    assert (first.phone, first.unread, first.last_sid, first.last_body, first.last_direction, first.last_at) == (
        PHONE,
        0,
        "SM4",
        "reply",
        "outbound",
        at(4),
    )
    assert other.phone == second

    save(store, message("SM5", at(5), phone=second))
    store.mark_read(DESK, PHONE)
    assert [(c.phone, c.unread) for c in store.conversations(DESK)] == [(second, 2), (PHONE, 0)]
    store.mark_read(DESK, second)
    store.mark_read(DESK, "+15550009999")
    assert [c.unread for c in store.conversations(DESK)] == [0, 0]

    save(store, message("SM0-late", at(0), phone=second))
    latest = store.conversations(DESK)[0]
    assert (latest.last_sid, latest.unread) == ("SM5", 0)
    assert store.conversations(OTHER_DESK) == []


def test_done_is_kept_per_desk_until_the_patient_replies(store: Store) -> None:
    save(store, message("SM1", at(1)))
    assert store.conversations(DESK)[0].done is False
    assert store.set_done(DESK, PHONE, True) is True
    assert store.set_done(DESK, PHONE, True) is False
    assert store.set_done(OTHER_DESK, PHONE, True) is None
    assert store.set_done(DESK, "+15550009999", False) is None
    save(store, message("SM2", at(2), direction="outbound", body="anything else?"))
    note = MessageRecord("NT1", "note", PHONE, OUR, DESK, "called her back", at(3), {})
    assert store.save_line(note, [Event(DESK, "note", {}, at(3))]) is not None
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.done) == ("NT1", True)  # the desk's own writing keeps it done

    save(store, message("SM3", at(4)))
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.unread, conversation.done) == ("SM3", 1, False)
    assert store.set_done(DESK, PHONE, True) is True
    assert store.set_done(DESK, PHONE, False) is True
    assert store.conversations(DESK)[0].done is False


def test_an_sqlite_file_from_before_done_opens_with_every_conversation_open(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.execute(
            "CREATE TABLE conversations (web_app_id TEXT NOT NULL, phone TEXT NOT NULL, our_side TEXT NOT NULL,"
            " last_sid TEXT NOT NULL, last_body TEXT NOT NULL, last_direction TEXT NOT NULL, last_at REAL NOT NULL,"
            " unread INTEGER NOT NULL, PRIMARY KEY (web_app_id, phone))"
        )
        old.execute("INSERT INTO conversations VALUES (?, ?, ?, 'SM0', 'hi', 'inbound', 0, 1)", (DESK, PHONE, OUR))
        old.commit()
    store = SqliteStore(path)
    try:
        assert [(c.phone, c.done) for c in store.conversations(DESK)] == [(PHONE, False)]
        assert store.set_done(DESK, PHONE, True) is True
    finally:
        store.close()


def test_a_change_of_owner_reopens_it_for_the_desk_it_goes_to_only(store: Store) -> None:
    save(store, message("SM1", at(1)))
    save(store, message("SM2", at(2), desk=OTHER_DESK))
    store.set_done(DESK, PHONE, True)
    store.set_done(OTHER_DESK, PHONE, True)
    line = MessageRecord("EV1", "event", PHONE, OUR, OTHER_DESK, "Now with B", at(3), {"Body": "Now with B"})
    store.save_line(line, [Event(OTHER_DESK, "owner", line.payload, at(3)), Event(DESK, "owner", line.payload, at(3))])
    assert [(c.last_sid, c.done) for c in store.conversations(DESK)] == [("EV1", True)]
    assert [(c.last_sid, c.done) for c in store.conversations(OTHER_DESK)] == [("EV1", False)]


def test_a_claim_into_a_done_conversation_reopens_it(store: Store) -> None:
    save(store, message("SM1", at(1)))
    store.set_done(DESK, PHONE, True)
    save(store, message("SMu1", at(2), desk=UNROUTED))
    assert store.claim(PHONE, DESK, Event(DESK, "claimed", {"phone": PHONE}, at(3))) is not None
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.done) == ("SMu1", False)


# -- claim


def test_claim_moves_the_unrouted_summary_once(store: Store) -> None:
    save(store, message("SMu1", at(1), desk=UNROUTED))
    save(store, message("SMu2", at(2), desk=UNROUTED))
    assert [(c.phone, c.unread) for c in store.conversations(UNROUTED)] == [(PHONE, 2)]

    claimed = store.claim(PHONE, DESK, Event(DESK, "claimed", {"phone": PHONE}, at(10)))
    assert claimed is not None and claimed.key and claimed.kind == "claimed"
    assert store.conversations(UNROUTED) == []
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.unread) == ("SMu2", 2)
    assert claimed.key in [e.key for e in store.events_after([DESK], None, 10).events]
    moved = store.get_message("SMu1")
    assert moved is not None and moved.web_app_id == DESK
    assert store.history(PHONE, None, 10, audience=UNROUTED) == ([], None)

    assert store.claim(PHONE, OTHER_DESK, Event(OTHER_DESK, "claimed", {}, at(11))) is None
    assert store.claim("+15550009999", DESK, Event(DESK, "claimed", {}, at(12))) is None


def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    phones = [f"+1555000{i:04d}" for i in range(3)]
    for n, phone in enumerate(phones):
        save(store, message(f"SMc{n}", at(n), desk=UNROUTED, phone=phone))
    desks = [f"desk_{i}" for i in range(4)]
    for phone in phones:

        def claim(i: int, phone: str = phone) -> Event | None:
            return store.claim(phone, desks[i], Event(desks[i], "claimed", {}, at(50)))

        results = race(4, claim)
        winners = [desks[i] for i, r in enumerate(results) if r is not None]
        assert len(winners) == 1, (phone, winners)
        holders = [d for d in desks if any(c.phone == phone for c in store.conversations(d))]
        assert holders == winners
    assert store.conversations(UNROUTED) == []


def test_a_line_tells_several_desks_and_keeps_their_unread_counts(store: Store) -> None:
    save(store, message("SM1", at(1)))
    line = MessageRecord("EV1", "event", PHONE, OUR, OTHER_DESK, "Now with B", at(2), {"Body": "Now with B"})
    events = [Event(OTHER_DESK, "owner", line.payload, at(2)), Event(DESK, "owner", line.payload, at(2))]
    stored = store.save_line(line, events)
    assert stored is not None and [e.audience for e in stored] == [OTHER_DESK, DESK] and all(e.key for e in stored)
    assert store.save_line(line, events) is None
    [mine] = store.conversations(DESK)
    [theirs] = store.conversations(OTHER_DESK)
    assert (mine.last_sid, mine.unread, theirs.last_sid, theirs.unread) == ("EV1", 1, "EV1", 0)
    assert [e.kind for e in store.events_after([DESK, OTHER_DESK], None, 10).events] == ["inbound", "owner", "owner"]


# -- events


def test_events_after_merges_audiences_oldest_first(store: Store) -> None:
    stored = [
        save(store, message("SMe0", at(0), desk=DESK)),
        save(store, message("SMe1", at(1), desk=OTHER_DESK, phone="+15550002222")),
        save(store, message("SMe2", at(2), desk="desk-c", phone="+15550003333")),
        save(store, message("SMe3", at(3), desk=DESK)),
        save(store, message("SMe4", at(4), desk=OTHER_DESK, phone="+15550002222")),
    ]
    wanted = [stored[i] for i in (0, 1, 3, 4)]
    everything = store.events_after([DESK, OTHER_DESK], None, 100)
    events = everything.events
    assert [e.key for e in events] == [e.key for e in wanted]
    assert [e.payload["sid"] for e in events] == ["SMe0", "SMe1", "SMe3", "SMe4"]
    assert events[0] == Event(DESK, "inbound", {"sid": "SMe0"}, at(0), key=stored[0].key)
    first_two = store.events_after([DESK, OTHER_DESK], None, 2)
    assert [e.key for e in first_two.events] == [e.key for e in wanted[:2]]
    rest = store.events_after([DESK, OTHER_DESK], first_two.cursor, 100)
    assert [e.key for e in rest.events] == [e.key for e in wanted[2:]]
    assert rest.cursor == everything.cursor
    assert store.events_after([DESK, OTHER_DESK], rest.cursor, 100) == EventPage([], rest.cursor)
    assert store.events_after([], None, 100).events == []
    with pytest.raises(ValueError):
        store.events_after([DESK, OTHER_DESK], "not-a-cursor", 100)


def test_a_reader_passes_an_event_purged_below_later_ones(store: Store) -> None:
    """Purge leaves a hole in the sequence; the cursor must step over it, not wait for it forever."""
    first = save(store, message("SMg0", at(10)))
    purged = save(store, message("SMg1", at(0), phone="+15550002222"))
    last = save(store, message("SMg2", at(20)))
    store.mark_published(purged)
    assert store.purge(at(5)) == 1
    page = store.events_after([DESK], None, 10)
    assert [e.key for e in page.events] == [first.key, last.key]
    assert store.events_after([DESK], store.events_after([DESK], None, 1).cursor, 10).events == [last]
    assert store.events_after([DESK], page.cursor, 10).events == []


def test_pending_events_and_mark_published(store: Store) -> None:
    first = save(store, message("SMp0", at(0)))
    second = save(store, message("SMp1", at(10)))
    assert [e.key for e in store.pending_events(at(5), 10)] == [first.key]
    assert [e.key for e in store.pending_events(at(60), 10)] == [first.key, second.key]
    assert [e.key for e in store.pending_events(at(60), 1)] == [first.key]

    store.mark_published(first)
    assert [e.key for e in store.pending_events(at(60), 10)] == [second.key]
    assert [e.published for e in store.events_after([DESK], None, 10).events] == [True, False]


def test_mark_published_marks_many_desks_at_once_and_skips_a_purged_event(store: Store) -> None:
    """The outbox marks a window's acknowledgements in one call: past a batch's hundred, over two desks, with an
    event purged since it was acknowledged, and with one acknowledged twice."""
    events = [save(store, message(f"SMb{i}", at(10 + i), desk=(DESK, OTHER_DESK)[i % 3 == 0])) for i in range(130)]
    purged = save(store, message("SMbold", at(0), phone="+15550002222"))
    store.mark_published(purged)
    assert store.purge(at(5)) == 1
    store.mark_published(events[1], events[2], purged, *events[:120], events[1])
    pending = store.pending_events(at(1000), 100)
    assert [e.key for e in pending] == [e.key for e in events[120:]]
    store.mark_published(*events)
    assert store.pending_events(at(1000), 100) == []


def test_on_table_storage_an_acknowledged_event_is_marked_by_the_next_append_to_its_desk(azurite: str) -> None:
    """The mark rides in the next transaction of the desk's partition, before the outbox's window ends and with no
    round trip of its own; another desk's append leaves it waiting; a mark never brings a purged event back."""
    store = TableStore(azurite, table_prefix=f"t{uuid.uuid4().hex[:16]}", timeout_seconds=5.0)
    try:
        first = save(store, message("SMm0", at(10)))
        old = save(store, message("SMm1", at(0), phone="+15550002222"))
        store.mark_published(old)
        assert store.purge(at(5)) == 1
        store.mark_soon(first)
        store.mark_soon(old)
        other = save(store, message("SMm2", at(20), desk=OTHER_DESK, phone="+15550003333"))
        assert [e.key for e in store.pending_events(at(1000), 10)] == [first.key, other.key]
        third = save(store, message("SMm3", at(30)))
        assert [e.key for e in store.pending_events(at(1000), 10)] == [other.key, third.key]
        assert [e.key for e in store.events_after([DESK], None, 10).events] == [first.key, third.key]
        store.mark_published(first, old, other)  # the outbox's window ends: what no append carried is written
        assert [e.key for e in store.pending_events(at(1000), 10)] == [third.key]
    finally:
        store.close()


# -- key/value and hits


def test_kv_expiry_conditional_insert_and_delete(store: Store) -> None:
    assert store.kv_get("ns", "k", at(0)) is None
    store.kv_put("ns", "k", {"v": 1}, at(10))
    assert store.kv_get("ns", "k", at(9)) == {"v": 1}
    assert store.kv_get("ns", "k", at(10)) is None

    assert store.kv_insert("ns", "k", {"v": 2}, at(30), now=at(5)) is False
    assert store.kv_get("ns", "k", at(5)) == {"v": 1}
    assert store.kv_insert("ns", "k", {"v": 3}, at(30), now=at(11)) is True
    assert store.kv_get("ns", "k", at(20)) == {"v": 3}

    assert store.kv_insert("ns", "forever", {"v": 4}, None, now=at(0)) is True
    assert store.kv_insert("ns", "forever", {"v": 5}, None, now=at(10**6)) is False
    assert store.kv_get("ns", "forever", at(10**6)) == {"v": 4}
    assert store.kv_get("other-ns", "forever", at(0)) is None

    store.kv_delete("ns", "forever")
    store.kv_delete("ns", "never-there")
    assert store.kv_get("ns", "forever", at(0)) is None
    assert store.kv_insert("ns", "forever", {"v": 6}, None, now=at(0)) is True


def test_kv_concurrent_insert_has_one_winner(store: Store) -> None:
    store.kv_put("ns", "lock", {"owner": "old"}, at(1))
    results = race(8, lambda i: store.kv_insert("ns", "lock", {"owner": i}, at(100), now=at(50)))
    assert results.count(True) == 1
    assert store.kv_get("ns", "lock", at(50)) == {"owner": results.index(True)}


def test_keys_with_characters_table_storage_forbids(store: Store) -> None:
    odd = ["a/b", "c\\d", "e#f", "g?h", "tab\there", "~", "", "~7E", "pct%41", "quote'", "ünï"]
    for n, key in enumerate(odd):
        store.kv_put("ns/#?", key, {"n": n}, None)
    assert [store.kv_get("ns/#?", key, at(0)) for key in odd] == [{"n": n} for n in range(len(odd))]

    desk = "desk/with#odd?chars\\"
    save(store, message("SM/odd?#", at(0), desk=desk, phone="+1 (555) 000"))
    page, _ = store.history("+1 (555) 000", None, 10, audience=desk)
    assert [m.sid for m in page] == ["SM/odd?#"]
    assert [c.web_app_id for c in store.conversations(desk)] == [desk]


def test_hits_are_counted_in_windows(store: Store) -> None:
    for seconds in (0, 10, 20):
        store.record_hit("login", "1.2.3.4", at(seconds))
    store.record_hit("login", "1.2.3.4", at(20))
    store.record_hit("login", "5.6.7.8", at(15))
    assert store.count_hits("login", "1.2.3.4", at(0)) == (4, at(0))
    assert store.count_hits("login", "1.2.3.4", at(5)) == (3, at(10))
    assert store.count_hits("login", "1.2.3.4", at(21)) == (0, None)
    assert store.count_hits("sms", "1.2.3.4", at(0)) == (0, None)


def test_a_dropped_hit_no_longer_counts(store: Store) -> None:
    kept = store.record_hit("send", "reception", at(1))
    dropped = store.record_hit("send", "reception", at(2))
    other = store.record_hit("send", "billing", at(2))
    store.drop_hit("send", "reception", dropped)
    store.drop_hit("send", "reception", dropped)  # gone already is fine
    store.drop_hit("send", "reception", other)  # another key's hit is not this key's to drop
    assert len({kept, dropped, other}) == 3
    assert store.count_hits("send", "reception", at(0)) == (1, at(1))
    assert store.count_hits("send", "billing", at(0)) == (1, at(2))


def test_concurrent_hits_are_all_counted(store: Store) -> None:
    race(10, lambda _: store.record_hit("ns", "k", at(1)))
    assert store.count_hits("ns", "k", at(0)) == (10, at(1))


# -- housekeeping


def test_purge_removes_old_rows_and_keeps_new_ones(store: Store) -> None:
    day = 86400
    old = save(store, message("SMold", at(0)))
    save(store, message("SMnew", at(2 * day)))
    store.add_status(StatusRecord("SMold", "delivered", None, None, at(1)), Event(DESK, "status", {}, at(1)))
    store.add_status(
        StatusRecord("SMnew", "delivered", None, None, at(2 * day)), Event(DESK, "status", {}, at(2 * day))
    )
    store.add_status(StatusRecord("SMorphan-old", "sent", None, None, at(5)), Event(DESK, "status", {}, at(5)))
    store.add_status(StatusRecord("SMearly", "sent", None, None, at(2 * day)), Event(DESK, "status", {}, at(2 * day)))
    store.mark_published(old)
    store.record_hit("ns", "k", at(0))
    store.record_hit("ns", "k", at(2 * day))

    assert store.purge(at(day)) == 1
    assert store.get_message("SMold") is None and store.get_message("SMnew") is not None
    assert store.statuses("SMold") == [] and store.statuses("SMorphan-old") == []
    assert [s.status for s in store.statuses("SMnew")] == ["delivered"]
    assert [s.status for s in store.statuses("SMearly")] == ["sent"]
    assert [m.sid for m in store.history(PHONE, None, 10)[0]] == ["SMnew"]
    assert [c.last_sid for c in store.conversations(DESK)] == ["SMnew"]
    remaining = store.events_after([DESK], None, 100).events
    assert old.key not in [e.key for e in remaining] and len(remaining) == 5
    assert store.count_hits("ns", "k", at(0)) == (1, at(2 * day))
    assert store.purge(at(day)) == 0


def test_ping_on_a_live_store(store: Store) -> None:
    store.ping()


def test_sqlite_commits_reach_the_database_file_without_a_commit_paying_for_it(tmp_path: Path) -> None:
    """Automatic checkpoints are off, so without the checkpointer thread this data would stay in the WAL."""
    path = tmp_path / "relay.db"
    store = SqliteStore(str(path))
    try:
        for i in range(50):
            save(store, message(f"SMc{i}", at(i)))
        copy = tmp_path / "copy.db"
        deadline = time.monotonic() + 5
        while True:
            copy.write_bytes(path.read_bytes())  # the database file alone, without its -wal
            with contextlib.closing(sqlite3.connect(copy)) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                rows = db.execute("SELECT count(*) FROM messages").fetchone()[0] if "messages" in tables else 0
            if rows == 50 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert rows == 50
    finally:
        store.close()
    assert not Path(f"{path}-wal").exists()


def test_sqlite_writers_in_two_workers_wait_in_line_instead_of_failing_busy(tmp_path: Path) -> None:
    """Two stores on one file are two worker processes: the second waits its turn past its busy timeout."""
    path = str(tmp_path / "relay.db")
    first, second = SqliteStore(path), SqliteStore(path, timeout_seconds=0.2)
    entered, release, saved = threading.Event(), threading.Event(), threading.Event()

    def mid_transaction(db: sqlite3.Connection) -> None:  # the other worker, for longer than our busy timeout
        entered.set()
        release.wait(5)

    def save_second() -> None:
        save(second, message("SMw1", at(1)))
        saved.set()

    holder = threading.Thread(target=first.write, args=(mid_transaction,))
    waiter = threading.Thread(target=save_second)
    try:
        holder.start()
        assert entered.wait(5)
        waiter.start()
        assert not saved.wait(0.6)
        release.set()
        waiter.join(5)
        assert saved.is_set()
        assert first.get_message("SMw1") is not None
    finally:
        release.set()
        holder.join(5)
        first.close()
        second.close()


def test_sqlite_group_commit_keeps_one_failing_write_from_failing_the_others(tmp_path: Path) -> None:
    """Writes queued behind a busy writer commit together; one that fails is rolled back alone."""
    store = SqliteStore(str(tmp_path / "relay.db"))
    entered, release = threading.Event(), threading.Event()

    def busy(db: sqlite3.Connection) -> None:
        entered.set()
        release.wait(5)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO no_such_table VALUES (1)")

    holder = threading.Thread(target=store.write, args=(busy,))
    holder.start()
    try:
        assert entered.wait(5)
        with ThreadPoolExecutor(9) as pool:
            saves = [pool.submit(save, store, message(f"SMg{i}", at(i))) for i in range(8)]
            failing = pool.submit(store.write, broken)
            time.sleep(0.3)  # all nine queued behind the busy writer
            release.set()
            events = [f.result(5) for f in saves]
            with pytest.raises(StoreError):
                failing.result(5)
        assert len({e.key for e in events}) == 8
        assert all(store.get_message(f"SMg{i}") is not None for i in range(8))
    finally:
        release.set()
        holder.join(5)
        store.close()


def test_table_store_on_a_dead_port_fails_fast() -> None:
    dead = TableStore(connection_string(free_port()), table_prefix="dead", timeout_seconds=2.0)
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        dead.ping()
    with pytest.raises(StoreError):
        dead.get_message("SM1")
    assert time.monotonic() - started < 10
    assert "AccountKey" not in str(raised.value) and "Eby8" not in str(raised.value)
    dead.close()


def test_table_store_accepts_development_storage_shortcut() -> None:
    TableStore("UseDevelopmentStorage=true").close()
    with pytest.raises(StoreError):
        TableStore("not a connection string")
    with pytest.raises(ValueError):
        TableStore("UseDevelopmentStorage=true", table_prefix="bad-prefix")


def test_duplicate_after_claim_stays_with_the_claimer(store: Store) -> None:
    first = message("SMu1", at(1), desk=UNROUTED)
    save(store, first)
    save(store, message("SMu2", at(2), desk=UNROUTED))
    assert store.claim(PHONE, DESK, Event(DESK, "claimed", {}, at(10))) is not None
    assert store.save_message(first, event_for(first)) is None
    assert store.conversations(UNROUTED) == []
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.unread) == ("SMu2", 2)


def test_table_duplicate_repairs_what_a_crash_left_undone(azurite: str) -> None:
    """A crash after the conditional insert leaves only the message and status rows; the retry finishes the job."""
    prefix = f"t{uuid.uuid4().hex[:16]}"
    store = TableStore(azurite, table_prefix=prefix)
    record = message("SMcrash", at(0))
    first = save(store, record)
    status = StatusRecord("SMcrash", "delivered", None, None, at(1))
    status_event = store.add_status(status, Event(DESK, "status", {"status": "delivered"}, at(1)))
    assert status_event is not None

    with TableServiceClient.from_connection_string(azurite) as service:
        for table in (EVENTS, HISTORY, CONVERSATIONS):
            client = service.get_table_client(prefix + table)
            for entity in list(client.list_entities()):
                if entity["RowKey"] != "h":  # an audience's head is never lost: it moves in the event's transaction
                    client.delete_entity(entity["PartitionKey"], entity["RowKey"])
    assert store.events_after([DESK], None, 10).events == []

    assert store.save_message(record, event_for(record)) is None
    assert store.add_status(status, Event(DESK, "status", {"status": "delivered"}, at(1))) is None
    repaired = store.events_after([DESK], None, 10).events
    assert [replace(e, key="") for e in repaired] == [replace(e, key="") for e in (first, status_event)]
    assert repaired[0].key > status_event.key, "a new number: a reader may already be past the old ones"
    assert [m.sid for m in store.history(PHONE, None, 10)[0]] == ["SMcrash"]
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.unread) == ("SMcrash", 1)
    assert store.save_message(record, event_for(record)) is None
    assert store.conversations(DESK)[0].unread == 1
    assert store.events_after([DESK], None, 10).events == repaired
    store.close()


def test_table_summaries_stay_right_when_two_instances_write_them(azurite: str) -> None:
    """Each instance writes a summary from its copy of its own last write, without a read: another instance's
    writes (replies, a read mark, done, purge behind its back) must still count, never be overwritten."""
    prefix = f"t{uuid.uuid4().hex[:16]}"
    one, two = TableStore(azurite, table_prefix=prefix), TableStore(azurite, table_prefix=prefix)
    save(one, message("SMo1", at(0), direction="outbound"))
    save(one, message("SMi1", at(1)))
    save(two, message("SMi2", at(2)))
    save(one, message("SMi3", at(3)))  # its copy is stale: two wrote since
    [conversation] = two.conversations(DESK)
    assert (conversation.last_sid, conversation.unread) == ("SMi3", 3)

    assert two.set_done(DESK, PHONE, True) is True
    two.mark_read(DESK, PHONE)
    save(one, message("SMo2", at(4), direction="outbound"))
    [conversation] = one.conversations(DESK)
    assert (conversation.last_sid, conversation.unread, conversation.done) == ("SMo2", 0, True)
    save(one, message("SMi4", at(5)))
    [conversation] = two.conversations(DESK)
    assert (conversation.last_sid, conversation.unread, conversation.done) == ("SMi4", 1, False)

    race(8, lambda i: save((one, two)[i % 2], message(f"SMr{i}", at(10))))  # at once: none is older, all count
    [conversation] = one.conversations(DESK)
    assert conversation.unread == 9
    assert len(one.events_after([DESK], None, 100).events) == 14

    with TableServiceClient.from_connection_string(azurite) as service:  # gone behind one's back
        service.get_table_client(prefix + CONVERSATIONS).delete_entity(enc(DESK), conversation_key(PHONE))
    save(one, message("SMi5", at(30)))
    [conversation] = two.conversations(DESK)
    assert (conversation.last_sid, conversation.unread) == ("SMi5", 1)
    one.close()
    two.close()


def test_kv_expired_lists_only_lapsed_entries_of_the_namespace(store: Store) -> None:
    store.kv_put("grants", "a/b#1", {"n": 1}, at(10))
    store.kv_put("grants", "c", {"n": 2}, at(100))
    store.kv_put("grants", "forever", {"n": 3}, None)
    store.kv_put("other", "d", {"n": 4}, at(10))
    assert store.kv_expired("grants", at(50), 10) == [("a/b#1", {"n": 1})]
    assert sorted(k for k, _ in store.kv_expired("grants", at(200), 10)) == ["a/b#1", "c"]


def test_kv_many_reads_a_lists_worth_of_keys_and_skips_expired_ones(store: Store) -> None:
    store.kv_put("optout", PHONE, {"keyword": "STOP"}, None)
    store.kv_put("optout", "+15550002222", {"keyword": "QUIT"}, at(10))
    store.kv_put("other", "+15550003333", {"keyword": "STOP"}, None)
    few = [PHONE, "+15550002222", "+15550003333", "+15550009999"]
    assert store.kv_many("optout", few, at(5)) == {PHONE: {"keyword": "STOP"}, "+15550002222": {"keyword": "QUIT"}}
    assert store.kv_many("optout", few, at(11)) == {PHONE: {"keyword": "STOP"}}
    many = [f"+1555100{i:04d}" for i in range(30)] + [PHONE, PHONE]  # past the point reads: one partition read
    assert store.kv_many("optout", many, at(11)) == {PHONE: {"keyword": "STOP"}}
    assert store.kv_many("optout", [], at(0)) == {}


def test_the_summary_keeps_the_display_body_and_the_picture_count(store: Store) -> None:
    aliased = MessageRecord(
        "SMa1", "inbound", PHONE, OUR, DESK, "#B about my bill", at(1), {"displayBody": "about my bill", "media": []}
    )
    save(store, aliased)
    [conversation] = store.conversations(DESK)
    assert (conversation.last_body, conversation.last_display, conversation.last_media) == (
        "#B about my bill",
        "about my bill",
        0,
    )
    photo = MessageRecord(
        "SMa2", "inbound", PHONE, OUR, UNROUTED, "", at(2), {"displayBody": "", "media": [{"url": "/m/0"}] * 2}
    )
    save(store, photo)
    assert store.claim(PHONE, DESK, Event(DESK, "claimed", {"phone": PHONE}, at(3))) is not None
    [conversation] = store.conversations(DESK)
    assert (conversation.last_sid, conversation.last_display, conversation.last_media) == ("SMa2", "", 2)


def test_a_sqlite_deployment_starts_without_loading_the_azure_storage_sdks() -> None:
    """Each cold start pays for what `import function_app` loads; Table and Blob clients load only when used."""
    sdks = ("azure.core", "azure.data.tables", "azure.storage.blob", "relay.store.tables")
    probe = f"import sys, function_app; print([m for m in {sdks!r} if m in sys.modules])"
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no developer's settings: the embedded defaults, SQLite
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
