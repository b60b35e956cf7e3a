"""Reminders: one row per reminder, keyed by phone so an inbound answer or a STOP finds its reminders in one read.

Every change of state is a compare-and-set on a version, so an answer, a delivery failure, a STOP, the no-answer
sweep and a member of staff changing it by hand never overwrite one another.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.store.tablekit import create, enc, etag, from_stamp, guard, replace_unchanged, stamp

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS reminders (
    id TEXT PRIMARY KEY, phone TEXT NOT NULL, our_side TEXT NOT NULL, desk TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, sent_at REAL, message_sid TEXT, data TEXT NOT NULL, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS reminders_by_phone ON reminders (phone, created_at);
CREATE INDEX IF NOT EXISTS reminders_awaiting ON reminders (state, sent_at);
"""
# Added after the first release: a store made before it gets the column on open (see upgrade).
UPGRADE = "ALTER TABLE reminders ADD COLUMN appointment TEXT"
DAY_INDEX = "CREATE INDEX IF NOT EXISTS reminders_by_day ON reminders (desk, appointment)"
TABLE = "reminders"
INDEX_PREFIX = "id~"  # Tables: a second row per reminder, PartitionKey id~<id>, naming its phone


@dataclass(frozen=True)
class Reminder:
    id: str  # the message sid once sent straight away; a scheduled reminder keeps its scheduled item's id
    phone: str
    our_side: str
    desk: str  # the desk that sent it
    state: str
    created_at: datetime
    sent_at: datetime | None = None
    message_sid: str | None = None
    # What staff and the board read: note, by (staff who last set it), updatedAt, lastReply, appointment, ...
    data: dict[str, Any] | None = None
    version: str = ""  # opaque; set by the store
    appointment: str | None = None  # the appointment's local time, YYYY-MM-DDTHH:MM in RELAY_TIMEZONE: the board's day

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.data or {})


class ReminderStore(Protocol):
    def add(self, reminder: Reminder) -> Reminder | None:
        """Insert once per id; the stored reminder with its version, or None when the id exists."""

    def get(self, reminder_id: str) -> Reminder | None: ...

    def of_phone(self, phone: str) -> list[Reminder]:
        """A phone's reminders, oldest first."""

    def put(self, new: Reminder, expected: Reminder) -> Reminder | None:
        """Replace the row if it is still `expected`; the stored row with its new version, or None when another
        writer got there first."""

    def awaiting(self, sent_before: datetime, limit: int) -> list[Reminder]:
        """Reminders still in state `sent` that were sent before the given time: candidates for no_answer."""

    def of_day(self, desk: str, day: str) -> list[Reminder]:
        """The reminders a desk sent for appointments on `day` (YYYY-MM-DD), by appointment time."""


def upgrade(conn: sqlite3.Connection) -> None:
    """The appointment column, on a store created before it existed; in one write transaction, so two processes
    opening an old store at once add it once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(reminders)").fetchall()}
        if "appointment" not in columns:
            conn.execute(UPGRADE)
        conn.execute(DAY_INDEX)
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteReminders:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def add(self, reminder: Reminder) -> Reminder | None:
        def job(conn: sqlite3.Connection) -> bool:
            sql = """INSERT INTO reminders (id, phone, our_side, desk, state, created_at, sent_at, message_sid, data,
                     appointment, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO NOTHING"""
            return bool(conn.execute(sql, (reminder.id, reminder.phone, *_columns(reminder))).rowcount)

        return replace(reminder, version="1") if self._db.write(job) else None

    def get(self, reminder_id: str) -> Reminder | None:
        rows = self._db.read("SELECT * FROM reminders WHERE id = ?", (reminder_id,))
        return _reminder(dict(rows[0])) if rows else None

    def of_phone(self, phone: str) -> list[Reminder]:
        rows = self._db.read("SELECT * FROM reminders WHERE phone = ? ORDER BY created_at, id", (phone,))
        return [_reminder(dict(r)) for r in rows]

    def put(self, new: Reminder, expected: Reminder) -> Reminder | None:
        version = int(expected.version) + 1

        def job(conn: sqlite3.Connection) -> bool:
            sql = """UPDATE reminders SET our_side = ?, desk = ?, state = ?, created_at = ?, sent_at = ?,
                     message_sid = ?, data = ?, appointment = ?, version = ? WHERE id = ? AND version = ?"""
            args = (*_columns(new), version, new.id, int(expected.version))
            return bool(conn.execute(sql, args).rowcount)

        return replace(new, version=str(version)) if self._db.write(job) else None

    def awaiting(self, sent_before: datetime, limit: int) -> list[Reminder]:
        rows = self._db.read(
            "SELECT * FROM reminders WHERE state = 'sent' AND sent_at < ? ORDER BY sent_at LIMIT ?",
            (sent_before.timestamp(), limit),
        )
        return [_reminder(dict(r)) for r in rows]

    def of_day(self, desk: str, day: str) -> list[Reminder]:
        rows = self._db.read(
            "SELECT * FROM reminders WHERE desk = ? AND appointment >= ? AND appointment < ? ORDER BY appointment, id",
            (desk, f"{day}T", f"{day}U"),
        )
        return [_reminder(dict(r)) for r in rows]


class TableReminders:
    """PartitionKey = phone, RowKey = id; an index row per id finds the phone for a lookup by id alone."""

    def __init__(self, db: TableStore) -> None:
        self._db = db

    def add(self, reminder: Reminder) -> Reminder | None:
        table = self._db.table(TABLE)
        with guard("add reminder"):
            index = {"PartitionKey": INDEX_PREFIX + enc(reminder.id), "RowKey": "p", "phone": reminder.phone}
            create(table, index)  # the index first: an orphan index row points at nothing
            version = create(table, _row(reminder))
        return None if version is None else replace(reminder, version=version)

    def get(self, reminder_id: str) -> Reminder | None:
        with guard("get reminder"):
            index = self._db.entity(TABLE, INDEX_PREFIX + enc(reminder_id), "p")
            row = self._db.entity(TABLE, enc(str(index["phone"])), enc(reminder_id)) if index else None
        return _from_row(row) if row else None

    def of_phone(self, phone: str) -> list[Reminder]:
        with guard("reminders of phone"):
            rows = self._db.query(TABLE, "PartitionKey eq @pk", {"pk": enc(phone)})
        found = [_from_row(r) for r in rows]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def put(self, new: Reminder, expected: Reminder) -> Reminder | None:
        with guard("put reminder"):
            version = replace_unchanged(self._db.table(TABLE), _row(new), expected.version)
        return replace(new, version=version) if version is not None else None

    def awaiting(self, sent_before: datetime, limit: int) -> list[Reminder]:
        """A filtered scan: the sweep runs once a minute and reads only the state and time columns' matches."""
        with guard("awaiting reminders"):
            rows = self._db.query(
                TABLE, "state eq 'sent' and sent_at lt @before", {"before": stamp(sent_before)}, limit=limit
            )
        return sorted((_from_row(r) for r in rows), key=lambda r: r.sent_at or r.created_at)

    def of_day(self, desk: str, day: str) -> list[Reminder]:
        """A filtered scan, as `awaiting`: a board is opened now and then, and reads only the day's matches.
        Index rows have no desk, so they never match."""
        query = "desk eq @desk and appointment ge @start and appointment lt @end"
        with guard("reminders of day"):
            rows = self._db.query(TABLE, query, {"desk": desk, "start": f"{day}T", "end": f"{day}U"})
        return sorted((_from_row(r) for r in rows), key=lambda r: (r.appointment or "", r.id))


def _columns(r: Reminder) -> tuple[Any, ...]:
    sent = r.sent_at.timestamp() if r.sent_at else None
    data = json.dumps(r.data or {})
    return (r.our_side, r.desk, r.state, r.created_at.timestamp(), sent, r.message_sid, data, r.appointment)


def _reminder(r: dict[str, Any]) -> Reminder:
    def at(ts: Any) -> datetime:
        return datetime.fromtimestamp(float(ts), UTC)

    return _built(r, at(r["created_at"]), at(r["sent_at"]) if r.get("sent_at") is not None else None, r["version"])


def _built(r: dict[str, Any], created_at: datetime, sent_at: datetime | None, version: object) -> Reminder:
    return Reminder(
        id=str(r["id"]),
        phone=str(r["phone"]),
        our_side=str(r["our_side"]),
        desk=str(r["desk"]),
        state=str(r["state"]),
        created_at=created_at,
        sent_at=sent_at,
        message_sid=str(r["message_sid"]) if r.get("message_sid") else None,
        data=json.loads(r["data"]),
        version=str(version),
        appointment=str(r["appointment"]) if r.get("appointment") else None,
    )


def _row(r: Reminder) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": enc(r.phone),
        "RowKey": enc(r.id),
        "id": r.id,
        "phone": r.phone,
        "our_side": r.our_side,
        "desk": r.desk,
        "state": r.state,
        "created_at": stamp(r.created_at),
        "message_sid": r.message_sid or "",
        "data": json.dumps(r.data or {}),
    }
    if r.sent_at is not None:
        row["sent_at"] = stamp(r.sent_at)
    if r.appointment is not None:
        row["appointment"] = r.appointment
    return row


def _from_row(r: dict[str, Any]) -> Reminder:
    sent = from_stamp(str(r["sent_at"])) if r.get("sent_at") else None
    return _built(r, from_stamp(str(r["created_at"])), sent, etag(r))
