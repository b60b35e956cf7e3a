"""The desks store on both backends: ids are never reused, archived desks are kept, changes are kept."""

from __future__ import annotations

from relay.desks import Desk
from relay.store import Store


def test_add_get_list_in_creation_order_and_ids_never_reused(store: Store) -> None:
    assert store.desks.add(Desk("reception", "Reception", "R"))
    assert store.desks.add(Desk("billing", "Billing", "B"))
    assert store.desks.add(Desk("nurse_line", "Nurse line", "N"))
    assert [d.id for d in store.desks.all()] == ["reception", "billing", "nurse_line"]
    assert store.desks.get("billing") == Desk("billing", "Billing", "B")
    assert store.desks.get("nobody") is None

    store.desks.update(Desk("billing", "Billing", "B", archived=True))
    assert not store.desks.add(Desk("billing", "Billing again", "BA"))
    assert store.desks.get("billing") == Desk("billing", "Billing", "B", archived=True)


def test_rename_and_new_alias_are_kept(store: Store) -> None:
    store.desks.add(Desk("reception", "Reception", "R"))
    store.desks.update(Desk("reception", "Front desk", "FD"))
    assert store.desks.all() == [Desk("reception", "Front desk", "FD")]
