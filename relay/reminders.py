"""Reminders: a message sent with "confirm": true, and what became of it. Core, whatever KEYWORD_HANDLERS says.

C, Y or CONFIRM confirm it and N or NO decline it; YES and CANCEL never do (Twilio's opt-in and opt-out words,
which Twilio answers itself). A STOP makes it opted_out, a failed delivery failed, and no answer within
REMINDER_NO_ANSWER_HOURS no_answer. Staff may set a state by hand, with a note; every change is stored with who
made it and told live to the desk that owns the conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from relay.clock import Clock, iso
from relay.errors import BadRequest, NotFound
from relay.keywords import KeywordMessage, Outcome
from relay.notices import Notices
from relay.ownership import Ownership
from relay.settings import Settings
from relay.store import Store
from relay.store.reminders import Reminder
from relay.tokens import Staff

log = logging.getLogger("relay.reminders")

CONFIRM_WORDS = frozenset({"C", "Y", "CONFIRM"})
DECLINE_WORDS = frozenset({"N", "NO"})
STATES = ("scheduled", "sent", "confirmed", "declined", "no_answer", "opted_out", "failed", "cancelled")
OPEN = frozenset({"sent", "no_answer"})  # an answer still settles these
LIVE = OPEN | {"scheduled"}  # a STOP ends these
STAFF_STATES = frozenset({"sent", "confirmed", "declined", "no_answer", "cancelled"})
FAILED_STATUSES = frozenset({"failed", "undelivered"})
MAX_NOTE = 500
ATTEMPTS = 20
HANDLER = "reminder"
SWEEP_BATCH = 500


class Reminders:
    def __init__(self, settings: Settings, store: Store, notices: Notices, clock: Clock, ownership: Ownership) -> None:
        self._settings = settings
        self._store = store
        self._notices = notices
        self._clock = clock
        self._ownership = ownership

    def sent(self, reminder_id: str, message_sid: str, phone: str, our_side: str, desk: str, at: datetime) -> None:
        """A reminder went out: it now waits for an answer. A scheduled one moves on from `scheduled`."""
        existing = self._store.reminders.get(reminder_id)
        if existing is None:
            new = Reminder(reminder_id, phone, our_side, desk, "sent", at, at, message_sid, {"updatedAt": iso(at)})
            if self._store.reminders.add(new) is not None:
                return
            existing = self._store.reminders.get(reminder_id)
        if existing is not None:
            self._move(existing, "sent", at, changes={"sent_at": at, "message_sid": message_sid})

    def scheduled(
        self, reminder_id: str, phone: str, our_side: str, desk: str, at: datetime, appointment: str | None = None
    ) -> None:
        """A reminder to be sent later (scheduled, or from an imported list, with its appointment's local time)."""
        new = Reminder(reminder_id, phone, our_side, desk, "scheduled", at, data={"updatedAt": iso(at)})
        self._store.reminders.add(replace(new, appointment=appointment))

    def again(self, reminder: Reminder, at: datetime) -> bool:
        """ "Remind again": an unanswered reminder goes once more; False when it was answered meanwhile."""
        return self._move(reminder, "scheduled", at, only_from=frozenset({"no_answer"})) is not None

    def settle(self, reminder_id: str, state: str, at: datetime) -> None:
        """A scheduled reminder that will not go: cancelled, opted out, failed."""
        reminder = self._store.reminders.get(reminder_id)
        if reminder is not None and reminder.state == "scheduled":
            self._move(reminder, state, at)

    def answer_handler(self, message: KeywordMessage, state: Mapping[str, Any]) -> Outcome | None:
        """Runs before any handler of KEYWORD_HANDLERS. Side-effect free until `after`, as handlers must be."""
        word = message.word
        if word not in CONFIRM_WORDS | DECLINE_WORDS:
            return None
        waiting = [r for r in self._store.reminders.of_phone(message.phone) if r.state in OPEN]
        ours = [r for r in waiting if r.our_side in (message.our_side, message.params.get("To"))] or waiting
        if not ours:
            return None
        reminder = max(ours, key=lambda r: r.sent_at or r.created_at)
        confirmed = word in CONFIRM_WORDS
        reply = self._settings.reminder_confirmed_text if confirmed else self._settings.reminder_declined_text
        answer = {"answerSid": message.params.get("MessageSid"), "lastReply": message.params.get("Body", "")}

        def after() -> None:
            self._move(reminder, "confirmed" if confirmed else "declined", message.at, info=answer)

        # Not handled: the answer still shows in the desk's conversation, next to the reminder it settles.
        return Outcome(reply=reply, handled=False, after=after)

    def opted_out(self, phone: str, at: datetime) -> None:
        for reminder in self._store.reminders.of_phone(phone):
            if reminder.state in LIVE:
                self._move(reminder, "opted_out", at)

    def delivery(self, reminder_id: str, status: str, at: datetime) -> None:
        if status not in FAILED_STATUSES:
            return
        reminder = self._store.reminders.get(reminder_id)
        if reminder is not None and reminder.state in OPEN:
            self._move(reminder, "failed", at, info={"deliveryStatus": status})

    def sweep(self) -> int:
        """Reminders unanswered for REMINDER_NO_ANSWER_HOURS become no_answer; returns how many."""
        now = self._clock.now()
        cutoff = now - timedelta(hours=self._settings.reminder_no_answer_hours)
        moved = 0
        for reminder in self._store.reminders.awaiting(cutoff, SWEEP_BATCH):
            if self._move(reminder, "no_answer", now, only_from=frozenset({"sent"})) is not None:
                moved += 1
        return moved

    def set_by_staff(self, desk: str, staff: Staff, reminder_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        state, note = body.get("state"), body.get("note")
        if not isinstance(state, str) or state not in STAFF_STATES:  # a list or object is unhashable
            allowed = ", ".join(sorted(STAFF_STATES))
            raise BadRequest(f"'state' must be one of {allowed}.", code="invalid_state")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise BadRequest(f"'note' must be text of at most {MAX_NOTE} characters.", code="invalid_note")
        reminder = self._visible(desk, reminder_id)
        info: dict[str, Any] = {"note": (note or "").strip() or None}
        moved = self._move(reminder, str(state), self._clock.now(), by=staff, info=info, force=True)
        if moved is None:
            raise NotFound("No such reminder for this desk.", code="reminder_not_found")
        return self.to_json(moved)

    def get(self, desk: str, reminder_id: str) -> dict[str, Any]:
        return self.to_json(self._visible(desk, reminder_id))

    def state_of(self, reminder_id: str) -> str | None:
        found = self._store.reminders.get(reminder_id)
        return found.state if found else None

    def _visible(self, desk: str, reminder_id: str) -> Reminder:
        """The desk that sent it, or the one that owns the conversation now, may read and change it."""
        reminder = self._store.reminders.get(reminder_id) if 0 < len(reminder_id) <= 64 else None
        if reminder is None or desk not in (reminder.desk, self._owner(reminder)):
            raise NotFound("No such reminder for this desk.", code="reminder_not_found")
        return reminder

    def _owner(self, reminder: Reminder) -> str:
        owner = self._ownership.live_owner(self._ownership.current(reminder.phone, [reminder.our_side]))
        return owner or reminder.desk

    def _move(
        self,
        reminder: Reminder,
        state: str,
        at: datetime,
        *,
        by: Staff | None = None,
        info: dict[str, Any] | None = None,
        changes: dict[str, Any] | None = None,
        only_from: frozenset[str] | None = None,
        force: bool = False,
    ) -> Reminder | None:
        """Compare-and-set, re-reading after a lost race; an automatic change applies only from the states it
        was decided in (a reminder staff cancelled meanwhile stays cancelled). Then the event, durably first."""
        current: Reminder | None = reminder
        allowed = only_from or frozenset({reminder.state})
        for _ in range(ATTEMPTS):
            if current is None or (not force and current.state not in allowed):
                return None
            data = {**current.info, **(info or {}), "by": by.to_json() if by else None, "updatedAt": iso(at)}
            new = replace(current, state=state, data=data, **(changes or {}))
            stored = self._store.reminders.put(new, current)
            if stored is not None:
                self._tell(stored, current.state, at)
                return stored
            current = self._store.reminders.get(reminder.id)
        log.warning("reminder %s kept changing; %s not applied", reminder.id, state)
        return None

    def _tell(self, reminder: Reminder, previous: str, at: datetime) -> None:
        payload = {**self.to_json(reminder), "MessageSid": reminder.message_sid or reminder.id, "previous": previous}
        subject = reminder.message_sid or reminder.id  # a status of the reminder's message, as its history
        self._notices.tell(subject, f"reminder-{reminder.version}", [self._owner(reminder)], "reminder", payload, at)

    @staticmethod
    def to_json(reminder: Reminder) -> dict[str, Any]:
        info = reminder.info
        return {
            "id": reminder.id,
            "sid": reminder.message_sid,
            "phone": reminder.phone,
            "desk": reminder.desk,
            "state": reminder.state,
            "sentAt": iso(reminder.sent_at) if reminder.sent_at else None,
            "updatedAt": info.get("updatedAt"),
            "by": info.get("by"),
            "note": info.get("note"),
            "lastReply": info.get("lastReply"),
            "answerSid": info.get("answerSid"),
            "appointment": reminder.appointment,
        }
