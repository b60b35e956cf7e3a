"""Staff sessions: one row per sign-in, so a session can be ended alone and a desk's people can be counted.

Partitioned by desk (the token's `sub`), so checking a request's session is one point read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.store.tablekit import enc, from_stamp, guard, merge_if_there, stamp

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_sessions (
    id TEXT PRIMARY KEY, desk TEXT NOT NULL, staff_id TEXT NOT NULL, staff_name TEXT NOT NULL,
    started_at REAL NOT NULL, expires_at REAL NOT NULL, seen_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS staff_sessions_by_desk ON staff_sessions (desk, expires_at);
"""
TABLE = "staffsessions"


@dataclass(frozen=True)
class StaffSession:
    id: str
    desk: str
    staff_id: str
    staff_name: str
    started_at: datetime
    expires_at: datetime
    seen_at: datetime
    revoked: bool = False

    def live(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires_at


class SessionStore(Protocol):
    def open(self, session: StaffSession) -> None: ...

    def get(self, desk: str, session_id: str) -> StaffSession | None: ...

    def touch(self, desk: str, session_id: str, seen_at: datetime, expires_at: datetime | None = None) -> None:
        """Record that the session is in use (presence), and optionally its renewed expiry."""

    def revoke(self, desk: str, session_id: str) -> None: ...

    def of_desk(self, desk: str, now: datetime) -> list[StaffSession]:
        """Unexpired, unrevoked sessions of a desk."""

    def everywhere(self, now: datetime) -> list[StaffSession]:
        """Unexpired, unrevoked sessions of every desk, for the operator."""

    def purge(self, before: datetime) -> None:
        """Forget sessions that expired before `before`."""


class SqliteSessions:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def open(self, session: StaffSession) -> None:
        s = session

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO staff_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    s.id,
                    s.desk,
                    s.staff_id,
                    s.staff_name,
                    s.started_at.timestamp(),
                    s.expires_at.timestamp(),
                    s.seen_at.timestamp(),
                    int(s.revoked),
                ),
            )

        self._db.write(job)

    def get(self, desk: str, session_id: str) -> StaffSession | None:
        rows = self._db.read("SELECT * FROM staff_sessions WHERE id = ? AND desk = ?", (session_id, desk))
        return _sqlite_session(rows[0]) if rows else None

    def touch(self, desk: str, session_id: str, seen_at: datetime, expires_at: datetime | None = None) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE staff_sessions SET seen_at = max(seen_at, ?), expires_at = coalesce(?, expires_at)"
                " WHERE id = ? AND desk = ?",
                (seen_at.timestamp(), expires_at.timestamp() if expires_at else None, session_id, desk),
            )

        self._db.write(job)

    def revoke(self, desk: str, session_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE staff_sessions SET revoked = 1 WHERE id = ? AND desk = ?", (session_id, desk))

        self._db.write(job)

    def of_desk(self, desk: str, now: datetime) -> list[StaffSession]:
        rows = self._db.read(
            "SELECT * FROM staff_sessions WHERE desk = ? AND expires_at > ? AND revoked = 0 ORDER BY started_at",
            (desk, now.timestamp()),
        )
        return [_sqlite_session(r) for r in rows]

    def everywhere(self, now: datetime) -> list[StaffSession]:
        rows = self._db.read(
            "SELECT * FROM staff_sessions WHERE expires_at > ? AND revoked = 0 ORDER BY desk, started_at",
            (now.timestamp(),),
        )
        return [_sqlite_session(r) for r in rows]

    def purge(self, before: datetime) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM staff_sessions WHERE expires_at < ?", (before.timestamp(),))

        self._db.write(job)


class TableSessions:
    def __init__(self, db: TableStore) -> None:
        self._db = db

    def open(self, session: StaffSession) -> None:
        s = session
        with guard("open session"):
            self._db.table(TABLE).create_entity(
                {
                    "PartitionKey": enc(s.desk),
                    "RowKey": enc(s.id),
                    "id": s.id,
                    "desk": s.desk,
                    "staff_id": s.staff_id,
                    "staff_name": s.staff_name,
                    "started_at": stamp(s.started_at),
                    "expires_at": stamp(s.expires_at),
                    "seen_at": stamp(s.seen_at),
                    "revoked": s.revoked,
                }
            )

    def get(self, desk: str, session_id: str) -> StaffSession | None:
        with guard("get session"):
            entity = self._db.entity(TABLE, enc(desk), enc(session_id))
        return _table_session(entity) if entity else None

    def touch(self, desk: str, session_id: str, seen_at: datetime, expires_at: datetime | None = None) -> None:
        row: dict[str, Any] = {"PartitionKey": enc(desk), "RowKey": enc(session_id), "seen_at": stamp(seen_at)}
        if expires_at is not None:
            row["expires_at"] = stamp(expires_at)
        with guard("touch session"):
            merge_if_there(self._db.table(TABLE), row)

    def revoke(self, desk: str, session_id: str) -> None:
        row = {"PartitionKey": enc(desk), "RowKey": enc(session_id), "revoked": True}
        with guard("revoke session"):
            merge_if_there(self._db.table(TABLE), row)

    def of_desk(self, desk: str, now: datetime) -> list[StaffSession]:
        with guard("sessions of desk"):
            rows = self._db.query(
                TABLE,
                "PartitionKey eq @pk and expires_at gt @now and revoked eq false",
                {"pk": enc(desk), "now": stamp(now)},
            )
        return sorted((_table_session(r) for r in rows), key=lambda s: s.started_at)

    def everywhere(self, now: datetime) -> list[StaffSession]:
        with guard("all sessions"):
            rows = self._db.query(TABLE, "expires_at gt @now and revoked eq false", {"now": stamp(now)})
        return sorted((_table_session(r) for r in rows), key=lambda s: (s.desk, s.started_at))

    def purge(self, before: datetime) -> None:
        with guard("purge sessions"):
            for r in self._db.query(TABLE, "expires_at lt @before", {"before": stamp(before)}):
                self._db.table(TABLE).delete_entity(r["PartitionKey"], r["RowKey"])  # a row gone meanwhile is fine


def _sqlite_session(r: sqlite3.Row) -> StaffSession:
    return StaffSession(
        id=r["id"],
        desk=r["desk"],
        staff_id=r["staff_id"],
        staff_name=r["staff_name"],
        started_at=datetime.fromtimestamp(r["started_at"], UTC),
        expires_at=datetime.fromtimestamp(r["expires_at"], UTC),
        seen_at=datetime.fromtimestamp(r["seen_at"], UTC),
        revoked=bool(r["revoked"]),
    )


def _table_session(r: dict[str, Any]) -> StaffSession:
    return StaffSession(
        id=str(r["id"]),
        desk=str(r["desk"]),
        staff_id=str(r["staff_id"]),
        staff_name=str(r["staff_name"]),
        started_at=from_stamp(r["started_at"]),
        expires_at=from_stamp(r["expires_at"]),
        seen_at=from_stamp(r["seen_at"]),
        revoked=bool(r["revoked"]),
    )
