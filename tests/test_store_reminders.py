"""Reminders on both backends: inserted once, found by id and by phone, changed by compare-and-set."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from relay.store import Store
from relay.store.reminders import Reminder

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
