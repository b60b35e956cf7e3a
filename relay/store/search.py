"""Finding messages by the words in them: SQLite's FTS5, and on Table Storage a token index per desk.

Both backends see the same words: `words()` folds case and accents and splits on anything that is not a letter
or a digit, as FTS5's unicode61 tokenizer with remove_diacritics does. Every word must match; the last one may be
the start of a word, since people search as they type.

SQLite: a contentless FTS5 table (the text stays only in `messages`) keyed by a small table of sids, whose own
INTEGER PRIMARY KEY is the FTS rowid, so a VACUUM that renumbers `messages` cannot detach the index. New messages
are indexed beside the writers, not in their transaction: FTS5 writes a segment per transaction, which made a
webhook's write 0.43 ms at p50 instead of 0.30. An indexer thread takes what was stored in the last INDEX_SECONDS
in one transaction, and a search first indexes whatever is still waiting, so it never misses a stored message. A
trigger drops a purged message from the index; messages stored before this index existed, or by a process that
stopped before its indexer ran, are indexed when the store opens.

Table Storage cannot search inside a string, so every message writes one row per distinct word, partitioned by
the desk it was stored for, in the events table beside that desk's events: they go in the message's event
transaction (relay/store/tables.py), so indexing costs no round trip of its own. RowKey = "w" + word + "!" + the
history key, so a word's rows are a RowKey range, newest first.
A search reads, for each word and each desk partition asked for, that range, at most SCAN_LIMIT rows; then it
intersects by sid and point-reads the bodies of what it returns. docs/scale.md gives the costs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from relay.store.base import MessageRecord, StoreError
from relay.store.tablekit import MAX_STAMP, STAMP_WIDTH, enc, guard, stamp

if TYPE_CHECKING:
    from relay.store.sqlite import SqliteStore
    from relay.store.tables import TableStore

MAX_WORDS = 8  # of a query; the rest are ignored
MAX_WORD = 40  # characters of a word kept in the Table index (RowKeys stay short); longer words are cut
INDEXED = 96  # distinct words of one message in the Table index: a batch holds 100, the event's take 4
SCAN_LIMIT = 2000  # Table rows read per word and desk partition, newest first (two pages)
BODY_READERS = 8  # point reads of the hits' bodies at once
TABLE = "events"  # the audience partitions of relay/store/tables.py, under RowKeys of their own
_PREFIX = "w"
_SEP = "!"  # sorts below every character enc() produces, so a word's rows end before any longer word's
_WORD = re.compile(r"\w+")

INDEX_SECONDS = 0.25  # how long a stored message may wait for the index; what comes meanwhile shares its transaction
log = logging.getLogger("relay.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS message_search (rowid INTEGER PRIMARY KEY, sid TEXT NOT NULL UNIQUE);
CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(
    body, content='', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS message_search_add AFTER INSERT ON message_search BEGIN
    INSERT INTO message_fts (rowid, body) SELECT new.rowid, body FROM messages WHERE sid = new.sid;
END;
DROP TRIGGER IF EXISTS messages_search_add;
-- Messages are indexed in the order of their rowids, so the newest indexed one marks where the rest begin.
CREATE VIEW IF NOT EXISTS messages_to_index AS
    SELECT rowid AS message_rowid, sid FROM messages WHERE direction != 'event' AND rowid > coalesce((
        SELECT m.rowid FROM message_search s JOIN messages m ON m.sid = s.sid ORDER BY s.rowid DESC LIMIT 1), 0);
CREATE TRIGGER IF NOT EXISTS messages_search_drop AFTER DELETE ON messages BEGIN
    INSERT INTO message_fts (message_fts, rowid, body)
        SELECT 'delete', rowid, old.body FROM message_search WHERE sid = old.sid;
    DELETE FROM message_search WHERE sid = old.sid;
END;
"""


@dataclass(frozen=True)
class TextHit:
    """A message that has every word of the query; `rank` orders hits, lower first. `body` is what the desk
    reads, without the desk alias a patient may have started with (`displayBody`)."""

    sid: str
    phone: str
    web_app_id: str
    body: str
    created_at: datetime
    rank: float


class SearchStore(Protocol):
    def find(self, query: str, audiences: Collection[str], phones: Collection[str], limit: int) -> list[TextHit]:
        """Messages stored for one of `audiences` with one of `phones` that contain every word of `query` (the
        last may be a word's start), best first: at most one per phone and audience, `limit` in all."""


def fold(text: str) -> str:
    """Lower case without accents, as the FTS5 tokenizer compares: simple lower case, not casefold(), which
    would turn ß into ss where FTS5 keeps ß."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The distinct folded words of `text`, in order."""
    return list(dict.fromkeys(_WORD.findall(fold(text))))


WAITING = "SELECT EXISTS (SELECT 1 FROM messages_to_index) AS waiting"  # 1 while a stored message is not indexed
_INDEX = "INSERT OR IGNORE INTO message_search (sid) SELECT sid FROM messages_to_index ORDER BY message_rowid"


class SqliteSearch:
    def __init__(self, db: SqliteStore, *, background: bool) -> None:
        """`background`: index on a thread of its own (a file store); otherwise as each message is stored."""
        self._db = db
        self._wanted = threading.Event()
        self._closing = threading.Event()
        self._indexer: threading.Thread | None = None
        if background:
            self._indexer = threading.Thread(target=self._index_loop, name="sqlite-search-index", daemon=True)
            self._indexer.start()

    def stored(self) -> None:
        """A message was committed: it is indexed within INDEX_SECONDS, or by the next search."""
        if self._indexer is None:
            self.index_waiting()
        else:
            self._wanted.set()

    def index_waiting(self) -> None:
        """Index every message not indexed yet, whichever process stored it; a read when there is none."""
        if self._db.read(WAITING)[0]["waiting"]:
            self._db.write(lambda conn: conn.execute(_INDEX).rowcount)

    def close(self) -> None:
        """What is still waiting is indexed before the store closes."""
        self._closing.set()
        self._wanted.set()
        if self._indexer is not None and self._indexer.is_alive():
            self._indexer.join()

    def _index_loop(self) -> None:
        while not self._closing.is_set():
            self._wanted.wait()
            self._closing.wait(INDEX_SECONDS)  # what is stored meanwhile goes in the same transaction
            self._wanted.clear()
            try:
                self.index_waiting()
            except StoreError as exc:  # a full disk, say: the next message or search tries again
                log.warning("search index not updated, will retry: %s", exc)

    def find(self, query: str, audiences: Collection[str], phones: Collection[str], limit: int) -> list[TextHit]:
        terms = words(query)[:MAX_WORDS]
        if not terms or not phones or not audiences:
            return []
        self.index_waiting()
        match = " ".join(f'"{t}"' for t in terms) + "*"  # \w+ words hold no quote to escape
        rows = self._db.read(
            """WITH hits AS (
                 SELECT m.sid, m.phone, m.web_app_id, m.created_at, bm25(message_fts) AS rank,
                        coalesce(json_extract(m.payload, '$.displayBody'), m.body) AS body
                 FROM message_fts JOIN message_search s ON s.rowid = message_fts.rowid
                 JOIN messages m ON m.sid = s.sid
                 WHERE message_fts MATCH ?
                   AND m.phone IN (SELECT value FROM json_each(?))
                   AND m.web_app_id IN (SELECT value FROM json_each(?))),
               best AS (
                 SELECT *, row_number() OVER (
                   PARTITION BY phone, web_app_id ORDER BY rank, created_at DESC) AS n FROM hits)
               SELECT * FROM best WHERE n = 1 ORDER BY rank, created_at DESC LIMIT ?""",
            (match, json.dumps(list(phones)), json.dumps(list(audiences)), limit),
        )
        return [
            TextHit(
                r["sid"],
                r["phone"],
                r["web_app_id"],
                r["body"],
                datetime.fromtimestamp(r["created_at"], UTC),
                float(r["rank"]),
            )
            for r in rows
        ]


class TableSearch:
    def __init__(self, db: TableStore) -> None:
        self._db = db

    @staticmethod
    def rows(message: MessageRecord) -> list[dict[str, Any]]:
        """The index rows of one message, all in its desk's partition (upserts, so a retried save may rewrite
        them); none for a line in the thread."""
        if message.direction == "event":
            return []
        pk, key = enc(message.web_app_id), _history_key(message)
        fields = {"sid": message.sid, "phone": message.phone, "created_at": stamp(message.created_at)}
        return [{"PartitionKey": pk, "RowKey": _row_key(w, key), **fields} for w in words(message.body)[:INDEXED]]

    def forget(self, message: MessageRecord) -> None:
        """Purge's part: the rows `index` wrote; a concurrent purge may have deleted some already."""
        if message.direction == "event":
            return
        pk, key = enc(message.web_app_id), _history_key(message)
        with guard("forget message words"):
            for w in words(message.body)[:INDEXED]:
                self._db.table(TABLE).delete_entity(pk, _row_key(w, key))  # a missing row is no error

    def find(self, query: str, audiences: Collection[str], phones: Collection[str], limit: int) -> list[TextHit]:
        terms = words(query)[:MAX_WORDS]
        wanted = set(phones)
        if not terms or not wanted or not audiences:
            return []
        found: list[tuple[int, str, str, str]] = []  # (order, sid, phone, audience): newest first in each desk
        with guard("search"):
            for audience in dict.fromkeys(audiences):
                rows: dict[str, dict[str, Any]] | None = None
                for i, term in enumerate(terms):
                    got = self._scan(enc(audience), term, prefix=i == len(terms) - 1)
                    rows = got if rows is None else {sid: r for sid, r in rows.items() if sid in got}
                    if not rows:
                        break
                for sid, r in (rows or {}).items():
                    if r["phone"] in wanted:
                        found.append((MAX_STAMP - int(r["created_at"]), sid, str(r["phone"]), audience))
        found.sort()
        best: dict[tuple[str, str], str] = {}
        for _, sid, phone, audience in found:
            best.setdefault((phone, audience), sid)
            if len(best) >= limit:
                break
        with guard("search bodies"), ThreadPoolExecutor(BODY_READERS) as pool:
            messages = list(pool.map(self._db.get_message, best.values()))
        return [
            TextHit(m.sid, m.phone, m.web_app_id, str(m.payload.get("displayBody", m.body)), m.created_at, float(rank))
            for rank, m in enumerate(messages)
            if m is not None
        ]

    def _scan(self, pk: str, term: str, *, prefix: bool) -> dict[str, dict[str, Any]]:
        """A word's rows in one desk partition (every word that starts with it when `prefix`), by sid."""
        start = _PREFIX + enc(term[:MAX_WORD])
        low, high = (start, _next(start)) if prefix else (start + _SEP, start + chr(ord(_SEP) + 1))
        rows = self._db.query(
            TABLE,
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": pk, "low": low, "high": high},
            limit=SCAN_LIMIT,
            select=["sid", "phone", "created_at"],
        )
        return {str(r["sid"]): r for r in rows}


def _history_key(message: MessageRecord) -> str:
    """Newest first under a word; the sid makes it unique."""
    return f"{MAX_STAMP - int(stamp(message.created_at)):0{STAMP_WIDTH}d}{enc(message.sid)}"


def _row_key(word: str, history_key: str) -> str:
    return f"{_PREFIX}{enc(word[:MAX_WORD])}{_SEP}{history_key}"


def _next(key: str) -> str:
    """The smallest string above every string that starts with `key`."""
    return key[:-1] + chr(ord(key[-1]) + 1)
