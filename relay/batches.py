"""A batch: the reminders of one imported list (or one "Remind again"), and how far their sending has got.

Progress is counted from the batch's scheduled items themselves, never kept as a counter, so it is right however
many instances send and whatever crashed. It is told live to the desk as a `batch` event at most once a second
per batch while the timer sends (a read of the whole batch per send would slow a fast pace), and once more when
the timer's run ends, so the last word is always the batch as it is.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import datetime
from typing import Any

from relay.clock import iso
from relay.errors import NotFound
from relay.notices import Notices
from relay.store import Store
from relay.store.scheduled import Scheduled

KIND = "batch"
_ID = re.compile(r"^B[0-9a-f]{24}$")
FAILED = frozenset({"failed", "opted_out"})
TELL_EVERY_SECONDS = 1.0


def new_id() -> str:
    return "B" + secrets.token_hex(12)


class Batches:
    def __init__(self, store: Store, notices: Notices) -> None:
        self._store = store
        self._notices = notices
        self._lock = threading.Lock()
        self._told: dict[str, float] = {}  # batch -> when this process last told it (monotonic)
        self._due: dict[str, str] = {}  # batch -> its desk: changed since it was last told

    def progress(self, desk: str, batch: str) -> dict[str, Any]:
        items = self._store.scheduled.of_batch(batch) if _ID.match(batch) else []
        if not items or owner(items[0]) != desk:
            raise NotFound("No such batch at this desk.", code="batch_not_found")
        return _progress(batch, items)

    def tell(self, desk: str, batch: str, at: datetime) -> None:
        """Now; the same progress is told once (its counts name the change)."""
        with self._lock:
            self._told[batch] = time.monotonic()
            self._due.pop(batch, None)
        items = self._store.scheduled.of_batch(batch)
        if items:
            progress = _progress(batch, items)
            change = "-".join(str(progress[k]) for k in ("total", "scheduled", "sent", "failed", "cancelled"))
            self._notices.tell(f"batch:{batch}", change, [desk], KIND, {**progress, "at": iso(at)}, at)

    def changed(self, desk: str, batch: str, at: datetime) -> None:
        """An item of the batch moved: told now unless it was told within the last second (then by `flush`)."""
        with self._lock:
            recent = time.monotonic() - self._told.get(batch, float("-inf")) < TELL_EVERY_SECONDS
            if recent:
                self._due[batch] = desk
        if not recent:
            self.tell(desk, batch, at)

    def flush(self, at: datetime) -> None:
        """What changed since it was last told, told now: the end of a timer run, the batch as it is."""
        with self._lock:
            due, self._due = self._due, {}
            self._told = {b: t for b, t in self._told.items() if time.monotonic() - t < 60}
        for batch, desk in due.items():
            self.tell(desk, batch, at)


def owner(item: Scheduled) -> str:
    """The desk that imported the batch: it follows the progress, whichever desks the rows are for."""
    return str(item.data.get("batchDesk") or item.desk)


def _progress(batch: str, items: list[Scheduled]) -> dict[str, Any]:
    states = [i.state for i in items]
    waiting = sum(1 for s in states if s in ("scheduled", "sending"))
    sent = states.count("sent")
    failed = sum(1 for s in states if s in FAILED)
    cancelled = states.count("cancelled")
    return {
        "batch": batch,
        "desk": owner(items[0]),
        "total": len(items),
        "scheduled": waiting,
        "sent": sent,
        "failed": failed,
        "cancelled": cancelled,
        "done": waiting == 0,
    }
