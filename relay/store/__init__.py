"""Chooses the store backend from RELAY_STORE: a storage connection string means Azure Tables."""

from __future__ import annotations

from relay.store.base import (
    UNROUTED,
    Conversation,
    Event,
    EventPage,
    Heartbeat,
    MessageRecord,
    StatusRecord,
    Store,
    StoreError,
)

__all__ = [
    "UNROUTED",
    "Conversation",
    "Event",
    "EventPage",
    "Heartbeat",
    "MessageRecord",
    "StatusRecord",
    "Store",
    "StoreError",
    "open_store",
]


def is_table_connection_string(value: str) -> bool:
    return value.startswith("UseDevelopmentStorage=") or "AccountName=" in value or "TableEndpoint=" in value


def open_store(relay_store: str) -> Store:
    if is_table_connection_string(relay_store):
        from relay.store.tables import TableStore

        return TableStore(relay_store)
    from relay.store.sqlite import SqliteStore

    return SqliteStore(relay_store)
