"""The reminders board: what became of a desk's reminders for one appointment day, with counts per state, and
the day as CSV for the clinic's spreadsheet (names, replies and notes neutralised against formulas)."""

from __future__ import annotations

from typing import Any

from relay.bulk import parse_day
from relay.contacts import Contacts
from relay.csvfiles import write_table
from relay.errors import BadRequest
from relay.reminders import STATES, Reminders
from relay.store import Store
from relay.store.reminders import Reminder

COLUMNS = ("time", "name", "phone", "state", "last_reply", "note", "updated_at")


class Board:
    def __init__(self, store: Store, contacts: Contacts) -> None:
        self._store = store
        self._contacts = contacts

    def day(self, desk: str, day_raw: object, state: object = None) -> dict[str, Any]:
        """Counts cover the whole day whatever the filter, so the header reads the same on every tab."""
        if state is not None and (not isinstance(state, str) or state not in STATES):
            raise BadRequest(f"'state' must be one of {', '.join(STATES)}.", code="invalid_state")
        day = parse_day(day_raw).isoformat()
        found = self._store.reminders.of_day(desk, day)
        counts = {s: 0 for s in STATES}
        for r in found:
            counts[r.state] = counts.get(r.state, 0) + 1
        names = self._contacts.names([r.phone for r in found])
        rows = [_row(r, names.get(r.phone)) for r in found if state in (None, r.state)]
        return {"date": day, "total": len(found), "counts": counts, "reminders": rows}

    def export_csv(self, desk: str, day_raw: object) -> bytes:
        board = self.day(desk, day_raw)
        rows = (
            [
                r["time"],
                (r["contact"] or {}).get("name"),
                r["phone"],
                r["state"],
                r["lastReply"],
                r["note"],
                r["updatedAt"],
            ]
            for r in board["reminders"]
        )
        return write_table(COLUMNS, rows, free_text=("name", "last_reply", "note"))


def _row(reminder: Reminder, contact: dict[str, str] | None) -> dict[str, Any]:
    return {
        **Reminders.to_json(reminder),
        "contact": contact,
        "date": (reminder.appointment or "T").partition("T")[0] or None,
        "time": (reminder.appointment or "T").partition("T")[2] or None,
    }
