"""Events about something other than a message (a reminder's state, a contact's name): stored, then published.

The store records events only with a message or a status, so a notice is kept as a status of its subject, one
per desk told: durable before it is published, replayed by the catch-up feed, and recorded once per change.
Status names that are not delivery statuses are skipped wherever a message's status is shown.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from relay.outbox import Outbox
from relay.store import Event, StatusRecord, Store, StoreError

log = logging.getLogger("relay.notices")


class Notices:
    def __init__(self, store: Store, outbox: Outbox) -> None:
        self._store = store
        self._outbox = outbox

    def tell(
        self, subject: str, change: str, desks: list[str], kind: str, payload: dict[str, Any], at: datetime
    ) -> None:
        """`change` names this change of `subject` uniquely, so a repeat of it is recorded (and told) once."""
        for desk in dict.fromkeys(desks):
            record = StatusRecord(subject, f"{change}|{desk}", None, None, at)
            try:
                event = self._store.add_status(record, Event(desk, kind, payload, at))
            except StoreError:
                log.exception("%s of %s stored, but desk %s could not be told", kind, subject, desk)
                continue
            if event is not None:
                self._outbox.publish(event)
