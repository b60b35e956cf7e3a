"""The conversation store contract: one interface, an SQLite and an Azure Table implementation.

Times are passed in, never read from a clock here, so tests control them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.desks import UNROUTED as UNROUTED

if TYPE_CHECKING:
    from relay.store.contacts import ContactStore
    from relay.store.desks import DeskStore
    from relay.store.owners import OwnerStore
    from relay.store.reminders import ReminderStore
    from relay.store.scheduled import ScheduledStore
    from relay.store.search import SearchStore
    from relay.store.staff import SessionStore
    from relay.store.templates import TemplateStore


@dataclass(frozen=True)
class MessageRecord:
    sid: str
    direction: str  # "inbound", "outbound", or "event" (a line in the thread such as "Now with Billing")
    phone: str  # the other party, E.164
    our_side: str  # our number, or the Messaging Service SID
    web_app_id: str  # the desk that owned the conversation when it happened, or UNROUTED
    body: str
    created_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusRecord:
    sid: str
    status: str
    error_code: str | None
    error_message: str | None
    at: datetime


@dataclass(frozen=True)
class Event:
    """One thing a desk is told: stored first, published afterwards, replayed by the catch-up feed."""

    audience: str  # webAppId or UNROUTED
    kind: str  # inbound, outbound, status, claimed, reminder
    payload: dict[str, Any]
    created_at: datetime
    key: str = ""  # the cursor, assigned by the store
    published: bool = False


@dataclass(frozen=True)
class EventPage:
    """A page of the catch-up feed and where the next page starts (docs/catch-up.md)."""

    events: list[Event]
    cursor: str | None  # never past an event that can still commit below it


@dataclass(frozen=True)
class Heartbeat:
    """What a real write and read of a heartbeat row tells the health check."""

    store_clock: datetime | None  # the store's own time at the write, where it keeps one (Table Storage)
    wal_bytes: int | None  # SQLite's write-ahead log, which the checkpointer keeps bounded


@dataclass(frozen=True)
class Conversation:
    web_app_id: str
    phone: str
    our_side: str
    last_sid: str
    last_body: str
    last_direction: str
    last_at: datetime
    unread: int
    done: bool = False  # marked done by the desk; the patient's next reply reopens it
    last_display: str | None = None  # the last body as the list shows it (no routing alias); None: stored before
    last_media: int = 0  # how many pictures the last message carried


def reopens(message: MessageRecord, audience: str) -> bool:
    """A done conversation opens again for a reply from the patient, and for the desk a change of owner hands it
    to (its line is stored for that desk): each is something the desk has not seen to."""
    return message.direction == "inbound" or (message.direction == "event" and audience == message.web_app_id)


def shown_in_list(message: MessageRecord) -> tuple[str, int]:
    """What a conversation list shows of its last message: the body without the alias that routed it, and how
    many attachments it had (an MMS with no text would otherwise be a blank row)."""
    display = message.payload.get("displayBody")
    media = message.payload.get("media")
    return (display if isinstance(display, str) else message.body), (len(media) if isinstance(media, list) else 0)


class StoreError(Exception):
    """The store could not be reached or refused the operation."""


class Store(Protocol):
    """Messages, statuses, conversation summaries, events and small state here; desks, conversation owners and
    staff sessions in concept stores of their own, on the same backend."""

    desks: DeskStore
    owners: OwnerStore
    staff: SessionStore
    reminders: ReminderStore
    contacts: ContactStore
    scheduled: ScheduledStore
    templates: TemplateStore
    search: SearchStore
    # Seconds the outbox may gather acknowledgements before marking them published in one call: 0 where a write
    # is cheap; on Table Storage, where each is a billed round trip, well under the outbox timer's minimum age.
    mark_window: float

    def save_message(self, message: MessageRecord, event: Event) -> Event | None:
        """Insert once per MessageSid (conditionally, never check-then-insert), with its pending event.

        Returns the stored event (its key set), or None for a duplicate, which changes nothing."""

    def save_line(self, message: MessageRecord, events: list[Event]) -> list[Event] | None:
        """`save_message` for a line in the thread that several desks are told of (a change of owner): one
        event per desk, and each desk's conversation summary updated. None for a duplicate."""

    def get_message(self, sid: str) -> MessageRecord | None: ...

    def add_status(self, status: StatusRecord, event: Event) -> Event | None:
        """Insert once per (MessageSid, status) with its event; None for a duplicate."""

    def statuses(self, sid: str) -> list[StatusRecord]:
        """In the order they were recorded."""

    def statuses_of(self, sids: list[str]) -> dict[str, list[StatusRecord]]:
        """`statuses` for a page of messages in as few round trips as the backend allows."""

    def history(
        self, phone: str, before: str | None, limit: int, *, until: datetime | None = None, audience: str | None = None
    ) -> tuple[list[MessageRecord], str | None]:
        """A phone's messages newest first, `limit` at most, none after `until`, and only those stored for
        `audience` when given; returns the page and the cursor for the next older page."""

    def conversations(self, web_app_id: str) -> list[Conversation]:
        """Newest activity first."""

    def mark_read(self, web_app_id: str, phone: str) -> None: ...

    def set_done(self, web_app_id: str, phone: str, done: bool) -> bool | None:
        """Mark a desk's conversation done or open again: None when the desk has no such conversation, else
        whether that changed anything. An inbound message, or a change of owner to the desk, reopens it in the
        write that updates the summary."""

    def claim(self, phone: str, web_app_id: str, event: Event) -> Event | None:
        """Move an unrouted conversation's summary to a desk; None when it was not unrouted (already claimed)."""

    def events_after(self, audiences: list[str], after: str | None, limit: int) -> EventPage:
        """Oldest first, strictly after the cursor, which only this store's pages give out (ValueError for any
        other); each event is handed out once by a reader that follows the cursors, and none is ever skipped."""

    def pending_events(self, created_before: datetime, limit: int) -> list[Event]: ...

    def mark_soon(self, event: Event) -> None:
        """The outbox will mark this event published within two mark windows; a backend may write the mark sooner,
        inside a write it makes anyway. In memory only: it runs on the MQTT client's network thread."""

    def mark_published(self, *events: Event) -> None:
        """Several at once where the backend can, so acknowledgements do not queue on the write lock."""

    def kv_get(self, namespace: str, key: str, now: datetime) -> dict[str, Any] | None:
        """None when absent or expired."""

    def kv_many(self, namespace: str, keys: list[str], now: datetime) -> dict[str, dict[str, Any]]:
        """`kv_get` for many keys at once (a list's worth), as few round trips as the backend allows."""

    def kv_put(self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None) -> None: ...

    def kv_insert(
        self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None, now: datetime
    ) -> bool:
        """Conditional insert; an expired entry counts as absent. False when a live one exists."""

    def kv_delete(self, namespace: str, key: str) -> None: ...

    def kv_expired(self, namespace: str, now: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Entries of a namespace whose expiry has passed, for sweeps that must undo something elsewhere."""

    def record_hit(self, namespace: str, key: str, at: datetime) -> str:
        """Append one attempt; counters are rows, so concurrent instances never lose an increment. Returns the
        hit's id, for `drop_hit`."""

    def drop_hit(self, namespace: str, key: str, hit: str) -> None:
        """Take back a hit that was refused, so it holds no place under a limit; gone already is fine."""

    def count_hits(self, namespace: str, key: str, since: datetime) -> tuple[int, datetime | None]:
        """How many hits since `since`, and the oldest of them."""

    def purge(self, before: datetime) -> int:
        """Delete messages, statuses, events and hits older than `before`; returns messages deleted."""

    def ping(self) -> None:
        """Raise StoreError when the store is unreachable."""

    def heartbeat(self, key: str, now: datetime) -> Heartbeat:
        """Write this instance's heartbeat row and read it back; StoreError when either fails."""

    def close(self) -> None: ...
