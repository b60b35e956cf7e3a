"""Stored desks: one row per desk id, kept after archiving so an id is never reused.

Alias uniqueness is arbitrated separately, by a conditional insert in the key/value namespace `desk-alias`.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any, Protocol

from relay.desks import Desk
from relay.store.tablekit import create, guard

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS desks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, alias TEXT NOT NULL, archived INTEGER NOT NULL DEFAULT 0);
"""
TABLE = "desks"
PARTITION = "d"  # a handful of rows: one partition, listed in one query


class DeskStore(Protocol):
    def add(self, desk: Desk) -> bool:
        """Insert a new id; False when the id exists, archived or not."""

    def get(self, desk_id: str) -> Desk | None: ...

    def all(self) -> list[Desk]:
        """Archived ones too, in creation order."""

    def update(self, desk: Desk) -> None:
        """Name, alias and archived flag of an existing id."""


class SqliteDesks:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def add(self, desk: Desk) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "INSERT INTO desks (id, name, alias, archived) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (desk.id, desk.name, desk.alias, int(desk.archived)),
                ).rowcount
            )

        return self._db.write(job)

    def get(self, desk_id: str) -> Desk | None:
        rows = self._db.read("SELECT * FROM desks WHERE id = ?", (desk_id,))
        return _desk(dict(rows[0])) if rows else None

    def all(self) -> list[Desk]:
        return [_desk(dict(r)) for r in self._db.read("SELECT * FROM desks ORDER BY rowid")]

    def update(self, desk: Desk) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE desks SET name = ?, alias = ?, archived = ? WHERE id = ?",
                (desk.name, desk.alias, int(desk.archived), desk.id),
            )

        self._db.write(job)


class TableDesks:
    def __init__(self, db: TableStore) -> None:
        self._db = db

    def add(self, desk: Desk) -> bool:
        with guard("add desk"):
            return create(self._db.table(TABLE), {**_row(desk), "created": f"{time.time_ns():020d}"}) is not None

    def get(self, desk_id: str) -> Desk | None:
        with guard("get desk"):
            entity = self._db.entity(TABLE, PARTITION, desk_id)
        return _desk(entity) if entity else None

    def all(self) -> list[Desk]:
        with guard("list desks"):
            rows = self._db.query(TABLE, "PartitionKey eq @pk", {"pk": PARTITION})
        rows.sort(key=lambda r: str(r.get("created", "")))
        return [_desk(r) for r in rows]

    def update(self, desk: Desk) -> None:
        with guard("update desk"):
            self._db.table(TABLE).update_entity(_row(desk))  # merges: the columns given change, the rest stay


def _row(desk: Desk) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": desk.id,
        "id": desk.id,
        "name": desk.name,
        "alias": desk.alias,
        "archived": desk.archived,
    }


def _desk(r: dict[str, Any]) -> Desk:
    return Desk(str(r["id"]), str(r["name"]), str(r["alias"]), bool(r["archived"]))
