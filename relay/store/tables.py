"""The Azure Table Storage store: the same contract as SqliteStore, built from single-entity conditional writes.

Table Storage has no multi-table transactions, so every multi-step write starts with the conditional insert that
decides the outcome and carries everything the remaining steps need; those steps are idempotent, and a retried
(duplicate) write reruns them, so it finishes an interrupted one instead of losing its pending event.
Concurrency is arbitrated by conditional inserts (409) and etag-conditional updates and deletes (412),
never by check-then-write.
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

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
from relay.store.tablekit import (
    MAX_STAMP,
    RETRIES,
    STAMP_WIDTH,
    backoff,
    enc,
    etag,
    from_stamp,
    guard,
    stamp,
    status_of,
)

IF_UNCHANGED = MatchConditions.IfNotModified
TRANSACTION_LIMIT = 100  # operations in one entity-group transaction
CARRIED_KEPT = 10_000
MESSAGES = "messages"  # one entity per sid: the dedupe arbiter, carrying its pending event's recipe
HISTORY = "phonehistory"  # the same messages again, partitioned by phone, newest first
STATUSES = "statuses"  # partitioned by sid, one row per status
EVENTS = "events"  # partitioned by audience: events, receipts and head; summaries and word index beside them
CONVERSATIONS = EVENTS  # in the audience's partition, so a message's summary moves in its event's transaction
KV = "kv"
HITS = "hits"  # one row per hit, RowKey = time + random

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,40}")
# RowKeys in an audience's events partition; the event rows' range, s..t, holds nothing else.
_HEAD = "h"  # the last sequence number given out, written in the same transaction as that event
_SEQ = "s"  # + 20 digits: the events in the order a reader must see them
_RECEIPT = "x"  # + an event's id: the sequence number it got, so a retry never stores it twice
_SUMMARY = "c"  # + the phone: the audience's conversation summaries (search.py's word index is under "w")
_SEQ_WIDTH = 20
_CURSOR = re.compile(r"[0-9]{1,18}(-[0-9]{1,18})*")
_PAGE = 1000  # the service's largest page
KV_POINT_READS = 20
SUMMARIES_KEPT = 10_000  # summaries this process wrote last, with their etags (a write then needs no read)
SENT_KEPT = 10_000  # outbound messages this process stored, for their status callbacks without a read
SENT_SECONDS = 600.0  # Twilio calls back within minutes; far inside the shortest retention (a day)


def _descending(sid: str) -> str:
    """Sorts in descending byte order of sid, as SQLite's ORDER BY sid DESC (the service returns RowKeys ascending)."""
    return "".join(f"{255 - b:02x}" for b in sid.encode()) + "gg"


def conversation_key(phone: str) -> str:
    return _SUMMARY + enc(phone)


def _history_key(created_at: datetime, sid: str) -> str:
    return f"{MAX_STAMP - int(stamp(created_at)):0{STAMP_WIDTH}d}{_descending(sid)}"


class _Keys:
    """Event ids and the statuses' recorded order: zero-padded time_ns (strictly increasing per process) and a
    random suffix. Never a cursor: each instance's clock is its own (docs/catch-up.md)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            ns = self._last
        return f"{ns:0{STAMP_WIDTH}d}{secrets.token_hex(4)}"


class TableStore:
    # Most marks ride in the next append to their desk (mark_soon); what is left after one or two windows is written
    # in one transaction per desk, well inside the 15 s an outbox timer waits before it publishes an event again.
    mark_window = 5.0

    def __init__(self, connection_string: str, *, table_prefix: str = "relay", timeout_seconds: float = 5.0) -> None:
        if not _PREFIX.fullmatch(table_prefix):
            raise ValueError("table_prefix must be a letter followed by up to 40 letters or digits")
        self._prefix = table_prefix
        self._keys = _Keys()
        self._heads: dict[str, int] = {}  # per audience, the last sequence number this process took
        self._appenders: dict[str, threading.Lock] = {}
        # Published marks the outbox will ask for, per audience partition: the next append there carries them in
        # its own transaction, so under steady traffic a mark costs no round trip of its own.
        self._to_mark: dict[str, dict[str, dict[str, Any]]] = {}
        # Written by an append, so mark_published skips them. Bounded: a mark that raced its append and was written
        # twice is never asked for again, and one forgotten here is only written once more.
        self._carried: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._marks_lock = threading.Lock()
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}
        # What this process last wrote of a summary and the etag it got: a stale entry costs a 412 and a read.
        self._summaries: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()
        self._copies_lock = threading.Lock()
        # An outbound message's row never changes once stored (only unrouted inbound ones move on a claim).
        self._sent: OrderedDict[str, tuple[float, MessageRecord]] = OrderedDict()
        attempt = timeout_seconds / 2  # two attempts at most, so a dead store fails within about timeout_seconds
        try:
            self._service = TableServiceClient.from_connection_string(
                connection_string,
                connection_timeout=attempt,
                read_timeout=attempt,
                retry_total=1,
                retry_connect=1,
                retry_read=1,
                retry_status=1,
                retry_backoff_factor=0.1,
                retry_backoff_max=0.5,
            )
        except (ValueError, AzureError):
            raise StoreError("the Table Storage connection string is not valid") from None
        self.desks: desks.DeskStore = desks.TableDesks(self)
        self.owners: owners.OwnerStore = owners.TableOwners(self)
        self.staff: staff.SessionStore = staff.TableSessions(self)
        self.reminders: reminders.ReminderStore = reminders.TableReminders(self)
        self.contacts: contacts.ContactStore = contacts.TableContacts(self)
        self.scheduled: scheduled.ScheduledStore = scheduled.TableScheduled(self)
        self.templates: templates.TemplateStore = templates.TableTemplates(self)
        self.words = search.TableSearch(self)  # written with each message, dropped by purge
        self.search: search.SearchStore = self.words

    # -- plumbing

    def table(self, name: str) -> TableClient:
        """The table client, creating the table on first use in this process.

        Names stay lower case: Azurite answers "table does not exist" to some queries on mixed-case names."""
        client = self._tables.get(name)
        if client is not None:
            return client
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                with guard("create table"):
                    client = self._service.create_table_if_not_exists(f"{self._prefix}{name}")
                self._tables[name] = client
            return client

    def entity(self, table: str, pk: str, rk: str) -> dict[str, Any] | None:
        try:
            entity: dict[str, Any] = self.table(table).get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        return entity

    def query(
        self,
        table: str,
        query_filter: str,
        parameters: dict[str, Any],
        *,
        limit: int | None = None,
        select: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        per_page = _PAGE if limit is None else max(1, min(limit, _PAGE))
        rows: Iterator[dict[str, Any]] = iter(
            self.table(table).query_entities(
                query_filter, parameters=parameters, results_per_page=per_page, select=select
            )
        )
        return list(rows if limit is None else islice(rows, max(0, limit)))

    def _append_event(self, event: Event, message: MessageRecord | None = None) -> Event:
        """Store the event under the next sequence number of its audience; `event.key` is its id, fixed before the
        first attempt. One transaction in the audience's partition inserts the event row, inserts its receipt
        and moves the head, so number n is only ever tried after n - 1 was seen committed, and a reader that has
        seen n can never be passed by an event below it. With `message`, the same transaction updates that
        audience's conversation summary and (for the desk it was stored for) writes its words to the search index,
        so neither can be done twice or left undone. A conflict means the number was taken (try the next), the
        receipt exists (a retry: everything is already stored) or the summary changed (read it again). The
        published marks waiting for the partition (mark_soon) ride along in the same transaction."""
        pk = enc(event.audience)
        with self._lock:
            turn = self._appenders.setdefault(pk, threading.Lock())
        # One append per audience at a time in this process: its threads would only take numbers from each other.
        if not turn.acquire(timeout=self._timeout):
            raise StoreError("Table Storage event append timed out waiting its turn")
        try:
            return self._append_in_turn(pk, event, message)
        finally:
            turn.release()

    def _append_in_turn(self, pk: str, event: Event, message: MessageRecord | None) -> Event:
        words = self._words_of(message, event.audience)
        marks = self._take_marks(pk, TRANSACTION_LIMIT - 4 - len(words))
        try:
            stored = self._append_with(pk, event, message, words, marks)
        except BaseException:
            self._return_marks(pk, marks)
            raise
        with self._marks_lock:
            for _, row, _ in marks:
                self._carried[(pk, str(row["RowKey"]))] = None
            while len(self._carried) > CARRIED_KEPT:
                self._carried.popitem(last=False)
        return stored

    def _append_with(
        self, pk: str, event: Event, message: MessageRecord | None, words: list[Any], marks: list[Any]
    ) -> Event:
        event_id, table = event.key, self.table(EVENTS)
        seq = self._heads.get(pk)
        if seq is None:
            seq = self._head(pk)
        fresh = False  # read the summary, not this process's copy
        for _ in range(RETRIES):
            seq += 1
            row = {
                "PartitionKey": pk,
                "RowKey": _seq_key(seq),
                "event_id": event_id,
                "audience": event.audience,
                "kind": event.kind,
                "payload": json.dumps(event.payload),
                "created_at": stamp(event.created_at),
                "published": event.published,
            }
            receipt = {"PartitionKey": pk, "RowKey": _RECEIPT + event_id, "seq": seq, "created_at": row["created_at"]}
            head = {"PartitionKey": pk, "RowKey": _HEAD, "seq": seq}
            summary = self._summary_op(message, event.audience, fresh=fresh) if message is not None else None
            ops: list[Any] = [("create", receipt), ("create", row), ("upsert", head)]
            ops += [summary] if summary else []
            try:
                results = table.submit_transaction([*ops, *words, *marks])
                self._heads[pk] = seq
                if summary:
                    self._remember(summary[1], str(results[3]["etag"]))
                return replace(event, key=_event_key(seq, event_id))
            except TableTransactionError as exc:
                if not status_of(exc, 404, 409, 412):
                    raise
                failed = exc.index  # the service names the failed operation; 0 is also its "unknown"
            if failed >= len(ops) + len(words) and failed - len(ops) - len(words) < len(marks):
                del marks[failed - len(ops) - len(words)]  # its event was purged: mark_published skips it
                seq -= 1
                continue
            if summary:
                self._forget_summary(summary[1]["PartitionKey"], summary[1]["RowKey"])
            fresh = True
            if summary and failed == 3:  # only the summary had changed: the same number again, after a read
                seq -= 1
                continue
            taken = failed == 1
            stored = None if taken else self.entity(EVENTS, pk, _RECEIPT + event_id)
            if stored is not None:
                return replace(event, key=_event_key(int(stored["seq"]), event_id))
            # Never a number above one not seen committed: the next is above the head, or this one again.
            seq = max(seq if taken else seq - 1, self._head(pk))
        raise StoreError("Table Storage event sequence kept conflicting")

    def _head(self, pk: str) -> int:
        head = self.entity(EVENTS, pk, _HEAD)
        return int(head["seq"]) if head is not None else 0

    @staticmethod
    def _event_fields(event: Event, key: str) -> dict[str, Any]:
        """The event kept on the record that causes it, so a retry can finish storing it under the same id."""
        return {
            "event_key": key,
            "event_audience": event.audience,
            "event_kind": event.kind,
            "event_payload": json.dumps(event.payload),
            "event_created_at": stamp(event.created_at),
        }

    @staticmethod
    def _stored_event(entity: dict[str, Any]) -> Event:
        return Event(
            audience=entity["event_audience"],
            kind=entity["event_kind"],
            payload=json.loads(entity["event_payload"]),
            created_at=from_stamp(entity["event_created_at"]),
            key=entity["event_key"],
        )

    # -- messages

    def save_message(self, message: MessageRecord, event: Event) -> Event | None:
        stored = self.save_line(message, [event])
        return stored[0] if stored else None

    def save_line(self, message: MessageRecord, events: list[Event]) -> list[Event] | None:
        first, *others = events
        entity: dict[str, Any] = {
            "PartitionKey": enc(message.sid),
            "RowKey": "m",
            **_message_fields(message),
            **self._event_fields(first, self._keys.next()),
        }
        if others:  # the other desks' events ride on the arbiter too, so a retry recreates them under the same keys
            entity["also_events"] = json.dumps([self._event_fields(e, self._keys.next()) for e in others])
        with guard("save_message"):
            try:
                self.table(MESSAGES).create_entity(entity)
            except ResourceExistsError:
                stored = self.entity(MESSAGES, entity["PartitionKey"], "m")
                if stored is not None:
                    self._finish_message(stored)
                return None
            if message.direction == "outbound":
                self._keep_sent(_message(entity))
            return self._finish_message(entity)

    def _keep_sent(self, message: MessageRecord) -> None:
        with self._copies_lock:
            self._sent[message.sid] = (time.monotonic(), message)
            while len(self._sent) > SENT_KEPT:
                self._sent.popitem(last=False)

    def _finish_message(self, entity: dict[str, Any]) -> list[Event]:
        """The idempotent tail of save_message, rerun by duplicates: history row, then each event in one
        transaction with its audience's summary (and the stored-for desk's word index)."""
        others = [self._stored_event(fields) for fields in json.loads(entity.get("also_events") or "[]")]
        events = [self._stored_event(entity), *others]
        message = _message(entity)
        self._put_history(message)
        unsummarised = list(dict.fromkeys([message.web_app_id, *(e.audience for e in others)]))
        stored = []
        for event in events:
            summarise = event.audience in unsummarised
            if summarise:
                unsummarised.remove(event.audience)
            stored.append(self._append_event(event, message if summarise else None))
        for audience in unsummarised:  # a desk whose summary changes with no event of its own
            self._bump_conversation(message, audience)
        return stored

    def _put_history(self, message: MessageRecord) -> None:
        self.table(HISTORY).upsert_entity(
            {
                "PartitionKey": enc(message.phone),
                "RowKey": _history_key(message.created_at, message.sid),
                **_message_fields(message),
            },
            mode=UpdateMode.REPLACE,
        )

    def _words_of(self, message: MessageRecord | None, audience: str) -> list[Any]:
        if message is None or message.web_app_id != audience:
            return []
        return [("upsert", row) for row in self.words.rows(message)]

    def _bump_conversation(self, message: MessageRecord, audience: str) -> None:
        """The summary (and word index) write of `_append_event`, for an audience without an event."""
        words = self._words_of(message, audience)
        fresh = False
        for _ in range(RETRIES):
            summary = self._summary_op(message, audience, fresh=fresh)
            if summary is None and not words:
                return
            try:
                results = self.table(CONVERSATIONS).submit_transaction(([summary] if summary else []) + words)
                if summary:
                    self._remember(summary[1], str(results[0]["etag"]))
                return
            except TableTransactionError as exc:
                if not status_of(exc, 404, 409, 412):
                    raise
            if summary:
                self._forget_summary(summary[1]["PartitionKey"], summary[1]["RowKey"])
            fresh = True
            backoff()
        raise StoreError("Table Storage conversation update kept conflicting")

    def _summary_op(self, message: MessageRecord, audience: str, *, fresh: bool) -> Any:
        """The transaction operation that brings the audience's summary up to `message`, or None when it is
        already there or newer. A newer message replaces the summary; inbound adds an unread, outbound resets,
        a line keeps them; last_sid makes it idempotent. Conditional on the etag of this process's last write of
        the row when it has one (no read), else of a fresh read: a changed row fails the transaction (412)."""
        pk, rk = enc(audience), conversation_key(message.phone)
        with self._copies_lock:
            known = None if fresh else self._summaries.get((pk, rk))
        current: dict[str, Any] | None
        if known is not None:
            version, current = known
        else:
            current = self.entity(CONVERSATIONS, pk, rk)
            version = etag(current) if current is not None else ""
        at_stamp = stamp(message.created_at)
        inbound = message.direction == "inbound"
        display, media = shown_in_list(message)
        row: dict[str, Any] = {
            "PartitionKey": pk,
            "RowKey": rk,
            "web_app_id": audience,
            "phone": message.phone,
            "our_side": message.our_side,
            "last_sid": message.sid,
            "last_body": message.body,
            "last_direction": message.direction,
            "last_at": at_stamp,
            "unread": 1 if inbound else 0,
            "done": False,
            "last_display": display,
            "last_media": media,
        }
        if current is None:
            return ("create", row)
        if current["last_sid"] == message.sid or at_stamp < current["last_at"]:
            # Nothing to write, so no etag would catch a stale copy: only a read may say so.
            return None if known is None else self._summary_op(message, audience, fresh=True)
        unread = int(current["unread"])
        row["unread"] = unread + 1 if inbound else 0 if message.direction == "outbound" else unread
        row["done"] = not reopens(message, audience) and bool(current.get("done", False))
        return ("update", row, {"mode": UpdateMode.REPLACE, "etag": version, "match_condition": IF_UNCHANGED})

    def _remember(self, row: dict[str, Any], version: str) -> None:
        with self._copies_lock:
            key = (str(row["PartitionKey"]), str(row["RowKey"]))
            self._summaries[key] = (version, dict(row))
            self._summaries.move_to_end(key)
            while len(self._summaries) > SUMMARIES_KEPT:
                self._summaries.popitem(last=False)

    def _forget_summary(self, pk: str, rk: str) -> None:
        """Before this process changes a summary by other means (its etag changes)."""
        with self._copies_lock:
            self._summaries.pop((pk, rk), None)

    def get_message(self, sid: str) -> MessageRecord | None:
        with self._copies_lock:
            kept = self._sent.get(sid)
        if kept is not None and time.monotonic() - kept[0] < SENT_SECONDS:
            return kept[1]
        with guard("get_message"):
            entity = self.entity(MESSAGES, enc(sid), "m")
        return _message(entity) if entity is not None else None

    # -- statuses

    def add_status(self, status: StatusRecord, event: Event) -> Event | None:
        entity: dict[str, Any] = {
            "PartitionKey": enc(status.sid),
            "RowKey": enc(status.status),
            "sid": status.sid,
            "status": status.status,
            "error_code": status.error_code,
            "error_message": status.error_message,
            "at": stamp(status.at),
            **self._event_fields(event, self._keys.next()),  # the event key doubles as the recorded order
        }
        with guard("add_status"):
            try:
                self.table(STATUSES).create_entity(entity)
            except ResourceExistsError:
                stored = self.entity(STATUSES, entity["PartitionKey"], entity["RowKey"])
                if stored is not None:
                    self._append_event(self._stored_event(stored))
                return None
            return self._append_event(self._stored_event(entity))

    def statuses(self, sid: str) -> list[StatusRecord]:
        with guard("statuses"):
            rows = self.query(STATUSES, "PartitionKey eq @pk", {"pk": enc(sid)})
        rows.sort(key=lambda r: str(r["event_key"]))
        return [
            StatusRecord(r["sid"], r["status"], r.get("error_code"), r.get("error_message"), from_stamp(r["at"]))
            for r in rows
        ]

    def statuses_of(self, sids: list[str]) -> dict[str, list[StatusRecord]]:
        found: dict[str, list[StatusRecord]] = {sid: [] for sid in sids}
        for start in range(0, len(sids), 20):  # OR-ed partition keys keep the query URL short
            chunk = sids[start : start + 20]
            query = " or ".join(f"PartitionKey eq @p{i}" for i in range(len(chunk)))
            with guard("statuses_of"):
                rows = self.query(STATUSES, query, {f"p{i}": enc(sid) for i, sid in enumerate(chunk)})
            for r in sorted(rows, key=lambda r: str(r["event_key"])):
                found[str(r["sid"])].append(
                    StatusRecord(
                        r["sid"], r["status"], r.get("error_code"), r.get("error_message"), from_stamp(r["at"])
                    )
                )
        return found

    # -- history and conversations

    def history(
        self, phone: str, before: str | None, limit: int, *, until: datetime | None = None, audience: str | None = None
    ) -> tuple[list[MessageRecord], str | None]:
        query_filter = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": enc(phone)}
        if before:
            query_filter += " and RowKey gt @before"
            parameters["before"] = before
        if until is not None:
            query_filter += " and created_at le @until"
            parameters["until"] = stamp(until)
        if audience is not None:
            query_filter += " and web_app_id eq @audience"
            parameters["audience"] = audience
        with guard("history"):
            rows = self.query(HISTORY, query_filter, parameters, limit=limit + 1)
        page = rows[: max(0, limit)]
        cursor = str(page[-1]["RowKey"]) if len(rows) > limit and page else None
        return [_message(r) for r in page], cursor

    def conversations(self, web_app_id: str) -> list[Conversation]:
        with guard("conversations"):
            rows = self.query(
                CONVERSATIONS,
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                {"pk": enc(web_app_id), "low": _SUMMARY, "high": chr(ord(_SUMMARY) + 1)},
            )
        rows.sort(key=lambda r: str(r["last_at"]), reverse=True)
        return [_conversation(r) for r in rows]

    def mark_read(self, web_app_id: str, phone: str) -> None:
        pk, rk = enc(web_app_id), conversation_key(phone)
        self._forget_summary(pk, rk)
        with guard("mark_read"), suppress(ResourceNotFoundError):
            self.table(CONVERSATIONS).update_entity(
                {"PartitionKey": pk, "RowKey": rk, "unread": 0}, mode=UpdateMode.MERGE
            )

    def set_done(self, web_app_id: str, phone: str, done: bool) -> bool | None:
        pk, rk = enc(web_app_id), conversation_key(phone)
        self._forget_summary(pk, rk)
        with guard("set_done"):
            for _ in range(RETRIES):
                current = self.entity(CONVERSATIONS, pk, rk)
                if current is None:
                    return None
                if bool(current.get("done", False)) == done:
                    return False
                try:
                    self.table(CONVERSATIONS).update_entity(
                        {"PartitionKey": pk, "RowKey": rk, "done": done},
                        mode=UpdateMode.MERGE,
                        etag=etag(current),
                        match_condition=IF_UNCHANGED,
                    )
                    return True
                except HttpResponseError as exc:
                    if status_of(exc, 404):
                        return None
                    if not status_of(exc, 412):
                        raise
                backoff()
        raise StoreError("Table Storage done mark kept conflicting")

    def claim(self, phone: str, web_app_id: str, event: Event) -> Event | None:
        with guard("claim"):
            unrouted = self._take_unrouted(phone)
            if unrouted is None:
                return None
            self._repoint_unrouted(phone, web_app_id)
            self._merge_claimed(unrouted, web_app_id)
            return self._append_event(replace(event, key=self._keys.next()))

    def _take_unrouted(self, phone: str) -> dict[str, Any] | None:
        """The arbiter: an etag-conditional delete of the unrouted summary; exactly one concurrent claimer succeeds."""
        pk, rk = enc(UNROUTED), conversation_key(phone)
        self._forget_summary(pk, rk)
        for _ in range(RETRIES):
            current = self.entity(CONVERSATIONS, pk, rk)
            if current is None:
                return None
            try:
                # A one-operation transaction, because delete_entity reports success for a row that is already gone.
                self.table(CONVERSATIONS).submit_transaction(
                    [
                        (
                            "delete",
                            {"PartitionKey": pk, "RowKey": rk},
                            {"etag": etag(current), "match_condition": IF_UNCHANGED},
                        )
                    ]
                )
                return current
            except HttpResponseError as exc:
                if status_of(exc, 404):
                    return None
                if not status_of(exc, 412):
                    raise
            backoff()
        raise StoreError("Table Storage claim kept conflicting")

    def _repoint_unrouted(self, phone: str, web_app_id: str) -> None:
        """The claimer now holds what arrived unrouted, so a redelivered webhook finishes with it, not unrouted."""
        for row in self.query(HISTORY, "PartitionKey eq @pk and web_app_id eq @u", {"pk": enc(phone), "u": UNROUTED}):
            moved = replace(_message(row), web_app_id=web_app_id)
            with suppress(ResourceNotFoundError):
                self.table(MESSAGES).update_entity(
                    {"PartitionKey": enc(moved.sid), "RowKey": "m", "web_app_id": web_app_id}, mode=UpdateMode.MERGE
                )
            self._put_history(moved)

    def _merge_claimed(self, unrouted: dict[str, Any], web_app_id: str) -> None:
        """Fold the unrouted summary into the desk's: the newer last message wins and unread counts add up."""
        pk, rk = enc(web_app_id), str(unrouted["RowKey"])
        self._forget_summary(pk, rk)
        table = self.table(CONVERSATIONS)
        for _ in range(RETRIES):
            current = self.entity(CONVERSATIONS, pk, rk)
            row = {k: unrouted[k] for k in unrouted if k not in ("PartitionKey", "RowKey")}
            row.update(PartitionKey=pk, RowKey=rk, web_app_id=web_app_id)
            try:
                if current is None:
                    table.create_entity(row)
                    return
                if unrouted["last_at"] < current["last_at"]:
                    return
                row["our_side"] = current["our_side"]
                row["unread"] = int(current["unread"]) + int(unrouted["unread"])
                row["done"] = False  # what the patient wrote meanwhile reopens it
                table.update_entity(row, mode=UpdateMode.REPLACE, etag=etag(current), match_condition=IF_UNCHANGED)
                return
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if not status_of(exc, 404, 412):
                    raise
            backoff()
        raise StoreError("Table Storage conversation merge kept conflicting")

    # -- events

    def events_after(self, audiences: list[str], after: str | None, limit: int) -> EventPage:
        """The cursor holds one sequence number per audience, in the order given; audiences are merged by
        time, each kept in sequence order, so a page cut at `limit` still ends at a position of each."""
        parts = list(dict.fromkeys(audiences))
        positions = _positions(after, len(parts))
        if limit <= 0 or not parts:
            return EventPage([], after)
        with guard("events_after"):
            streams = [
                [(str(r["created_at"]), i, r) for r in self._events_of(enc(audience), position, limit)]
                for i, (audience, position) in enumerate(zip(parts, positions, strict=True))
            ]
        page = list(islice(heapq.merge(*streams, key=lambda item: item[0]), limit))
        for _, i, r in page:
            positions[i] = _seq_of(r)
        events = [_event(r) for _, _, r in page]
        return EventPage(events, "-".join(map(str, positions)) if events else after)

    def _events_of(self, pk: str, position: int, limit: int) -> list[dict[str, Any]]:
        """The next events of one audience. A number missing below one that is there was either committed since
        the query passed it (it was committed before the later one was tried) or purged; a second read tells."""
        query_filter = "PartitionKey eq @pk and RowKey gt @after and RowKey lt @end"
        parameters = {"pk": pk, "after": _seq_key(position), "end": chr(ord(_SEQ) + 1)}
        rows = self.query(EVENTS, query_filter, parameters, limit=limit)
        if rows and _seq_of(rows[-1]) != position + len(rows):
            parameters["end"] = _seq_key(_seq_of(rows[-1]) + 1)
            rows = self.query(EVENTS, query_filter, parameters, limit=limit)
        return rows

    def pending_events(self, created_before: datetime, limit: int) -> list[Event]:
        """A cross-partition scan sorted here: unpublished events are few, since publishing follows storing."""
        with guard("pending_events"):
            rows = self.query(
                "events", "published eq false and created_at lt @before", {"before": stamp(created_before)}
            )
        rows.sort(key=lambda r: (str(r["created_at"]), str(r["RowKey"])))
        return [_event(r) for r in rows[: max(0, limit)]]

    def mark_soon(self, event: Event) -> None:
        pk, rk, row = _mark(event)
        with self._marks_lock:
            self._to_mark.setdefault(pk, {})[rk] = row

    def _take_marks(self, pk: str, room: int) -> list[Any]:
        with self._marks_lock:
            waiting = self._to_mark.get(pk, {})
            taken = [waiting.pop(rk) for rk in list(waiting)[: max(0, room)]]
            if not waiting:
                self._to_mark.pop(pk, None)
        return [_merge(row) for row in taken]

    def _return_marks(self, pk: str, marks: list[Any]) -> None:
        with self._marks_lock:
            for _, row, _ in marks:
                self._to_mark.setdefault(pk, {})[str(row["RowKey"])] = row

    def mark_published(self, *events: Event) -> None:
        """One transaction per audience partition and hundred events; an event purged meanwhile is left out, and
        so is one whose mark an append carried since (mark_soon)."""
        marks: dict[str, dict[str, dict[str, Any]]] = {}
        with self._marks_lock:
            for event in events:
                pk, rk, row = _mark(event)
                waiting = self._to_mark.get(pk)
                if waiting is not None:
                    waiting.pop(rk, None)
                    if not waiting:
                        del self._to_mark[pk]
                if (pk, rk) in self._carried:
                    del self._carried[(pk, rk)]
                    continue
                marks.setdefault(pk, {})[rk] = row
        with guard("mark_published"):
            for rows in marks.values():
                todo = list(rows.values())
                while todo:
                    chunk, todo = todo[:TRANSACTION_LIMIT], todo[TRANSACTION_LIMIT:]
                    while chunk:
                        try:
                            self.table(EVENTS).submit_transaction([_merge(r) for r in chunk])
                            break
                        except TableTransactionError as exc:
                            if not status_of(exc, 404):
                                raise
                            del chunk[exc.index]  # gone: nothing to mark

    # -- key/value

    def kv_get(self, namespace: str, key: str, now: datetime) -> dict[str, Any] | None:
        with guard("kv_get"):
            entity = self.entity(KV, enc(namespace), enc(key))
        if entity is None or _expired(entity, now):
            return None
        value: dict[str, Any] = json.loads(entity["value"])
        return value

    def kv_many(self, namespace: str, keys: list[str], now: datetime) -> dict[str, dict[str, Any]]:
        """Point reads for a few keys; past KV_POINT_READS one read of the namespace's partition costs less."""
        unique = set(keys)
        if len(unique) <= KV_POINT_READS:
            found = {k: self.kv_get(namespace, k, now) for k in unique}
            return {k: v for k, v in found.items() if v is not None}
        with guard("kv_many"):
            rows = self.query(KV, "PartitionKey eq @pk", {"pk": enc(namespace)})
        return {str(r["key"]): json.loads(r["value"]) for r in rows if r["key"] in unique and not _expired(r, now)}

    def kv_put(self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None) -> None:
        with guard("kv_put"):
            self.table(KV).upsert_entity(_kv_row(namespace, key, value, expires_at), mode=UpdateMode.REPLACE)

    def kv_insert(
        self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None, now: datetime
    ) -> bool:
        row = _kv_row(namespace, key, value, expires_at)
        with guard("kv_insert"):
            table = self.table(KV)
            for _ in range(RETRIES):
                try:
                    table.create_entity(row)
                    return True
                except ResourceExistsError:
                    pass
                current = self.entity(KV, row["PartitionKey"], row["RowKey"])
                if current is None:
                    continue
                if not _expired(current, now):
                    return False
                try:
                    table.update_entity(
                        row,
                        mode=UpdateMode.REPLACE,
                        etag=etag(current),
                        match_condition=IF_UNCHANGED,
                    )
                    return True
                except HttpResponseError as exc:
                    if not status_of(exc, 404, 412):
                        raise
                backoff()
        raise StoreError("Table Storage kv_insert kept conflicting")

    def kv_delete(self, namespace: str, key: str) -> None:
        with guard("kv_delete"):
            self.table(KV).delete_entity(enc(namespace), enc(key))

    def kv_expired(self, namespace: str, now: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with guard("kv_expired"):
            rows = self.query(
                KV,
                "PartitionKey eq @pk and expires_at le @now",
                {"pk": enc(namespace), "now": stamp(now)},
                limit=limit,
            )
        return [(str(r["key"]), json.loads(r["value"])) for r in rows[:limit]]

    # -- hits

    def record_hit(self, namespace: str, key: str, at: datetime) -> str:
        with guard("record_hit"):
            for _ in range(RETRIES):
                row_key = f"{stamp(at)}{secrets.token_hex(8)}"
                try:
                    self.table(HITS).create_entity({"PartitionKey": _hits_of(namespace, key), "RowKey": row_key})
                    return row_key
                except ResourceExistsError:
                    continue
        raise StoreError("Table Storage record_hit kept colliding")

    def drop_hit(self, namespace: str, key: str, hit: str) -> None:
        with guard("drop_hit"):
            self.table(HITS).delete_entity(_hits_of(namespace, key), hit)

    def count_hits(self, namespace: str, key: str, since: datetime) -> tuple[int, datetime | None]:
        with guard("count_hits"):
            rows = self.query(
                "hits",
                "PartitionKey eq @pk and RowKey ge @since",
                {"pk": _hits_of(namespace, key), "since": stamp(since)},
                select=["RowKey"],
            )
        if not rows:
            return 0, None
        return len(rows), from_stamp(min(str(r["RowKey"]) for r in rows)[:STAMP_WIDTH])

    # -- housekeeping

    def purge(self, before: datetime) -> int:
        """SqliteStore.purge's rules, one entity at a time; every delete tolerates a concurrent purge."""
        cutoff = {"before": stamp(before)}
        deleted = 0
        with guard("purge"):
            for entity in self.query(MESSAGES, "created_at lt @before", cutoff):
                message = _message(entity)
                self.words.forget(message)
                self.table(HISTORY).delete_entity(enc(message.phone), _history_key(message.created_at, message.sid))
                self._delete_statuses(str(entity["PartitionKey"]))
                self.table(MESSAGES).delete_entity(entity["PartitionKey"], entity["RowKey"])
                deleted += 1
            for pk in {str(s["PartitionKey"]) for s in self.query(STATUSES, "at lt @before", cutoff)}:
                if self.entity(MESSAGES, pk, "m") is None:
                    self._delete_statuses(pk)
            # Receipts go with them (a retry that late is a new message by then); the heads stay, always.
            old_events = "created_at lt @before and (published eq true or RowKey ge @receipts )"
            for event in self.query(EVENTS, old_events, {**cutoff, "receipts": _RECEIPT}):
                self.table(EVENTS).delete_entity(event["PartitionKey"], event["RowKey"])
            self._delete_unchanged(CONVERSATIONS, "last_at lt @before", cutoff)
            with self._copies_lock:
                self._summaries.clear()
                self._sent.clear()
            self._delete_unchanged(KV, "expires_at lt @before", cutoff)
            for hit in self.query(HITS, "RowKey lt @before", cutoff, select=["PartitionKey", "RowKey"]):
                self.table(HITS).delete_entity(hit["PartitionKey"], hit["RowKey"])
        return deleted

    def _delete_statuses(self, pk: str) -> None:
        for status in self.query(STATUSES, "PartitionKey eq @pk", {"pk": pk}, select=["PartitionKey", "RowKey"]):
            self.table(STATUSES).delete_entity(status["PartitionKey"], status["RowKey"])

    def _delete_unchanged(self, table: str, query_filter: str, parameters: dict[str, Any]) -> None:
        """Delete the matches unless updated since the query (then they are no longer old)."""
        for entity in self.query(table, query_filter, parameters):
            try:
                self.table(table).delete_entity(
                    entity["PartitionKey"],
                    entity["RowKey"],
                    etag=etag(entity),
                    match_condition=IF_UNCHANGED,
                )
            except HttpResponseError as exc:
                if not status_of(exc, 412):
                    raise

    def ping(self) -> None:
        with guard("ping"):
            self.query(KV, "PartitionKey eq @pk", {"pk": "~"}, limit=1)  # needs no account-wide permission

    def heartbeat(self, key: str, now: datetime) -> Heartbeat:
        nonce = secrets.token_hex(8)
        row = _kv_row("heartbeat", key, {"nonce": nonce}, now + timedelta(days=1))
        with guard("heartbeat"):
            self.table(KV).upsert_entity(row, mode=UpdateMode.REPLACE)
            stored = self.entity(KV, row["PartitionKey"], row["RowKey"])
        if stored is None or json.loads(stored["value"]).get("nonce") != nonce:
            raise StoreError("Table Storage heartbeat read back something else")
        written: datetime | None = getattr(stored, "metadata", {}).get("timestamp")
        return Heartbeat(store_clock=written, wal_bytes=None)

    def close(self) -> None:
        with self._lock:
            self._tables.clear()
            self._service.close()


def _message_fields(m: MessageRecord) -> dict[str, Any]:
    return {
        "sid": m.sid,
        "direction": m.direction,
        "phone": m.phone,
        "our_side": m.our_side,
        "web_app_id": m.web_app_id,
        "body": m.body,
        "created_at": stamp(m.created_at),
        "payload": json.dumps(m.payload),
    }


def _message(r: dict[str, Any]) -> MessageRecord:
    return MessageRecord(
        sid=r["sid"],
        direction=r["direction"],
        phone=r["phone"],
        our_side=r["our_side"],
        web_app_id=r["web_app_id"],
        body=r["body"],
        created_at=from_stamp(r["created_at"]),
        payload=json.loads(r["payload"]),
    )


def _conversation(r: dict[str, Any]) -> Conversation:
    return Conversation(
        r["web_app_id"],
        r["phone"],
        r["our_side"],
        r["last_sid"],
        r["last_body"],
        r["last_direction"],
        from_stamp(r["last_at"]),
        int(r["unread"]),
        bool(r.get("done", False)),
        r.get("last_display"),
        int(r.get("last_media") or 0),
    )


def _seq_key(seq: int) -> str:
    return f"{_SEQ}{seq:0{_SEQ_WIDTH}d}"


def _seq_of(row: dict[str, Any]) -> int:
    return int(str(row["RowKey"])[1:])


def _event_key(seq: int, event_id: str) -> str:
    """Unique across audiences (the outbox tracks events by key), and it names the event's row."""
    return _seq_key(seq) + event_id


def _hits_of(namespace: str, key: str) -> str:
    """The partition that holds one counter's hits."""
    return f"{enc(namespace)}|{enc(key)}"


def _mark(event: Event) -> tuple[str, str, dict[str, Any]]:
    """The partition, row and merge row that mark an event published."""
    pk, rk = enc(event.audience), _row_key(event.key)
    return pk, rk, {"PartitionKey": pk, "RowKey": rk, "published": True}


def _merge(row: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    return ("update", row, {"mode": UpdateMode.MERGE})


def _row_key(key: str) -> str:
    return key[: 1 + _SEQ_WIDTH] if key.startswith(_SEQ) else key  # else an event stored before sequence numbers


def _positions(cursor: str | None, count: int) -> list[int]:
    if not cursor:
        return [0] * count
    if not _CURSOR.fullmatch(cursor) or cursor.count("-") + 1 != count:
        raise ValueError("not a cursor of this store")
    return [int(p) for p in cursor.split("-")]


def _event(r: dict[str, Any]) -> Event:
    row_key = str(r["RowKey"])
    return Event(
        audience=r["audience"],
        kind=r["kind"],
        payload=json.loads(r["payload"]),
        created_at=from_stamp(r["created_at"]),
        key=_event_key(_seq_of(r), r["event_id"]) if row_key.startswith(_SEQ) else row_key,
        published=bool(r["published"]),
    )


def _kv_row(namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None) -> dict[str, Any]:
    row: dict[str, Any] = {"PartitionKey": enc(namespace), "RowKey": enc(key), "key": key, "value": json.dumps(value)}
    if expires_at is not None:
        row["expires_at"] = stamp(expires_at)
    return row


def _expired(entity: dict[str, Any], now: datetime) -> bool:
    expires_at = entity.get("expires_at")
    return expires_at is not None and str(expires_at) <= stamp(now)
