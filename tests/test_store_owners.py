"""Conversation owners on both backends: compare-and-set, so two simultaneous changes have one winner."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from relay.store import Store
from relay.store.owners import DONE, Owner, first_owner

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PHONE = "+15550001111"
OUR = "+15559990000"


def test_first_owner_is_an_insert_and_a_second_insert_loses(store: Store) -> None:
    mine = store.owners.put(first_owner(PHONE, OUR, "reception", T0), None)
    assert mine is not None and mine.version
    assert store.owners.put(first_owner(PHONE, OUR, "billing", T0), None) is None
    [row] = store.owners.of_phone(PHONE)
    assert (row.desk, row.since, row.state, row.readers) == ("reception", T0, "open", {"reception": None})
    assert store.owners.of_phone("+15550002222") == []


def test_moving_ends_the_old_desks_reading_and_a_stale_version_loses(store: Store) -> None:
    first = store.owners.put(first_owner(PHONE, OUR, "reception", T0), None)
    assert first is not None
    moved_at = T0 + timedelta(hours=1)
    moved = store.owners.put(first.moved_to("billing", moved_at), first)
    assert moved is not None
    assert store.owners.put(first.moved_to("nurse", moved_at), first) is None  # the version it read is gone
    [row] = store.owners.of_phone(PHONE)
    assert row.desk == "billing"
    assert row.readers == {"reception": moved_at.timestamp(), "billing": None}
    assert row.sees("reception", moved_at) and not row.sees("reception", moved_at + timedelta(seconds=1))
    assert row.sees("billing", T0 - timedelta(days=30)) and not row.sees("nurse", T0)

    done = store.owners.put(replace(row, state=DONE), row)
    assert done is not None and store.owners.of_phone(PHONE)[0].state == DONE


def test_concurrent_moves_have_exactly_one_winner(store: Store) -> None:
    base = store.owners.put(first_owner(PHONE, OUR, "reception", T0), None)
    assert base is not None
    desks = ["billing", "nurse", "lab", "xray"]
    barrier = threading.Barrier(len(desks), timeout=10)

    def move(desk: str) -> Owner | None:
        barrier.wait()
        return store.owners.put(base.moved_to(desk, T0 + timedelta(minutes=1)), base)

    with ThreadPoolExecutor(len(desks)) as pool:
        results = list(pool.map(move, desks, timeout=30))
    winners = [d for d, r in zip(desks, results, strict=True) if r is not None]
    assert len(winners) == 1
    assert store.owners.of_phone(PHONE)[0].desk == winners[0]
