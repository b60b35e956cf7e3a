"""Reminders on both backends: inserted once, found by id and by phone, changed by compare-and-set."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relay.store import Store
from relay.store.reminders import Reminder
from relay.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PHONE = "+15550001111"
OUR = "+15559990000"


def reminder(rid: str, phone: str = PHONE, at: datetime = T0, state: str = "sent") -> Reminder:
    return Reminder(rid, phone, OUR, "reception", state, at, at if state != "scheduled" else None, rid, {"n": 1})


def test_added_once_and_found_by_id_and_phone(store: Store) -> None:
    first = store.reminders.add(reminder("SMa"))
    assert first is not None and first.version
    assert store.reminders.add(reminder("SMa", state="confirmed")) is None
    store.reminders.add(reminder("SMb", at=T0 + timedelta(minutes=1)))
    store.reminders.add(reminder("SMc", phone="+15550002222"))
    got = store.reminders.get("SMa")
    assert got is not None
    assert (got.phone, got.our_side, got.desk, got.state, got.sent_at, got.data) == (
        PHONE,
        OUR,
        "reception",
        "sent",
        T0,
        {"n": 1},
    )
    assert [r.id for r in store.reminders.of_phone(PHONE)] == ["SMa", "SMb"]
    assert store.reminders.get("SMzz") is None and store.reminders.of_phone("+15550003333") == []
    scheduled = store.reminders.add(reminder("SQd", state="scheduled"))
    assert scheduled is not None and scheduled.sent_at is None


def test_a_stale_version_loses_and_awaiting_lists_unanswered_ones(store: Store) -> None:
    base = store.reminders.add(reminder("SMa"))
    assert base is not None
    store.reminders.add(reminder("SMb", at=T0 + timedelta(hours=3)))
    store.reminders.add(reminder("SMs", state="scheduled"))
    assert [r.id for r in store.reminders.awaiting(T0 + timedelta(hours=1), 10)] == ["SMa"]
    moved = store.reminders.put(replace(base, state="confirmed", data={"by": "Maria"}), base)
    assert moved is not None
    assert store.reminders.put(replace(base, state="declined"), base) is None
    got = store.reminders.get("SMa")
    assert got is not None and (got.state, got.data) == ("confirmed", {"by": "Maria"})
    assert store.reminders.awaiting(T0 + timedelta(hours=1), 10) == []
    assert [r.id for r in store.reminders.awaiting(T0 + timedelta(hours=4), 10)] == ["SMb"]


def test_concurrent_changes_have_exactly_one_winner(store: Store) -> None:
    base = store.reminders.add(reminder("SMa"))
    assert base is not None
    states = ["confirmed", "declined", "failed", "opted_out", "cancelled"]
    barrier = threading.Barrier(len(states), timeout=10)

    def move(state: str) -> Reminder | None:
        barrier.wait()
        return store.reminders.put(replace(base, state=state), base)

    with ThreadPoolExecutor(len(states)) as pool:
        results = list(pool.map(move, states, timeout=30))
    winners = [s for s, r in zip(states, results, strict=True) if r is not None]
    assert len(winners) == 1
    got = store.reminders.get("SMa")
    assert got is not None and got.state == winners[0]


def test_a_desks_day_by_appointment_time(store: Store) -> None:
    def booked(rid: str, appointment: str | None, desk: str = "reception") -> Reminder:
        return replace(reminder(rid, state="scheduled"), desk=desk, appointment=appointment)

    for added in (
        booked("SQlate", "2026-03-02T16:30"),
        booked("SQearly", "2026-03-02T08:05"),
        booked("SQnext", "2026-03-03T00:00"),
        booked("SQbefore", "2026-03-01T23:59"),
        booked("SQother", "2026-03-02T09:00", desk="billing"),
        booked("SMnone", None),
    ):
        store.reminders.add(added)
    day = store.reminders.of_day("reception", "2026-03-02")
    assert [(r.id, r.appointment) for r in day] == [("SQearly", "2026-03-02T08:05"), ("SQlate", "2026-03-02T16:30")]
    moved = store.reminders.put(replace(day[0], state="sent"), day[0])
    assert moved is not None and moved.appointment == "2026-03-02T08:05"
    assert [r.state for r in store.reminders.of_day("reception", "2026-03-02")] == ["sent", "scheduled"]
    assert [r.id for r in store.reminders.of_day("billing", "2026-03-02")] == ["SQother"]
    got = store.reminders.get("SMnone")
    assert got is not None and got.appointment is None


def test_a_store_from_before_appointments_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE reminders (
            id TEXT PRIMARY KEY, phone TEXT NOT NULL, our_side TEXT NOT NULL, desk TEXT NOT NULL, state TEXT NOT NULL,
            created_at REAL NOT NULL, sent_at REAL, message_sid TEXT, data TEXT NOT NULL, version INTEGER NOT NULL);
        INSERT INTO reminders VALUES ('SMold', '+15550001111', '+15559990000', 'reception', 'sent', 1, 1, 'SMold',
            '{}', 1);"""
    )
    old.close()
    for _ in range(2):  # and opening it again changes nothing
        store = SqliteStore(str(path))
        try:
            got = store.reminders.get("SMold")
            assert got is not None and (got.state, got.appointment) == ("sent", None)
            store.reminders.add(replace(reminder("SQnew", state="scheduled"), appointment="2026-03-02T08:00"))
            assert [r.id for r in store.reminders.of_day("reception", "2026-03-02")] == ["SQnew"]
        finally:
            store.close()
