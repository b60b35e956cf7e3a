"""The clinic's address book, shared by its desks: one row per E.164 number, holding a name and a note.

A clinic's book is thousands of rows, not millions: it is one Table partition, read whole for a search or an
export (Table Storage cannot search inside a string), and point-read per number everywhere else.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.store.tablekit import delete_if_there, enc, from_stamp, guard, put_whole, stamp

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    phone TEXT PRIMARY KEY, name TEXT NOT NULL, note TEXT, updated_at REAL NOT NULL);
"""
TABLE = "contacts"
PARTITION = "c"
POINT_READS = 20  # more numbers than this at once: one partition read beats that many point reads


@dataclass(frozen=True)
class Contact:
    phone: str
    name: str
    note: str | None
    updated_at: datetime


class ContactStore(Protocol):
    def get(self, phone: str) -> Contact | None: ...

    def of_phones(self, phones: list[str]) -> dict[str, Contact]:
        """The contacts among these numbers, by number."""

    def all(self) -> list[Contact]:
        """Every contact, by name."""

    def put(self, contact: Contact) -> bool:
        """Insert or replace; True when it was new."""

    def delete(self, phone: str) -> bool:
        """False when there was none."""


class SqliteContacts:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def get(self, phone: str) -> Contact | None:
        rows = self._db.read("SELECT * FROM contacts WHERE phone = ?", (phone,))
        return _contact(dict(rows[0])) if rows else None

    def of_phones(self, phones: list[str]) -> dict[str, Contact]:
        found: dict[str, Contact] = {}
        unique = list(dict.fromkeys(phones))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            sql = f"SELECT * FROM contacts WHERE phone IN ({marks})"  # noqa: S608 - placeholders only
            found.update({c.phone: c for c in (_contact(dict(r)) for r in self._db.read(sql, tuple(chunk)))})
        return found

    def all(self) -> list[Contact]:
        return [_contact(dict(r)) for r in self._db.read("SELECT * FROM contacts ORDER BY name COLLATE NOCASE, phone")]

    def put(self, contact: Contact) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            new = conn.execute("SELECT 1 FROM contacts WHERE phone = ?", (contact.phone,)).fetchone() is None
            conn.execute(
                "INSERT OR REPLACE INTO contacts (phone, name, note, updated_at) VALUES (?, ?, ?, ?)",
                (contact.phone, contact.name, contact.note, contact.updated_at.timestamp()),
            )
            return new

        return self._db.write(job)

    def delete(self, phone: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute("DELETE FROM contacts WHERE phone = ?", (phone,)).rowcount)

        return self._db.write(job)


class TableContacts:
    def __init__(self, db: TableStore) -> None:
        self._db = db

    def get(self, phone: str) -> Contact | None:
        with guard("get contact"):
            row = self._db.entity(TABLE, PARTITION, enc(phone))
        return _from_row(row) if row else None

    def of_phones(self, phones: list[str]) -> dict[str, Contact]:
        unique = set(phones)
        if len(unique) > POINT_READS:
            return {c.phone: c for c in self.all() if c.phone in unique}
        found = (self.get(p) for p in unique)
        return {c.phone: c for c in found if c is not None}

    def all(self) -> list[Contact]:
        with guard("list contacts"):
            rows = self._db.query(TABLE, "PartitionKey eq @pk", {"pk": PARTITION})
        return sorted((_from_row(r) for r in rows), key=lambda c: (c.name.casefold(), c.phone))

    def put(self, contact: Contact) -> bool:
        """An upsert: the last writer wins, as with the SQLite backend; new-or-not is only reported."""
        with guard("put contact"):
            new = self._db.entity(TABLE, PARTITION, enc(contact.phone)) is None
            row: dict[str, Any] = {
                "PartitionKey": PARTITION,
                "RowKey": enc(contact.phone),
                "phone": contact.phone,
                "name": contact.name,
                "note": contact.note or "",
                "updated_at": stamp(contact.updated_at),
            }
            put_whole(self._db.table(TABLE), row)
        return new

    def delete(self, phone: str) -> bool:
        with guard("delete contact"):
            return delete_if_there(self._db.table(TABLE), PARTITION, enc(phone))


def _contact(r: dict[str, Any]) -> Contact:
    return Contact(str(r["phone"]), str(r["name"]), r["note"] or None, datetime.fromtimestamp(r["updated_at"], UTC))


def _from_row(r: dict[str, Any]) -> Contact:
    return Contact(str(r["phone"]), str(r["name"]), str(r["note"]) or None, from_stamp(str(r["updated_at"])))
