"""The address book on both backends: one row per number, replaced whole, found one by one or all at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.store import Store
from relay.store.contacts import POINT_READS, Contact

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_put_get_replace_delete(store: Store) -> None:
    assert store.contacts.put(Contact("+15550001111", "Ana Núñez", "prefers mornings", T0)) is True
    assert store.contacts.put(Contact("+15550001111", "Ana Nunez-Ortiz", None, T0 + timedelta(hours=1))) is False
    got = store.contacts.get("+15550001111")
    assert got == Contact("+15550001111", "Ana Nunez-Ortiz", None, T0 + timedelta(hours=1))
    assert store.contacts.get("+15550002222") is None
    assert store.contacts.delete("+15550001111") is True
    assert store.contacts.delete("+15550001111") is False
    assert store.contacts.get("+15550001111") is None


def test_all_by_name_and_many_numbers_at_once(store: Store) -> None:
    names = ["bob", "Álvaro", "alice", "Zoë", "<img src=x onerror=alert(1)>"]
    for i, name in enumerate(names):
        store.contacts.put(Contact(f"+1555000{i:04d}", name, f"note {i}", T0))
    assert [c.name for c in store.contacts.all()] == sorted(names, key=str.casefold)
    few = store.contacts.of_phones(["+15550000001", "+15550000003", "+15559999999"])
    assert {p: c.name for p, c in few.items()} == {"+15550000001": "Álvaro", "+15550000003": "Zoë"}
    many = [f"+1555000{i:04d}" for i in range(POINT_READS + 5)]  # past the point-read limit: one partition read
    assert sorted(store.contacts.of_phones(many)) == [f"+1555000{i:04d}" for i in range(5)]
