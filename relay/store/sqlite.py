"""The embedded store: one SQLite file in WAL mode, a connection per thread, writes in IMMEDIATE transactions."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from relay.store import contacts, desks, owners, reminders, scheduled, search, staff, templates
from relay.store.base import (
    UNROUTED,
    Conversation,
    Event,
    EventPage,
    Heartbeat,
    MessageRecord,
    StatusRecord,
    StoreError,
    reopens,
    shown_in_list,
)

log = logging.getLogger("relay.store")

CHECKPOINT_SECONDS = 0.25
WAL_LIMIT_BYTES = 2 * 1024 * 1024  # past this the checkpointer restarts the WAL; journal_size_limit keeps it there
WAL_BEHIND_BYTES = WAL_LIMIT_BYTES + 512 * 1024  # past this writers wait for the restart, so it cannot be starved
CHECKPOINT_BUSY_MS = 100  # the checkpointer's patience with readers: it retries next time rather than wait
RESTART_WAIT_SECONDS = 1.0  # how long a write holds back for a restart it asked for
MAX_BATCH = 256
R = TypeVar("R")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sid TEXT PRIMARY KEY, direction TEXT NOT NULL, phone TEXT NOT NULL, our_side TEXT NOT NULL,
    web_app_id TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_phone ON messages (phone, created_at, sid);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (created_at);
CREATE TABLE IF NOT EXISTS statuses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT NOT NULL, status TEXT NOT NULL,
    error_code TEXT, error_message TEXT, at REAL NOT NULL, UNIQUE (sid, status));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, audience TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL, created_at REAL NOT NULL, published INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS events_by_audience ON events (audience, seq);
CREATE INDEX IF NOT EXISTS events_pending ON events (published, created_at);
CREATE TABLE IF NOT EXISTS conversations (
    web_app_id TEXT NOT NULL, phone TEXT NOT NULL, our_side TEXT NOT NULL, last_sid TEXT NOT NULL,
    last_body TEXT NOT NULL, last_direction TEXT NOT NULL, last_at REAL NOT NULL, unread INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, last_display TEXT, last_media INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (web_app_id, phone));
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at REAL,
    PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS hits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, namespace TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hits_by_key ON hits (namespace, key, at);
"""


@dataclass
class _Job:
    """One write waiting for the group commit that will run it."""

    run: Callable[[sqlite3.Connection], Any]
    result: Any = None
    error: Exception | None = None
    done: bool = False

    def finish(self, *, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.done = result, error, True


def _ts(at: datetime) -> float:
    return at.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class SqliteStore:
    mark_window = 0.0  # a mark is a local write: at once, as acknowledged

    def __init__(self, path: str, *, timeout_seconds: float = 5.0) -> None:
        self._path = path
        self._timeout = timeout_seconds
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        self._queue: list[_Job] = []
        self._queue_lock = threading.Lock()
        self._closing = threading.Event()
        self._wal_full = threading.Event()  # set by a commit that left the WAL past its limit
        self._wal_ok = threading.Event()  # cleared meanwhile, until the checkpointer has tried to restart it
        self._wal_ok.set()
        self._wal = f"{path}-wal"
        self._file_lock: int | None = None
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file_lock = os.open(f"{path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
        conn = self._conn()
        try:
            # executescript commits any open transaction first, so the script carries its own.
            concepts = "".join(
                m.SCHEMA for m in (desks, owners, staff, reminders, contacts, scheduled, templates, search)
            )
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}{concepts}COMMIT;")
            _add_summary_columns(conn)
            reminders.upgrade(conn)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot create the SQLite schema: {exc}") from None
        if path != ":memory:":
            self._checkpointer.start()
        self.desks: desks.DeskStore = desks.SqliteDesks(self)
        self.owners: owners.OwnerStore = owners.SqliteOwners(self)
        self.staff: staff.SessionStore = staff.SqliteSessions(self)
        self.reminders: reminders.ReminderStore = reminders.SqliteReminders(self)
        self.contacts: contacts.ContactStore = contacts.SqliteContacts(self)
        self.scheduled: scheduled.ScheduledStore = scheduled.SqliteScheduled(self)
        self.templates: templates.TemplateStore = templates.SqliteTemplates(self)
        self._index = search.SqliteSearch(self, background=path != ":memory:")
        self._index.index_waiting()  # what an older release, or a process that stopped first, left unindexed
        self.search: search.SearchStore = self._index

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it, off the request path
                conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
                conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the SQLite store: {exc}") from None
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def write(self, run: Callable[[sqlite3.Connection], R]) -> R:
        """Group commit: whichever thread gets the write lock commits every write queued meanwhile in one
        transaction, so under load a commit and a lock hand-over serve many writes; alone, a write commits
        by itself with no hand-over to another thread. One writer at a time, queued on a thread lock and,
        across processes sharing the file, on a file lock: SQLite's own busy handler would make the losers
        sleep in growing steps (1 ms up to 100 ms), holding up every writer queued behind them."""
        job = _Job(run)
        # Thread locks are not fair: writers would keep the checkpointer from the lock and the WAL from its limit.
        self._wal_ok.wait(RESTART_WAIT_SECONDS)
        with self._queue_lock:
            self._queue.append(job)
        with self._writer:
            if not job.done:
                with self._queue_lock:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._commit(batch)
        if job.error is not None:
            raise job.error
        return cast(R, job.result)

    def _commit(self, batch: list[_Job]) -> None:
        try:
            results = self._run(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc)
            else:  # all rolled back: each again on its own, so one failing write cannot fail the others
                for job in batch:
                    self._commit([job])
            return
        except BaseException:
            for job in batch:  # interrupted: nobody waits on a write that never ran
                job.finish(error=StoreError("SQLite write abandoned"))
            raise
        for job, result in zip(batch, results, strict=True):
            job.finish(result=result)

    def _run(self, batch: list[_Job]) -> list[Any]:
        conn = self._conn()
        with self._file_locked(), self._transaction(conn):
            results = [job.run(conn) for job in batch]
        wal = self._wal_bytes()  # a stat here; the checkpoint runs on the checkpointer's thread
        if wal > WAL_LIMIT_BYTES:
            if wal > WAL_BEHIND_BYTES:
                self._wal_ok.clear()
            self._wal_full.set()
        return results

    @contextmanager
    def _file_locked(self) -> Iterator[None]:
        if self._file_lock is not None:
            fcntl.flock(self._file_lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if self._file_lock is not None:
                fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except OSError:
            return 0

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:  # a failed COMMIT would otherwise leave this thread's connection stuck
                conn.execute("ROLLBACK")
            raise StoreError(f"SQLite write failed: {exc}") from None

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database beside the writers, never inside a request: SQLite's automatic
        checkpoint runs in whichever commit crosses 1,000 pages and fsyncs there, which took one webhook in
        about 150 from 0.8 ms to 4.7 ms. PASSIVE neither waits for nor blocks readers and writers, but under
        steady writes it never catches up, so the WAL never restarts and grows without end (84.5 MB in a
        10-minute soak). Past WAL_LIMIT_BYTES, then, a PASSIVE copy beside the writers and a RESTART for what
        came meanwhile, holding the write locks for about a millisecond. RESTART, not TRUNCATE: the file keeps
        its size, so commits overwrite frames rather than extend it (an extension waits on the filesystem's
        journal while the checkpoint fsyncs). Writers wait for it only once the WAL is half a MiB past the limit (the
        checkpointer kept from the lock): waiting at the limit made one write in about 120 take 5 ms. A failed
        checkpoint (a full disk) lets writes through again, so each fails on its own, fast."""
        conn: sqlite3.Connection | None = None
        while not self._closing.is_set():
            self._wal_full.wait(CHECKPOINT_SECONDS)
            self._wal_full.clear()
            try:
                if conn is None:
                    conn = self._conn()
                    conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._wal_bytes() > WAL_LIMIT_BYTES:  # what is left to copy is only what came meanwhile
                    with self._writer, self._file_locked():
                        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            except (sqlite3.Error, StoreError) as exc:
                log.warning("SQLite checkpoint failed, will retry: %s", exc)
            finally:
                self._wal_ok.set()

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from None

    @staticmethod
    def _insert_event(db: sqlite3.Connection, event: Event, payload: str | None = None) -> Event:
        """`payload`: the event's payload already as JSON, when the caller has it."""
        cursor = db.execute(
            "INSERT INTO events (audience, kind, payload, created_at) VALUES (?, ?, ?, ?)",
            (event.audience, event.kind, payload or json.dumps(event.payload), _ts(event.created_at)),
        )
        return replace(event, key=str(cursor.lastrowid))

    def save_message(self, message: MessageRecord, event: Event) -> Event | None:
        stored = self.save_line(message, [event])
        return stored[0] if stored else None

    def save_line(self, message: MessageRecord, events: list[Event]) -> list[Event] | None:
        payload = json.dumps(message.payload)  # once: an inbound message's event carries the same payload

        def job(db: sqlite3.Connection) -> list[Event] | None:
            inserted = db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO NOTHING",
                (
                    message.sid,
                    message.direction,
                    message.phone,
                    message.our_side,
                    message.web_app_id,
                    message.body,
                    _ts(message.created_at),
                    payload,
                ),
            ).rowcount
            if not inserted:
                return None
            for audience in dict.fromkeys([message.web_app_id, *(e.audience for e in events[1:])]):
                self._summarize(db, audience, message)
            return [self._insert_event(db, e, payload if e.payload is message.payload else None) for e in events]

        stored = self.write(job)
        if stored is not None and message.direction != "event":
            self._index.stored()
        return stored

    @staticmethod
    def _summarize(db: sqlite3.Connection, audience: str, message: MessageRecord) -> None:
        """The newer message becomes the summary; inbound adds an unread, outbound clears them, a line keeps them.
        A reply from the patient, or a change of owner to this desk, reopens a done conversation (`reopens`)."""
        display, media = shown_in_list(message)
        db.execute(
            """INSERT INTO conversations (web_app_id, phone, our_side, last_sid, last_body, last_direction, last_at,
                                          unread, done, last_display, last_media)
               VALUES (:desk, :phone, :ours, :sid, :body, :dir, :at, coalesce(:unread, 0), 0, :display, :media)
               ON CONFLICT (web_app_id, phone) DO UPDATE SET
                 our_side = excluded.our_side, last_sid = excluded.last_sid, last_body = excluded.last_body,
                 last_direction = excluded.last_direction, last_at = excluded.last_at,
                 last_display = excluded.last_display, last_media = excluded.last_media,
                 unread = CASE WHEN :unread IS NULL THEN conversations.unread WHEN :unread = 0 THEN 0
                          ELSE conversations.unread + 1 END,
                 done = CASE WHEN :reopen THEN 0 ELSE conversations.done END
               WHERE excluded.last_at >= conversations.last_at""",
            {
                "desk": audience,
                "phone": message.phone,
                "ours": message.our_side,
                "sid": message.sid,
                "body": message.body,
                "dir": message.direction,
                "at": _ts(message.created_at),
                "unread": {"inbound": 1, "outbound": 0}.get(message.direction),
                "display": display,
                "media": media,
                "reopen": reopens(message, audience),
            },
        )

    def get_message(self, sid: str) -> MessageRecord | None:
        rows = self.read("SELECT * FROM messages WHERE sid = ?", (sid,))
        return _message(rows[0]) if rows else None

    def add_status(self, status: StatusRecord, event: Event) -> Event | None:
        def job(db: sqlite3.Connection) -> Event | None:
            inserted = db.execute(
                "INSERT INTO statuses (sid, status, error_code, error_message, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (sid, status) DO NOTHING",
                (status.sid, status.status, status.error_code, status.error_message, _ts(status.at)),
            ).rowcount
            return self._insert_event(db, event) if inserted else None

        return self.write(job)

    def statuses(self, sid: str) -> list[StatusRecord]:
        rows = self.read("SELECT * FROM statuses WHERE sid = ? ORDER BY seq", (sid,))
        return [StatusRecord(r["sid"], r["status"], r["error_code"], r["error_message"], _dt(r["at"])) for r in rows]

    def statuses_of(self, sids: list[str]) -> dict[str, list[StatusRecord]]:
        found: dict[str, list[StatusRecord]] = {sid: [] for sid in sids}
        for start in range(0, len(sids), 500):
            chunk = sids[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            sql = f"SELECT * FROM statuses WHERE sid IN ({marks}) ORDER BY seq"  # noqa: S608 - placeholders only
            for r in self.read(sql, tuple(chunk)):
                found[r["sid"]].append(
                    StatusRecord(r["sid"], r["status"], r["error_code"], r["error_message"], _dt(r["at"]))
                )
        return found

    def history(
        self, phone: str, before: str | None, limit: int, *, until: datetime | None = None, audience: str | None = None
    ) -> tuple[list[MessageRecord], str | None]:
        sql = "SELECT * FROM messages WHERE phone = ?"
        args: tuple[Any, ...] = (phone,)
        if until is not None:
            sql += " AND created_at <= ?"
            args += (_ts(until),)
        if audience is not None:
            sql += " AND web_app_id = ?"
            args += (audience,)
        if before:
            ts, _, sid = before.partition(":")
            sql += " AND (created_at < ? OR (created_at = ? AND sid < ?))"
            args += (float(ts), float(ts), sid)
        rows = self.read(sql + " ORDER BY created_at DESC, sid DESC LIMIT ?", (*args, limit + 1))
        page = [_message(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, (f"{_ts(page[-1].created_at)!r}:{page[-1].sid}" if more and page else None)

    def conversations(self, web_app_id: str) -> list[Conversation]:
        rows = self.read("SELECT * FROM conversations WHERE web_app_id = ? ORDER BY last_at DESC", (web_app_id,))
        return [
            Conversation(
                r["web_app_id"],
                r["phone"],
                r["our_side"],
                r["last_sid"],
                r["last_body"],
                r["last_direction"],
                _dt(r["last_at"]),
                r["unread"],
                bool(r["done"]),
                r["last_display"],
                r["last_media"],
            )
            for r in rows
        ]

    def mark_read(self, web_app_id: str, phone: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute("UPDATE conversations SET unread = 0 WHERE web_app_id = ? AND phone = ?", (web_app_id, phone))

        return self.write(job)

    def set_done(self, web_app_id: str, phone: str, done: bool) -> bool | None:
        def job(db: sqlite3.Connection) -> bool | None:
            row = db.execute(
                "SELECT done FROM conversations WHERE web_app_id = ? AND phone = ?", (web_app_id, phone)
            ).fetchone()
            if row is None:
                return None
            if bool(row["done"]) == done:
                return False
            db.execute(
                "UPDATE conversations SET done = ? WHERE web_app_id = ? AND phone = ?", (int(done), web_app_id, phone)
            )
            return True

        return self.write(job)

    def claim(self, phone: str, web_app_id: str, event: Event) -> Event | None:
        def job(db: sqlite3.Connection) -> Event | None:
            row = db.execute(
                "SELECT * FROM conversations WHERE web_app_id = ? AND phone = ?", (UNROUTED, phone)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE messages SET web_app_id = ? WHERE web_app_id = ? AND phone = ?", (web_app_id, UNROUTED, phone)
            )
            db.execute("DELETE FROM conversations WHERE web_app_id = ? AND phone = ?", (UNROUTED, phone))
            db.execute(
                """INSERT INTO conversations (web_app_id, phone, our_side, last_sid, last_body, last_direction,
                                              last_at, unread, last_display, last_media)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (web_app_id, phone) DO UPDATE SET
                     last_sid = excluded.last_sid, last_body = excluded.last_body,
                     last_direction = excluded.last_direction, last_at = excluded.last_at,
                     last_display = excluded.last_display, last_media = excluded.last_media,
                     unread = conversations.unread + excluded.unread, done = 0
                   WHERE excluded.last_at >= conversations.last_at""",
                (
                    web_app_id,
                    phone,
                    row["our_side"],
                    row["last_sid"],
                    row["last_body"],
                    row["last_direction"],
                    row["last_at"],
                    row["unread"],
                    row["last_display"],
                    row["last_media"],
                ),
            )
            return self._insert_event(db, event)

        return self.write(job)

    def events_after(self, audiences: list[str], after: str | None, limit: int) -> EventPage:
        """The cursor is the last seq handed out: seqs become visible in the order they were given out
        (docs/catch-up.md)."""
        marks = ",".join("?" for _ in audiences) or "''"
        if after and not (after.isascii() and after.isdigit() and len(after) <= 18):
            raise ValueError("not a cursor of this store")
        seq = int(after) if after else 0
        sql = f"SELECT * FROM events WHERE audience IN ({marks}) AND seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
        events = [_event(r) for r in self.read(sql, (*audiences, seq, limit))]
        return EventPage(events, events[-1].key if events else after)

    def pending_events(self, created_before: datetime, limit: int) -> list[Event]:
        rows = self.read(
            "SELECT * FROM events WHERE published = 0 AND created_at < ? ORDER BY seq LIMIT ?",
            (_ts(created_before), limit),
        )
        return [_event(r) for r in rows]

    def mark_soon(self, event: Event) -> None:
        """A mark is a local write, made at once by mark_published."""

    def mark_published(self, *events: Event) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE events SET published = 1 WHERE seq = ?", [(int(e.key),) for e in events])

        return self.write(job)

    def kv_get(self, namespace: str, key: str, now: datetime) -> dict[str, Any] | None:
        rows = self.read("SELECT value, expires_at FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
        if not rows or (rows[0]["expires_at"] is not None and rows[0]["expires_at"] <= _ts(now)):
            return None
        value: dict[str, Any] = json.loads(rows[0]["value"])
        return value

    def kv_many(self, namespace: str, keys: list[str], now: datetime) -> dict[str, dict[str, Any]]:
        unique = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            sql = (
                f"SELECT key, value FROM kv WHERE namespace = ? AND key IN ({marks})"  # noqa: S608 - placeholders only
                " AND (expires_at IS NULL OR expires_at > ?)"
            )
            for r in self.read(sql, (namespace, *chunk, _ts(now))):
                found[r["key"]] = json.loads(r["value"])
        return found

    def kv_put(self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)",
                (namespace, key, json.dumps(value), _ts(expires_at) if expires_at else None),
            )

        return self.write(job)

    def kv_insert(
        self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None, now: datetime
    ) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    """INSERT INTO kv VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE SET
                         value = excluded.value, expires_at = excluded.expires_at
                       WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?""",
                    (namespace, key, json.dumps(value), _ts(expires_at) if expires_at else None, _ts(now)),
                ).rowcount
            )

        return self.write(job)

    def kv_delete(self, namespace: str, key: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))

        return self.write(job)

    def kv_expired(self, namespace: str, now: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self.read(
            "SELECT key, value FROM kv WHERE namespace = ? AND expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
            (namespace, _ts(now), limit),
        )
        return [(r["key"], json.loads(r["value"])) for r in rows]

    def record_hit(self, namespace: str, key: str, at: datetime) -> str:
        def job(db: sqlite3.Connection) -> str:
            cursor = db.execute("INSERT INTO hits (namespace, key, at) VALUES (?, ?, ?)", (namespace, key, _ts(at)))
            return str(cursor.lastrowid)

        return self.write(job)

    def drop_hit(self, namespace: str, key: str, hit: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM hits WHERE seq = ? AND namespace = ? AND key = ?", (int(hit), namespace, key))

        return self.write(job)

    def count_hits(self, namespace: str, key: str, since: datetime) -> tuple[int, datetime | None]:
        row = self.read(
            "SELECT count(*) AS n, min(at) AS oldest FROM hits WHERE namespace = ? AND key = ? AND at >= ?",
            (namespace, key, _ts(since)),
        )[0]
        return int(row["n"]), (_dt(row["oldest"]) if row["oldest"] is not None else None)

    def purge(self, before: datetime) -> int:
        ts = _ts(before)

        def job(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM statuses WHERE sid IN (SELECT sid FROM messages WHERE created_at < ?)", (ts,))
            n = db.execute("DELETE FROM messages WHERE created_at < ?", (ts,)).rowcount
            # Orphans only when old too: a status callback can arrive before its message is saved.
            db.execute("DELETE FROM statuses WHERE at < ? AND sid NOT IN (SELECT sid FROM messages)", (ts,))
            db.execute("DELETE FROM events WHERE created_at < ? AND published = 1", (ts,))
            db.execute("DELETE FROM conversations WHERE last_at < ?", (ts,))
            db.execute("DELETE FROM hits WHERE at < ?", (ts,))
            db.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at < ?", (ts,))
            return n

        return self.write(job)

    def ping(self) -> None:
        self.read("SELECT 1")

    def heartbeat(self, key: str, now: datetime) -> Heartbeat:
        nonce = secrets.token_hex(8)
        self.kv_put("heartbeat", key, {"nonce": nonce}, now + timedelta(days=1))
        if (self.kv_get("heartbeat", key, now) or {}).get("nonce") != nonce:
            raise StoreError("SQLite heartbeat read back something else")
        return Heartbeat(store_clock=None, wal_bytes=None if self._path == ":memory:" else self._wal_bytes())

    def close(self) -> None:
        """The last connection to close checkpoints what is left and removes the WAL file."""
        self._index.close()
        self._closing.set()
        self._wal_full.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join()
        with self._writer, self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            if self._file_lock is not None:
                os.close(self._file_lock)
                self._file_lock = None
        self._local = threading.local()


SUMMARY_COLUMNS = {
    "done": "INTEGER NOT NULL DEFAULT 0",
    "last_display": "TEXT",
    "last_media": "INTEGER NOT NULL DEFAULT 0",
}


def _add_summary_columns(conn: sqlite3.Connection) -> None:
    """A file made before conversations could be done, or lists showed the display body, gets those columns
    (all open, display unknown), by one process."""
    conn.execute("BEGIN IMMEDIATE")
    have = {r["name"] for r in conn.execute("PRAGMA table_info(conversations)")}
    for name, kind in SUMMARY_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE conversations ADD COLUMN {name} {kind}")
    conn.execute("COMMIT")


def _message(r: sqlite3.Row) -> MessageRecord:
    return MessageRecord(
        sid=r["sid"],
        direction=r["direction"],
        phone=r["phone"],
        our_side=r["our_side"],
        web_app_id=r["web_app_id"],
        body=r["body"],
        created_at=_dt(r["created_at"]),
        payload=json.loads(r["payload"]),
    )


def _event(r: sqlite3.Row) -> Event:
    return Event(
        audience=r["audience"],
        kind=r["kind"],
        payload=json.loads(r["payload"]),
        created_at=_dt(r["created_at"]),
        key=str(r["seq"]),
        published=bool(r["published"]),
    )
