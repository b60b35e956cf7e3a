"""Messages to send later: one row per item, every change a compare-and-set on a version.

The timer of every instance reads what is due and claims an item by moving it from `scheduled` to `sending`
with a conditional write: exactly one claim wins. The Twilio sid is recorded on the row before it becomes
`sent`, so a claim left by a crashed instance is recognisable: with a sid it was sent, without one Twilio's
message list is asked before anything is sent again.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.store.tablekit import create, etag, from_stamp, guard, replace_unchanged, stamp

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS scheduled (
    id TEXT PRIMARY KEY, desk TEXT NOT NULL, state TEXT NOT NULL, send_at REAL NOT NULL, claimed_at REAL,
    created_at REAL NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS scheduled_due ON scheduled (state, send_at);
CREATE INDEX IF NOT EXISTS scheduled_by_desk ON scheduled (desk, state, send_at);
CREATE INDEX IF NOT EXISTS scheduled_by_batch ON scheduled (json_extract(data, '$.batch'));
"""
TABLE = "scheduled"
PARTITION = "q"  # thousands of rows at most; one partition, filtered by the service
WAITING = ("scheduled", "sending")


@dataclass(frozen=True)
class Scheduled:
    id: str
    desk: str
    state: str  # scheduled, sending, sent, cancelled, opted_out, failed
    send_at: datetime
    created_at: datetime
    claimed_at: datetime | None = None
    # to, body, media, confirm, by (staff), sid (once Twilio accepted it), claim (who holds it), error, batch...
    data: dict[str, Any] = field(default_factory=dict)
    version: str = ""


class ScheduledStore(Protocol):
    def add(self, item: Scheduled) -> Scheduled | None:
        """Insert once per id; None when it exists."""

    def get(self, item_id: str) -> Scheduled | None: ...

    def put(self, new: Scheduled, expected: Scheduled) -> Scheduled | None:
        """Replace if still `expected`; None when another writer got there first."""

    def due(self, now: datetime, stale_before: datetime, limit: int) -> list[Scheduled]:
        """`scheduled` items due by `now`, and `sending` ones claimed before `stale_before`, soonest first."""

    def of_desk(self, desk: str) -> list[Scheduled]:
        """A desk's items still waiting (scheduled or sending), soonest first."""

    def of_batch(self, batch: str) -> list[Scheduled]:
        """Every item of an imported list (data `batch`), whatever its state: the batch's progress."""


class SqliteScheduled:
    def __init__(self, db: SqliteStore) -> None:
        self._db = db

    def add(self, item: Scheduled) -> Scheduled | None:
        def job(conn: sqlite3.Connection) -> bool:
            sql = """INSERT INTO scheduled (desk, state, send_at, claimed_at, created_at, data, version, id)
                     VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (id) DO NOTHING"""
            return bool(conn.execute(sql, (*_columns(item), item.id)).rowcount)

        return replace(item, version="1") if self._db.write(job) else None

    def get(self, item_id: str) -> Scheduled | None:
        rows = self._db.read("SELECT * FROM scheduled WHERE id = ?", (item_id,))
        return _item(dict(rows[0])) if rows else None

    def put(self, new: Scheduled, expected: Scheduled) -> Scheduled | None:
        version = int(expected.version) + 1

        def job(conn: sqlite3.Connection) -> bool:
            sql = """UPDATE scheduled SET desk = ?, state = ?, send_at = ?, claimed_at = ?, created_at = ?, data = ?,
                     version = ? WHERE id = ? AND version = ?"""
            return bool(conn.execute(sql, (*_columns(new), version, new.id, int(expected.version))).rowcount)

        return replace(new, version=str(version)) if self._db.write(job) else None

    def due(self, now: datetime, stale_before: datetime, limit: int) -> list[Scheduled]:
        rows = self._db.read(
            """SELECT * FROM scheduled WHERE (state = 'scheduled' AND send_at <= ?)
               OR (state = 'sending' AND claimed_at < ?) ORDER BY send_at, id LIMIT ?""",
            (now.timestamp(), stale_before.timestamp(), limit),
        )
        return [_item(dict(r)) for r in rows]

    def of_desk(self, desk: str) -> list[Scheduled]:
        rows = self._db.read(
            "SELECT * FROM scheduled WHERE desk = ? AND state IN (?, ?) ORDER BY send_at, id", (desk, *WAITING)
        )
        return [_item(dict(r)) for r in rows]

    def of_batch(self, batch: str) -> list[Scheduled]:
        rows = self._db.read("SELECT * FROM scheduled WHERE json_extract(data, '$.batch') = ? ORDER BY id", (batch,))
        return [_item(dict(r)) for r in rows]


class TableScheduled:
    def __init__(self, db: TableStore) -> None:
        self._db = db

    def add(self, item: Scheduled) -> Scheduled | None:
        with guard("add scheduled"):
            version = create(self._db.table(TABLE), _row(item))
        return None if version is None else replace(item, version=version)

    def get(self, item_id: str) -> Scheduled | None:
        with guard("get scheduled"):
            row = self._db.entity(TABLE, PARTITION, item_id)
        return _from_row(row) if row else None

    def put(self, new: Scheduled, expected: Scheduled) -> Scheduled | None:
        with guard("put scheduled"):
            version = replace_unchanged(self._db.table(TABLE), _row(new), expected.version)
        return replace(new, version=version) if version is not None else None

    def due(self, now: datetime, stale_before: datetime, limit: int) -> list[Scheduled]:
        query = (
            # Spaces around parameters: the SDK finds them by splitting on whitespace.
            "PartitionKey eq @pk and ((state eq 'scheduled' and send_at le @now ) or "
            "(state eq 'sending' and claimed_at lt @stale ))"
        )
        with guard("due scheduled"):
            rows = self._db.query(TABLE, query, {"pk": PARTITION, "now": stamp(now), "stale": stamp(stale_before)})
        return sorted((_from_row(r) for r in rows), key=lambda i: (i.send_at, i.id))[:limit]

    def of_desk(self, desk: str) -> list[Scheduled]:
        query = "PartitionKey eq @pk and desk eq @desk and (state eq 'scheduled' or state eq 'sending')"
        with guard("scheduled of desk"):
            rows = self._db.query(TABLE, query, {"pk": PARTITION, "desk": desk})
        return sorted((_from_row(r) for r in rows), key=lambda i: (i.send_at, i.id))

    def of_batch(self, batch: str) -> list[Scheduled]:
        with guard("scheduled of batch"):
            rows = self._db.query(TABLE, "PartitionKey eq @pk and batch eq @batch", {"pk": PARTITION, "batch": batch})
        return sorted((_from_row(r) for r in rows), key=lambda i: i.id)


def _columns(i: Scheduled) -> tuple[Any, ...]:
    claimed = i.claimed_at.timestamp() if i.claimed_at else None
    return (i.desk, i.state, i.send_at.timestamp(), claimed, i.created_at.timestamp(), json.dumps(i.data))


def _item(r: dict[str, Any]) -> Scheduled:
    def at(ts: Any) -> datetime:
        return datetime.fromtimestamp(float(ts), UTC)

    claimed = at(r["claimed_at"]) if r.get("claimed_at") is not None else None
    data = json.loads(r["data"])
    return Scheduled(
        str(r["id"]),
        str(r["desk"]),
        str(r["state"]),
        at(r["send_at"]),
        at(r["created_at"]),
        claimed,
        data,
        str(r["version"]),
    )


def _row(i: Scheduled) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": i.id,
        "id": i.id,
        "desk": i.desk,
        "state": i.state,
        "send_at": stamp(i.send_at),
        "created_at": stamp(i.created_at),
        "data": json.dumps(i.data),
    }
    if i.claimed_at is not None:
        row["claimed_at"] = stamp(i.claimed_at)
    if i.data.get("batch"):
        row["batch"] = str(i.data["batch"])  # a property of its own, for the service to filter on
    return row


def _from_row(r: dict[str, Any]) -> Scheduled:
    claimed = from_stamp(str(r["claimed_at"])) if r.get("claimed_at") else None
    data = json.loads(r["data"])
    return Scheduled(
        str(r["id"]),
        str(r["desk"]),
        str(r["state"]),
        from_stamp(str(r["send_at"])),
        from_stamp(str(r["created_at"])),
        claimed,
        data,
        etag(r),
    )
