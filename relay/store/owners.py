"""Who owns each conversation (phone + our side), and which desks may read its history up to when.

One row per conversation, replaced by compare-and-set on a version: the row is the arbiter of every change of
owner (a send, a claim, an alias reply, a transfer), so two simultaneous transfers have exactly one winner.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.store.tablekit import create, enc, etag, from_stamp, guard, replace_unchanged, stamp

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    phone TEXT NOT NULL, our_side TEXT NOT NULL, desk TEXT, since REAL NOT NULL, state TEXT NOT NULL,
    readers TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (phone, our_side));
"""
TABLE = "owners"
OPEN, DONE = "open", "done"


@dataclass(frozen=True)
class Owner:
    phone: str
    our_side: str
    desk: str | None  # None: no live desk owns it, so replies go to unrouted
    since: datetime
    state: str = OPEN
    # Every desk that has owned it: None while it owns, else the time (epoch seconds) its ownership ended.
    readers: dict[str, float | None] = field(default_factory=dict)
    version: str = ""  # opaque; set by the store

    def sees(self, desk: str, at: datetime) -> bool:
        """A desk reads what happened while it owned the conversation and before; nothing after it let go."""
        if desk not in self.readers:
            return False
        until = self.readers[desk]
        return until is None or at.timestamp() <= until

    def moved_to(self, desk: str | None, at: datetime) -> Owner:
        readers = dict(self.readers)
        if self.desk is not None and self.desk != desk:
            readers[self.desk] = at.timestamp()
        if desk is not None:
            readers[desk] = None
        return replace(self, desk=desk, since=at if desk != self.desk else self.since, state=OPEN, readers=readers)


def first_owner(phone: str, our_side: str, desk: str, at: datetime) -> Owner:
    return Owner(phone, our_side, desk, at, OPEN, {desk: None})


class OwnerStore(Protocol):
    def of_phone(self, phone: str) -> list[Owner]:
        """Every conversation of a phone, one per our side."""

    def put(self, new: Owner, expected: Owner | None) -> Owner | None:
        """Write `new` if the stored row is still `expected` (None: there is no row yet); the stored row with its
        new version, or None when another writer got there first."""


class SqliteOwners:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def of_phone(self, phone: str) -> list[Owner]:
        return [_owner(dict(r)) for r in self._db.read("SELECT * FROM owners WHERE phone = ?", (phone,))]

    def put(self, new: Owner, expected: Owner | None) -> Owner | None:
        version = int(expected.version) + 1 if expected else 1
        values = (new.desk, new.since.timestamp(), new.state, json.dumps(new.readers), version)

        def job(conn: sqlite3.Connection) -> bool:
            if expected is None:
                sql = """INSERT INTO owners (desk, since, state, readers, version, phone, our_side)
                         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (phone, our_side) DO NOTHING"""
                return bool(conn.execute(sql, (*values, new.phone, new.our_side)).rowcount)
            sql = """UPDATE owners SET desk = ?, since = ?, state = ?, readers = ?, version = ?
                     WHERE phone = ? AND our_side = ? AND version = ?"""
            return bool(conn.execute(sql, (*values, new.phone, new.our_side, int(expected.version))).rowcount)

        return replace(new, version=str(version)) if self._db.write(job) else None


class TableOwners:
    def __init__(self, db: TableStore) -> None:
        self._db = db

    def of_phone(self, phone: str) -> list[Owner]:
        with guard("owners"):
            rows = self._db.query(TABLE, "PartitionKey eq @pk", {"pk": enc(phone)})
        return [_owner({**r, "since": from_stamp(r["since"]).timestamp(), "version": etag(r)}) for r in rows]

    def put(self, new: Owner, expected: Owner | None) -> Owner | None:
        row: dict[str, Any] = {
            "PartitionKey": enc(new.phone),
            "RowKey": enc(new.our_side),
            "phone": new.phone,
            "our_side": new.our_side,
            "desk": new.desk or "",
            "since": stamp(new.since),
            "state": new.state,
            "readers": json.dumps(new.readers),
        }
        table = self._db.table(TABLE)
        with guard("put owner"):
            if expected is not None:
                version = replace_unchanged(table, row, expected.version)
                return None if version is None else replace(new, version=version)
            version = create(table, row)
        return None if version is None else replace(new, version=version)


def _owner(r: dict[str, Any]) -> Owner:
    return Owner(
        phone=str(r["phone"]),
        our_side=str(r["our_side"]),
        desk=str(r["desk"]) if r.get("desk") else None,
        since=datetime.fromtimestamp(float(r["since"]), UTC),
        state=str(r["state"]),
        readers=json.loads(r["readers"]),
        version=str(r["version"]),
    )
