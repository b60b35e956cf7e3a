"""Who a conversation belongs to, and every change of hands, each told to both desks as a line in the thread.

The owner is set by the first outbound message, a claim, an alias reply or a transfer, and does not expire.
A desk reads a conversation's history up to the moment it let go of it; the new owner reads all of it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum, auto
from typing import Any

from relay.clock import Clock, iso
from relay.directory import DeskDirectory
from relay.errors import Conflict
from relay.outbox import Outbox
from relay.store import UNROUTED, Event, MessageRecord, Store
from relay.store.owners import DONE, OPEN, Owner, first_owner
from relay.tokens import Staff

log = logging.getLogger("relay.ownership")

ATTEMPTS = 20
# A hand-over is dated just before the message that caused it, so the desk that let go keeps the line that says
# so, and not the message after it.
JUST_BEFORE = timedelta(microseconds=1)


class Unread(Enum):
    """Not read yet in this request (None would mean: read, and there is no row)."""

    UNREAD = auto()


UNREAD = Unread.UNREAD


@dataclass(frozen=True)
class Visibility:
    allowed: bool
    until: datetime | None = None  # None: everything so far and from now on


class Ownership:
    def __init__(self, store: Store, directory: DeskDirectory, outbox: Outbox, clock: Clock) -> None:
        self._store = store
        self._directory = directory
        self._outbox = outbox
        self._clock = clock

    def current(self, phone: str, our_sides: list[str]) -> Owner | None:
        """The row for the first of our sides that has one."""
        return _first(self._store.owners.of_phone(phone), our_sides)

    def view(self, desk: str, phone: str, our_side: str) -> tuple[Owner | None, Visibility]:
        """The conversation's row and how much of it `desk` may read, from one read of the store."""
        rows = self._store.owners.of_phone(phone)
        return _first(rows, [our_side]), self._visibility(desk, rows)

    def live_owner(self, owner: Owner | None) -> str | None:
        """The owning desk, if it is still a live desk (an archived desk's conversations are unrouted)."""
        if owner is None or owner.desk is None:
            return None
        desk = self._directory.get(owner.desk)
        return owner.desk if desk is not None and not desk.archived else None

    def desk_json(self, desk: str) -> dict[str, str]:
        found = self._directory.get(desk)
        return found.to_json() if found else {"id": desk, "name": desk, "alias": ""}

    def visibility(self, desk: str, phone: str) -> Visibility:
        """How much of a phone's history a desk may read, over all our sides."""
        return self._visibility(desk, self._store.owners.of_phone(phone))

    def _visibility(self, desk: str, rows: list[Owner]) -> Visibility:
        readers = [o.readers for o in rows if desk in o.readers]
        if not readers:
            return Visibility(False)
        ends = [r[desk] for r in readers]
        if any(end is None for end in ends):
            return Visibility(True)
        return Visibility(True, datetime.fromtimestamp(max(e for e in ends if e is not None), self._clock.now().tzinfo))

    def may_read(self, desk: str, message: MessageRecord) -> bool:
        if message.web_app_id == desk:
            return True
        seen = self.visibility(desk, message.phone)
        return seen.allowed and (seen.until is None or message.created_at <= seen.until)

    def take(
        self,
        phone: str,
        our_side: str,
        desk: str | None,
        at: datetime,
        *,
        expect: str | None = None,
        seen: Owner | Unread | None = UNREAD,
    ) -> Owner:
        """Move ownership to `desk` (None: nobody) by compare-and-set; with `expect`, only away from that desk
        (409 not_owner otherwise, which is what the loser of two simultaneous transfers gets). `seen` is the row
        as the caller read it in this request (None: there was none), tried first instead of a second read: the
        compare-and-set says if it changed since. A row that would not change is not written."""
        for _ in range(ATTEMPTS):
            current = self.current(phone, [our_side]) if isinstance(seen, Unread) else seen
            seen = UNREAD
            if expect is not None and (current is None or self.live_owner(current) != expect):
                raise Conflict("This conversation is not with your desk any more.", code="not_owner")
            new = current.moved_to(desk, at) if current else first_owner(phone, our_side, desk or UNROUTED, at)
            if (current is None and desk is None) or new == current:
                return new
            stored = self._store.owners.put(new, current)
            if stored is not None:
                return stored
        raise Conflict("This conversation is changing hands right now; try again.", code="not_owner")

    def set_state(self, phone: str, our_side: str, state: str) -> None:
        """Open or done; a lost race is retried, and a conversation nobody owns has no state to keep."""
        for _ in range(ATTEMPTS):
            current = self.current(phone, [our_side])
            if current is None or current.state == state:
                return
            if self._store.owners.put(_with_state(current, state), current) is not None:
                return

    def reopen(self, owner: Owner) -> None:
        if owner.state == DONE:
            self.set_state(owner.phone, owner.our_side, OPEN)

    def hand_over(
        self,
        phone: str,
        our_side: str,
        to: str | None,
        at: datetime,
        *,
        reason: str,
        by: Staff | None = None,
        note: str | None = None,
        expect: str | None = None,
    ) -> Owner:
        """Change owner and put the line saying so in both desks' threads, live."""
        before = self.current(phone, [our_side])
        previous = self.live_owner(before)
        owner = self.take(phone, our_side, to, at, expect=expect)
        self._line(phone, our_side, previous, to, at, reason=reason, by=by, note=note)
        return owner

    def _line(
        self,
        phone: str,
        our_side: str,
        previous: str | None,
        to: str | None,
        at: datetime,
        *,
        reason: str,
        by: Staff | None,
        note: str | None,
    ) -> None:
        to_name = self._directory.name_of(to) if to else "New conversations"
        body = f"Now with {to_name}" + (f" ({by.name})" if by else "")
        sid = "EV" + secrets.token_hex(16)
        payload: dict[str, Any] = {
            "MessageSid": sid,
            "direction": "event",
            "phone": phone,
            "Body": body,
            "reason": reason,
            "from": self.desk_json(previous) if previous else None,
            "to": self.desk_json(to) if to else None,
            "by": by.to_json() if by else None,
            "note": note,
            "at": iso(at),
        }
        audience = to or UNROUTED
        record = MessageRecord(sid, "event", phone, our_side, audience, body, at, payload)
        desks = [audience] + ([previous] if previous and previous != audience else [])
        for event in self._store.save_line(record, [Event(d, "owner", payload, at) for d in desks]) or []:
            self._outbox.publish(event)


def _first(rows: list[Owner], our_sides: list[str]) -> Owner | None:
    by_side = {o.our_side: o for o in rows}
    return next((by_side[s] for s in our_sides if s and s in by_side), None)


def _with_state(owner: Owner, state: str) -> Owner:
    return replace(owner, state=state)
