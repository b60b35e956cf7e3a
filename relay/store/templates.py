"""Saved texts per desk: a name and a body with placeholders, one row per (desk, id).

A desk keeps a handful of them, so a list is one Table partition (the desk's) and one indexed SQLite read.
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
CREATE TABLE IF NOT EXISTS templates (
    desk TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (desk, id));
"""
TABLE = "templates"


@dataclass(frozen=True)
class Template:
    desk: str
    id: str
    name: str
    body: str
    updated_at: datetime


class TemplateStore(Protocol):
    def of_desk(self, desk: str) -> list[Template]:
        """A desk's templates, by name."""

    def get(self, desk: str, template_id: str) -> Template | None: ...

    def put(self, template: Template) -> bool:
        """Insert or replace; True when it was new."""

    def delete(self, desk: str, template_id: str) -> bool:
        """False when there was none."""


class SqliteTemplates:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def of_desk(self, desk: str) -> list[Template]:
        rows = self._db.read("SELECT * FROM templates WHERE desk = ? ORDER BY name COLLATE NOCASE, id", (desk,))
        return [_template(dict(r)) for r in rows]

    def get(self, desk: str, template_id: str) -> Template | None:
        rows = self._db.read("SELECT * FROM templates WHERE desk = ? AND id = ?", (desk, template_id))
        return _template(dict(rows[0])) if rows else None

    def put(self, template: Template) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            sql = "SELECT 1 FROM templates WHERE desk = ? AND id = ?"
            new = conn.execute(sql, (template.desk, template.id)).fetchone() is None
            conn.execute(
                "INSERT OR REPLACE INTO templates (desk, id, name, body, updated_at) VALUES (?, ?, ?, ?, ?)",
                (template.desk, template.id, template.name, template.body, template.updated_at.timestamp()),
            )
            return new

        return self._db.write(job)

    def delete(self, desk: str, template_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            sql = "DELETE FROM templates WHERE desk = ? AND id = ?"
            return bool(conn.execute(sql, (desk, template_id)).rowcount)

        return self._db.write(job)


class TableTemplates:
    """PartitionKey = desk, RowKey = id."""

    def __init__(self, db: TableStore) -> None:
        self._db = db

    def of_desk(self, desk: str) -> list[Template]:
        with guard("list templates"):
            rows = self._db.query(TABLE, "PartitionKey eq @pk", {"pk": enc(desk)})
        return sorted((_from_row(r) for r in rows), key=lambda t: (t.name.casefold(), t.id))

    def get(self, desk: str, template_id: str) -> Template | None:
        with guard("get template"):
            row = self._db.entity(TABLE, enc(desk), enc(template_id))
        return _from_row(row) if row else None

    def put(self, template: Template) -> bool:
        """An upsert, the last writer winning as on SQLite; new-or-not is only reported."""
        with guard("put template"):
            new = self._db.entity(TABLE, enc(template.desk), enc(template.id)) is None
            row: dict[str, Any] = {
                "PartitionKey": enc(template.desk),
                "RowKey": enc(template.id),
                "desk": template.desk,
                "id": template.id,
                "name": template.name,
                "body": template.body,
                "updated_at": stamp(template.updated_at),
            }
            put_whole(self._db.table(TABLE), row)
        return new

    def delete(self, desk: str, template_id: str) -> bool:
        with guard("delete template"):
            return delete_if_there(self._db.table(TABLE), enc(desk), enc(template_id))


def _template(r: dict[str, Any]) -> Template:
    at = datetime.fromtimestamp(float(r["updated_at"]), UTC)
    return Template(str(r["desk"]), str(r["id"]), str(r["name"]), str(r["body"]), at)


def _from_row(r: dict[str, Any]) -> Template:
    return Template(str(r["desk"]), str(r["id"]), str(r["name"]), str(r["body"]), from_stamp(str(r["updated_at"])))
