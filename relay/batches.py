"""A batch: the reminders of one imported list (or one "Remind again"), and how far their sending has got.

Progress is counted from the batch's scheduled items themselves, never kept as a counter, so it is right however
many instances send and whatever crashed; each change is told live to the desk as a `batch` event.
"""

from __future__ import annotations

import re
import secrets
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


def new_id() -> str:
    return "B" + secrets.token_hex(12)


class Batches:
    def __init__(self, store: Store, notices: Notices) -> None:
        self._store = store
        self._notices = notices

    def progress(self, desk: str, batch: str) -> dict[str, Any]:
        items = self._store.scheduled.of_batch(batch) if _ID.match(batch) else []
        if not items or owner(items[0]) != desk:
            raise NotFound("No such batch at this desk.", code="batch_not_found")
        return _progress(batch, items)

    def tell(self, desk: str, batch: str, change: str, at: datetime) -> None:
        """`change` names what moved (an item and its new state), so a repeat is told once."""
        items = self._store.scheduled.of_batch(batch)
        if items:
            payload = {**_progress(batch, items), "at": iso(at)}
            self._notices.tell(f"batch:{batch}", change, [desk], KIND, payload, at)


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
