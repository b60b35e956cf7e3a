"""The Azure Table Storage store: the same contract as SqliteStore, built from single-entity conditional writes.

Table Storage has no multi-table transactions, so every multi-step write starts with the conditional insert that
decides the outcome and carries everything the remaining steps need; those steps are idempotent, and a retried
(duplicate) write reruns them, so it finishes an interrupted one instead of losing its pending event.
Concurrency is arbitrated by conditional inserts (409) and etag-conditional updates and deletes (412),
never by check-then-write.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from relay.store.base import (
    UNROUTED,
    Conversation,
    Event,
    MessageRecord,
    Route,
    StatusRecord,
    StoreError,
)

MESSAGES = "messages"  # one entity per sid: the dedupe arbiter, carrying its pending event's recipe
HISTORY = "history"  # the same messages again, partitioned by (desk, phone), newest first
STATUSES = "statuses"  # partitioned by sid, one row per status
EVENTS = "events"  # partitioned by audience, RowKey = the cursor
ROUTES = "routes"
CONVERSATIONS = "conversations"
KV = "kv"
HITS = "hits"  # one row per hit, RowKey = time + random

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IF_UNCHANGED = MatchConditions.IfNotModified
_STAMP_WIDTH = 20
_MAX_STAMP = 10**_STAMP_WIDTH - 1
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,40}")
_SECRETS = re.compile(r"(?i)\b(sig|accountkey|sharedaccesssignature)=[^&;\s'\"]+")
_RETRIES = 50  # optimistic-concurrency attempts; each lost race means another writer made progress
_PAGE = 1000  # the service's largest page


def _enc(value: str) -> str:
    """Key-safe and unambiguous: keys forbid / \\ # ? and control characters. '~XX' escapes bytes, '~' alone is ''."""
    if not value:
        return "~"
    return "".join(c if c in _SAFE else "".join(f"~{b:02X}" for b in c.encode()) for c in value)


def _us(at: datetime) -> int:
    aware = at if at.tzinfo is not None else at.astimezone()  # naive means local time, as datetime.timestamp()
    return (aware - _EPOCH) // timedelta(microseconds=1)


def _stamp(at: datetime) -> str:
    """Fixed-width microseconds, so string order is time order (filters compare strings; Int64 needs ceremony)."""
    return f"{min(max(_us(at), 0), _MAX_STAMP):0{_STAMP_WIDTH}d}"


def _from_stamp(stamp: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(stamp))


def _descending(sid: str) -> str:
    """Sorts in descending byte order of sid, as SQLite's ORDER BY sid DESC (the service returns RowKeys ascending)."""
    return "".join(f"{255 - b:02x}" for b in sid.encode()) + "gg"


def _history_key(created_at: datetime, sid: str) -> str:
    return f"{_MAX_STAMP - int(_stamp(created_at)):0{_STAMP_WIDTH}d}{_descending(sid)}"


def _status_of(exc: HttpResponseError, *codes: int) -> bool:
    return exc.status_code in codes


class _Keys:
    """Event keys and recorded order: zero-padded time_ns (strictly increasing per process) and a random suffix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            ns = self._last
        return f"{ns:0{_STAMP_WIDTH}d}{secrets.token_hex(4)}"


@contextmanager
def _guard(operation: str) -> Iterator[None]:
    """Any transport or service failure becomes a StoreError, with credentials scrubbed from the message."""
    try:
        yield
    except AzureError as exc:
        text = str(exc)
        detail = _SECRETS.sub(r"\1=***", text.splitlines()[0] if text else "")[:300]
        raise StoreError(f"Table Storage {operation} failed: {type(exc).__name__}: {detail}") from None


class TableStore:
    def __init__(self, connection_string: str, *, table_prefix: str = "relay", timeout_seconds: float = 5.0) -> None:
        if not _PREFIX.fullmatch(table_prefix):
            raise ValueError("table_prefix must be a letter followed by up to 40 letters or digits")
        self._prefix = table_prefix
        self._keys = _Keys()
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}
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

    # -- plumbing

    def _t(self, name: str) -> TableClient:
        """The table client, creating the table on first use in this process.

        Names stay lower case: Azurite answers "table does not exist" to some queries on mixed-case names."""
        client = self._tables.get(name)
        if client is not None:
            return client
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                with _guard("create table"):
                    client = self._service.create_table_if_not_exists(f"{self._prefix}{name}")
                self._tables[name] = client
            return client

    def _get(self, table: str, pk: str, rk: str) -> dict[str, Any] | None:
        try:
            entity: dict[str, Any] = self._t(table).get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        return entity

    def _query(
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
            self._t(table).query_entities(query_filter, parameters=parameters, results_per_page=per_page, select=select)
        )
        return list(rows if limit is None else islice(rows, max(0, limit)))

    @staticmethod
    def _etag(entity: dict[str, Any]) -> str:
        metadata: dict[str, Any] = getattr(entity, "metadata", {})
        return str(metadata["etag"])

    @staticmethod
    def _backoff() -> None:
        time.sleep(random.uniform(0.0, 0.02))

    def _create_event(self, event: Event) -> None:
        """Idempotent: the key was fixed before the first attempt, so a conflict means it is already there."""
        with suppress(ResourceExistsError):
            self._t(EVENTS).create_entity(
                {
                    "PartitionKey": _enc(event.audience),
                    "RowKey": event.key,
                    "audience": event.audience,
                    "kind": event.kind,
                    "payload": json.dumps(event.payload),
                    "created_at": _stamp(event.created_at),
                    "published": event.published,
                }
            )

    @staticmethod
    def _event_fields(event: Event, key: str) -> dict[str, Any]:
        """The event kept on the record that causes it, so a retry can recreate it under the same key."""
        return {
            "event_key": key,
            "event_audience": event.audience,
            "event_kind": event.kind,
            "event_payload": json.dumps(event.payload),
            "event_created_at": _stamp(event.created_at),
        }

    @staticmethod
    def _stored_event(entity: dict[str, Any]) -> Event:
        return Event(
            audience=entity["event_audience"],
            kind=entity["event_kind"],
            payload=json.loads(entity["event_payload"]),
            created_at=_from_stamp(entity["event_created_at"]),
            key=entity["event_key"],
        )

    # -- messages

    def save_message(self, message: MessageRecord, event: Event) -> Event | None:
        entity: dict[str, Any] = {
            "PartitionKey": _enc(message.sid),
            "RowKey": "m",
            **_message_fields(message),
            **self._event_fields(event, self._keys.next()),
        }
        with _guard("save_message"):
            try:
                self._t(MESSAGES).create_entity(entity)
            except ResourceExistsError:
                stored = self._get(MESSAGES, entity["PartitionKey"], "m")
                if stored is not None:
                    self._finish_message(stored)
                return None
            return self._finish_message(entity)

    def _finish_message(self, entity: dict[str, Any]) -> Event:
        """The idempotent tail of save_message, rerun by duplicates: event, history row, conversation summary."""
        stored_event = self._stored_event(entity)
        self._create_event(stored_event)
        message = _message(entity)
        self._put_history(message)
        self._bump_conversation(message)
        return stored_event

    def _put_history(self, message: MessageRecord) -> None:
        self._t(HISTORY).upsert_entity(
            {
                "PartitionKey": f"{_enc(message.web_app_id)}|{_enc(message.phone)}",
                "RowKey": _history_key(message.created_at, message.sid),
                **_message_fields(message),
            },
            mode=UpdateMode.REPLACE,
        )

    def _bump_conversation(self, message: MessageRecord) -> None:
        """A newer message replaces the summary; inbound adds an unread, outbound resets; last_sid: idempotent."""
        pk, rk = _enc(message.web_app_id), _enc(message.phone)
        stamp = _stamp(message.created_at)
        inbound = message.direction == "inbound"
        table = self._t(CONVERSATIONS)
        for _ in range(_RETRIES):
            current = self._get(CONVERSATIONS, pk, rk)
            row: dict[str, Any] = {
                "PartitionKey": pk,
                "RowKey": rk,
                "web_app_id": message.web_app_id,
                "phone": message.phone,
                "our_side": message.our_side,
                "last_sid": message.sid,
                "last_body": message.body,
                "last_direction": message.direction,
                "last_at": stamp,
                "unread": 1 if inbound else 0,
            }
            try:
                if current is None:
                    table.create_entity(row)
                    return
                if current["last_sid"] == message.sid or stamp < current["last_at"]:
                    return
                row["unread"] = int(current["unread"]) + 1 if inbound else 0
                table.update_entity(
                    row, mode=UpdateMode.REPLACE, etag=self._etag(current), match_condition=_IF_UNCHANGED
                )
                return
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if not _status_of(exc, 404, 412):
                    raise
            self._backoff()
        raise StoreError("Table Storage conversation update kept conflicting")

    def get_message(self, sid: str) -> MessageRecord | None:
        with _guard("get_message"):
            entity = self._get(MESSAGES, _enc(sid), "m")
        return _message(entity) if entity is not None else None

    # -- statuses

    def add_status(self, status: StatusRecord, event: Event) -> Event | None:
        entity: dict[str, Any] = {
            "PartitionKey": _enc(status.sid),
            "RowKey": _enc(status.status),
            "sid": status.sid,
            "status": status.status,
            "error_code": status.error_code,
            "error_message": status.error_message,
            "at": _stamp(status.at),
            **self._event_fields(event, self._keys.next()),  # the event key doubles as the recorded order
        }
        with _guard("add_status"):
            try:
                self._t(STATUSES).create_entity(entity)
            except ResourceExistsError:
                stored = self._get(STATUSES, entity["PartitionKey"], entity["RowKey"])
                if stored is not None:
                    self._create_event(self._stored_event(stored))
                return None
            stored_event = self._stored_event(entity)
            self._create_event(stored_event)
            return stored_event

    def statuses(self, sid: str) -> list[StatusRecord]:
        with _guard("statuses"):
            rows = self._query(STATUSES, "PartitionKey eq @pk", {"pk": _enc(sid)})
        rows.sort(key=lambda r: str(r["event_key"]))
        return [
            StatusRecord(r["sid"], r["status"], r.get("error_code"), r.get("error_message"), _from_stamp(r["at"]))
            for r in rows
        ]

    def statuses_of(self, sids: list[str]) -> dict[str, list[StatusRecord]]:
        found: dict[str, list[StatusRecord]] = {sid: [] for sid in sids}
        for start in range(0, len(sids), 20):  # OR-ed partition keys keep the query URL short
            chunk = sids[start : start + 20]
            query = " or ".join(f"PartitionKey eq @p{i}" for i in range(len(chunk)))
            with _guard("statuses_of"):
                rows = self._query(STATUSES, query, {f"p{i}": _enc(sid) for i, sid in enumerate(chunk)})
            for r in sorted(rows, key=lambda r: str(r["event_key"])):
                found[str(r["sid"])].append(
                    StatusRecord(
                        r["sid"], r["status"], r.get("error_code"), r.get("error_message"), _from_stamp(r["at"])
                    )
                )
        return found

    # -- history and conversations

    def history(
        self, web_app_id: str, phone: str, before: str | None, limit: int
    ) -> tuple[list[MessageRecord], str | None]:
        query_filter = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": f"{_enc(web_app_id)}|{_enc(phone)}"}
        if before:
            query_filter += " and RowKey gt @before"
            parameters["before"] = before
        with _guard("history"):
            rows = self._query(HISTORY, query_filter, parameters, limit=limit + 1)
        page = rows[: max(0, limit)]
        cursor = str(page[-1]["RowKey"]) if len(rows) > limit and page else None
        return [_message(r) for r in page], cursor

    def conversations(self, web_app_id: str) -> list[Conversation]:
        with _guard("conversations"):
            rows = self._query(CONVERSATIONS, "PartitionKey eq @pk", {"pk": _enc(web_app_id)})
        rows.sort(key=lambda r: str(r["last_at"]), reverse=True)
        return [_conversation(r) for r in rows]

    def mark_read(self, web_app_id: str, phone: str) -> None:
        with _guard("mark_read"), suppress(ResourceNotFoundError):
            self._t(CONVERSATIONS).update_entity(
                {"PartitionKey": _enc(web_app_id), "RowKey": _enc(phone), "unread": 0}, mode=UpdateMode.MERGE
            )

    def claim(self, phone: str, our_side: str, web_app_id: str, at: datetime, event: Event) -> Event | None:
        with _guard("claim"):
            unrouted = self._take_unrouted(phone)
            if unrouted is None:
                return None
            self._move_history(phone, web_app_id)
            self._merge_claimed(unrouted, web_app_id)
            self._upsert_route(phone, our_side, web_app_id, at, chosen=True)
            stored = replace(event, key=self._keys.next())
            self._create_event(stored)
            return stored

    def _take_unrouted(self, phone: str) -> dict[str, Any] | None:
        """The arbiter: an etag-conditional delete of the unrouted summary; exactly one concurrent claimer succeeds."""
        pk, rk = _enc(UNROUTED), _enc(phone)
        for _ in range(_RETRIES):
            current = self._get(CONVERSATIONS, pk, rk)
            if current is None:
                return None
            try:
                # A one-operation transaction, because delete_entity reports success for a row that is already gone.
                self._t(CONVERSATIONS).submit_transaction(
                    [
                        (
                            "delete",
                            {"PartitionKey": pk, "RowKey": rk},
                            {"etag": self._etag(current), "match_condition": _IF_UNCHANGED},
                        )
                    ]
                )
                return current
            except HttpResponseError as exc:
                if _status_of(exc, 404):
                    return None
                if not _status_of(exc, 412):
                    raise
            self._backoff()
        raise StoreError("Table Storage claim kept conflicting")

    def _move_history(self, phone: str, web_app_id: str) -> None:
        """Copy, repoint, then delete: a crash leaves a duplicate history row, never a lost message."""
        source = f"{_enc(UNROUTED)}|{_enc(phone)}"
        for row in self._query(HISTORY, "PartitionKey eq @pk", {"pk": source}):
            moved = _message(row)
            self._put_history(replace(moved, web_app_id=web_app_id))
            with suppress(ResourceNotFoundError):
                self._t(MESSAGES).update_entity(
                    {"PartitionKey": _enc(moved.sid), "RowKey": "m", "web_app_id": web_app_id}, mode=UpdateMode.MERGE
                )
            self._t(HISTORY).delete_entity(source, row["RowKey"])

    def _merge_claimed(self, unrouted: dict[str, Any], web_app_id: str) -> None:
        """Fold the unrouted summary into the desk's: the newer last message wins and unread counts add up."""
        pk, rk = _enc(web_app_id), str(unrouted["RowKey"])
        table = self._t(CONVERSATIONS)
        for _ in range(_RETRIES):
            current = self._get(CONVERSATIONS, pk, rk)
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
                table.update_entity(
                    row, mode=UpdateMode.REPLACE, etag=self._etag(current), match_condition=_IF_UNCHANGED
                )
                return
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if not _status_of(exc, 404, 412):
                    raise
            self._backoff()
        raise StoreError("Table Storage conversation merge kept conflicting")

    # -- routes

    def touch_route(self, phone: str, our_side: str, web_app_id: str, at: datetime, *, chosen: bool) -> None:
        with _guard("touch_route"):
            self._upsert_route(phone, our_side, web_app_id, at, chosen=chosen)

    def _upsert_route(self, phone: str, our_side: str, web_app_id: str, at: datetime, *, chosen: bool) -> None:
        """chosen_at moves only when chosen, active_at on every touch, and neither ever moves backwards."""
        pk, rk = _enc(phone), f"{_enc(our_side)}|{_enc(web_app_id)}"
        stamp = _stamp(at)
        table = self._t(ROUTES)
        for _ in range(_RETRIES):
            current = self._get(ROUTES, pk, rk)
            row: dict[str, Any] = {
                "PartitionKey": pk,
                "RowKey": rk,
                "phone": phone,
                "our_side": our_side,
                "web_app_id": web_app_id,
                "chosen_at": stamp if chosen else _stamp(_EPOCH),
                "active_at": stamp,
            }
            try:
                if current is None:
                    table.create_entity(row)
                    return
                row["chosen_at"] = max(current["chosen_at"], stamp) if chosen else current["chosen_at"]
                row["active_at"] = max(current["active_at"], stamp)
                if (row["chosen_at"], row["active_at"]) == (current["chosen_at"], current["active_at"]):
                    return
                table.update_entity(
                    row, mode=UpdateMode.REPLACE, etag=self._etag(current), match_condition=_IF_UNCHANGED
                )
                return
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if not _status_of(exc, 404, 412):
                    raise
            self._backoff()
        raise StoreError("Table Storage route update kept conflicting")

    def routes(self, phone: str, our_sides: list[str]) -> list[Route]:
        if not our_sides:
            return []
        wanted = set(our_sides)
        with _guard("routes"):
            rows = self._query(ROUTES, "PartitionKey eq @pk", {"pk": _enc(phone)})
        return [
            Route(r["phone"], r["our_side"], r["web_app_id"], _from_stamp(r["chosen_at"]), _from_stamp(r["active_at"]))
            for r in rows
            if r["our_side"] in wanted
        ]

    # -- events

    def events_after(self, audiences: list[str], after: str | None, limit: int) -> list[Event]:
        if limit <= 0:
            return []
        merged: list[dict[str, Any]] = []
        with _guard("events_after"):
            for audience in dict.fromkeys(audiences):
                query_filter = "PartitionKey eq @pk"
                parameters: dict[str, Any] = {"pk": _enc(audience)}
                if after:
                    query_filter += " and RowKey gt @after"
                    parameters["after"] = after
                merged.extend(self._query(EVENTS, query_filter, parameters, limit=limit))
        merged.sort(key=lambda r: str(r["RowKey"]))
        return [_event(r) for r in merged[:limit]]

    def pending_events(self, created_before: datetime, limit: int) -> list[Event]:
        """A cross-partition scan sorted here: unpublished events are few, since publishing follows storing."""
        with _guard("pending_events"):
            rows = self._query(
                "events", "published eq false and created_at lt @before", {"before": _stamp(created_before)}
            )
        rows.sort(key=lambda r: str(r["RowKey"]))
        return [_event(r) for r in rows[: max(0, limit)]]

    def mark_published(self, *events: Event) -> None:
        for event in events:
            with _guard("mark_published"), suppress(ResourceNotFoundError):
                self._t(EVENTS).update_entity(
                    {"PartitionKey": _enc(event.audience), "RowKey": event.key, "published": True},
                    mode=UpdateMode.MERGE,
                )

    # -- key/value

    def kv_get(self, namespace: str, key: str, now: datetime) -> dict[str, Any] | None:
        with _guard("kv_get"):
            entity = self._get(KV, _enc(namespace), _enc(key))
        if entity is None or _expired(entity, now):
            return None
        value: dict[str, Any] = json.loads(entity["value"])
        return value

    def kv_put(self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None) -> None:
        with _guard("kv_put"):
            self._t(KV).upsert_entity(_kv_row(namespace, key, value, expires_at), mode=UpdateMode.REPLACE)

    def kv_insert(
        self, namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None, now: datetime
    ) -> bool:
        row = _kv_row(namespace, key, value, expires_at)
        with _guard("kv_insert"):
            table = self._t(KV)
            for _ in range(_RETRIES):
                try:
                    table.create_entity(row)
                    return True
                except ResourceExistsError:
                    pass
                current = self._get(KV, row["PartitionKey"], row["RowKey"])
                if current is None:
                    continue
                if not _expired(current, now):
                    return False
                try:
                    table.update_entity(
                        row,
                        mode=UpdateMode.REPLACE,
                        etag=self._etag(current),
                        match_condition=_IF_UNCHANGED,
                    )
                    return True
                except HttpResponseError as exc:
                    if not _status_of(exc, 404, 412):
                        raise
                self._backoff()
        raise StoreError("Table Storage kv_insert kept conflicting")

    def kv_delete(self, namespace: str, key: str) -> None:
        with _guard("kv_delete"):
            self._t(KV).delete_entity(_enc(namespace), _enc(key))

    def kv_expired(self, namespace: str, now: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with _guard("kv_expired"):
            rows = self._query(
                KV,
                "PartitionKey eq @pk and expires_at le @now",
                {"pk": _enc(namespace), "now": _stamp(now)},
                limit=limit,
            )
        return [(str(r["key"]), json.loads(r["value"])) for r in rows[:limit]]

    # -- hits

    def record_hit(self, namespace: str, key: str, at: datetime) -> None:
        pk = f"{_enc(namespace)}|{_enc(key)}"
        with _guard("record_hit"):
            for _ in range(_RETRIES):
                try:
                    self._t(HITS).create_entity({"PartitionKey": pk, "RowKey": f"{_stamp(at)}{secrets.token_hex(8)}"})
                    return
                except ResourceExistsError:
                    continue
        raise StoreError("Table Storage record_hit kept colliding")

    def count_hits(self, namespace: str, key: str, since: datetime) -> tuple[int, datetime | None]:
        with _guard("count_hits"):
            rows = self._query(
                "hits",
                "PartitionKey eq @pk and RowKey ge @since",
                {"pk": f"{_enc(namespace)}|{_enc(key)}", "since": _stamp(since)},
                select=["RowKey"],
            )
        if not rows:
            return 0, None
        return len(rows), _from_stamp(min(str(r["RowKey"]) for r in rows)[:_STAMP_WIDTH])

    # -- housekeeping

    def purge(self, before: datetime) -> int:
        """SqliteStore.purge's rules, one entity at a time; every delete tolerates a concurrent purge."""
        cutoff = {"before": _stamp(before)}
        deleted = 0
        with _guard("purge"):
            for entity in self._query(MESSAGES, "created_at lt @before", cutoff):
                message = _message(entity)
                self._t(HISTORY).delete_entity(
                    f"{_enc(message.web_app_id)}|{_enc(message.phone)}", _history_key(message.created_at, message.sid)
                )
                self._delete_statuses(str(entity["PartitionKey"]))
                self._t(MESSAGES).delete_entity(entity["PartitionKey"], entity["RowKey"])
                deleted += 1
            for pk in {str(s["PartitionKey"]) for s in self._query(STATUSES, "at lt @before", cutoff)}:
                if self._get(MESSAGES, pk, "m") is None:
                    self._delete_statuses(pk)
            for event in self._query(EVENTS, "created_at lt @before and published eq true", cutoff):
                self._t(EVENTS).delete_entity(event["PartitionKey"], event["RowKey"])
            self._delete_unchanged(CONVERSATIONS, "last_at lt @before", cutoff)
            self._delete_unchanged(KV, "expires_at lt @before", cutoff)
            for hit in self._query(HITS, "RowKey lt @before", cutoff, select=["PartitionKey", "RowKey"]):
                self._t(HITS).delete_entity(hit["PartitionKey"], hit["RowKey"])
        return deleted

    def _delete_statuses(self, pk: str) -> None:
        for status in self._query(STATUSES, "PartitionKey eq @pk", {"pk": pk}, select=["PartitionKey", "RowKey"]):
            self._t(STATUSES).delete_entity(status["PartitionKey"], status["RowKey"])

    def _delete_unchanged(self, table: str, query_filter: str, parameters: dict[str, Any]) -> None:
        """Delete the matches unless updated since the query (then they are no longer old)."""
        for entity in self._query(table, query_filter, parameters):
            try:
                self._t(table).delete_entity(
                    entity["PartitionKey"],
                    entity["RowKey"],
                    etag=self._etag(entity),
                    match_condition=_IF_UNCHANGED,
                )
            except HttpResponseError as exc:
                if not _status_of(exc, 412):
                    raise

    def ping(self) -> None:
        with _guard("ping"):
            self._query(KV, "PartitionKey eq @pk", {"pk": "~"}, limit=1)  # needs no account-wide permission

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
        "created_at": _stamp(m.created_at),
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
        created_at=_from_stamp(r["created_at"]),
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
        _from_stamp(r["last_at"]),
        int(r["unread"]),
    )


def _event(r: dict[str, Any]) -> Event:
    return Event(
        audience=r["audience"],
        kind=r["kind"],
        payload=json.loads(r["payload"]),
        created_at=_from_stamp(r["created_at"]),
        key=str(r["RowKey"]),
        published=bool(r["published"]),
    )


def _kv_row(namespace: str, key: str, value: dict[str, Any], expires_at: datetime | None) -> dict[str, Any]:
    row: dict[str, Any] = {"PartitionKey": _enc(namespace), "RowKey": _enc(key), "key": key, "value": json.dumps(value)}
    if expires_at is not None:
        row["expires_at"] = _stamp(expires_at)
    return row


def _expired(entity: dict[str, Any], now: datetime) -> bool:
    expires_at = entity.get("expires_at")
    return expires_at is not None and str(expires_at) <= _stamp(now)
