"""The sandbox's memory: messages, media, opt-outs and the REST call log, safe across threads and tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from .numbers import HELP_WORDS, START_WORDS, STOP_WORDS, keyword

log = logging.getLogger(__name__)


def new_sid(prefix: str) -> str:
    """Twilio SIDs are a two-letter type prefix and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Media:
    """One attachment; data is held only for media a phone sent, served from the "CDN" by its unguessable token."""

    sid: str
    content_type: str
    url: str
    data: bytes | None = None
    cdn_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))


@dataclass(frozen=True)
class Message:
    """A Message resource; snapshots are immutable so readers never see a half-applied update."""

    sid: str
    from_: str | None
    to: str
    body: str
    direction: str
    status: str
    num_segments: int
    date_created: datetime
    date_updated: datetime
    seq: int
    messaging_service_sid: str | None = None
    date_sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    status_callback: str | None = None
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class ApiCall:
    method: str
    path: str
    status: int
    at: str


@dataclass(frozen=True)
class Callback:
    """A status callback the sandbox made: how our app answered and how long it took (0 status: no answer)."""

    sid: str
    status: str
    answered: int
    seconds: float
    at: str


@dataclass(frozen=True)
class DateFilter:
    """Twilio's DateSent, DateSent> and DateSent< (inclusive), each a day or a whole-second instant."""

    on: date | datetime | None = None
    after: date | datetime | None = None
    before: date | datetime | None = None

    def accepts(self, sent: datetime | None) -> bool:
        if self.on is None and self.after is None and self.before is None:
            return True
        if sent is None:
            return False
        sent = sent.replace(microsecond=0)

        def key(bound: date | datetime) -> date | datetime:
            return sent if isinstance(bound, datetime) else sent.date()

        return (
            (self.on is None or key(self.on) == self.on)
            and (self.after is None or key(self.after) >= self.after)
            and (self.before is None or key(self.before) <= self.before)
        )


@dataclass
class SandboxState:
    """All sandbox state behind one lock; methods return immutable snapshots."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _messages: dict[str, Message] = field(default_factory=dict)
    _calls: list[ApiCall] = field(default_factory=list)
    _callbacks: list[Callback] = field(default_factory=list)
    _opted_out: set[str] = field(default_factory=set)
    _partner: dict[str, str] = field(default_factory=dict)
    _phones: dict[str, None] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _faults: list[list[Any]] = field(default_factory=list)  # [path suffix, HTTP status, times left]

    # --- messages -------------------------------------------------------------------------------------------------

    def add_message(self, **fields: Any) -> Message:
        """Store a new message; the phone on the far side becomes known and remembers which number it talked to."""
        now = utcnow()
        with self._lock:
            message = Message(date_created=now, date_updated=now, seq=next(self._seq), **fields)
            self._messages[message.sid] = message
            phone, ours = (message.from_, message.to) if message.direction == "inbound" else (message.to, message.from_)
            if phone:
                self._phones.setdefault(phone, None)
                if ours:
                    self._partner[phone] = ours
            return message

    def update_message(self, sid: str, **changes: Any) -> Message:
        with self._lock:
            message = dataclasses.replace(self._messages[sid], date_updated=utcnow(), **changes)
            self._messages[sid] = message
            if message.from_ and message.direction != "inbound":
                self._partner[message.to] = message.from_
            return message

    def get_message(self, sid: str) -> Message | None:
        with self._lock:
            return self._messages.get(sid)

    def find_messages(self, to: str | None, from_: str | None, dates: DateFilter) -> list[Message]:
        """Matching messages newest first, as Twilio lists them; creation order keeps page tokens stable."""
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if (to is None or m.to == to) and (from_ is None or m.from_ == from_) and dates.accepts(m.date_sent)
            ]
        return sorted(found, key=lambda m: m.seq, reverse=True)

    def thread(self, phone: str) -> list[Message]:
        """What that phone's screen shows, oldest first: texts it sent, and texts delivered to it."""
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if (m.direction == "inbound" and m.from_ == phone)
                or (m.direction != "inbound" and m.to == phone and m.status == "delivered")
            ]
        return sorted(found, key=lambda m: m.seq)

    def media(self, message_sid: str, media_sid: str) -> Media | None:
        message = self.get_message(message_sid)
        return next((m for m in message.media if m.sid == media_sid), None) if message else None

    def media_by_token(self, token: str) -> Media | None:
        with self._lock:
            found = (m for message in self._messages.values() for m in message.media if m.cdn_token == token)
            return next(found, None)

    # --- phones ---------------------------------------------------------------------------------------------------

    def phones(self) -> list[str]:
        with self._lock:
            return list(self._phones)

    def partner(self, phone: str) -> str | None:
        """Which of our numbers last texted with this phone, for sticky senders and reply defaults."""
        with self._lock:
            return self._partner.get(phone)

    def apply_keyword(self, phone: str, body: str) -> str | None:
        """Track opt-out like Twilio's default handling; returns "stop"/"start"/"help" when the body was one."""
        word = keyword(body)
        with self._lock:
            if word in STOP_WORDS:
                self._opted_out.add(phone)
                return "stop"
            if word in START_WORDS:
                self._opted_out.discard(phone)
                return "start"
        return "help" if word in HELP_WORDS else None

    def is_opted_out(self, phone: str) -> bool:
        with self._lock:
            return phone in self._opted_out

    # --- REST call log --------------------------------------------------------------------------------------------

    def record_call(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._calls.append(ApiCall(method, path, status, utcnow().isoformat()))

    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._callbacks.clear()

    def record_callback(self, sid: str, status: str, answered: int, seconds: float) -> None:
        with self._lock:
            self._callbacks.append(Callback(sid, status, answered, seconds, utcnow().isoformat()))

    def callbacks(self) -> list[Callback]:
        with self._lock:
            return list(self._callbacks)

    # --- injected faults ------------------------------------------------------------------------------------------

    def add_fault(self, path_suffix: str, status: int, times: int) -> None:
        with self._lock:
            self._faults.append([path_suffix, status, times])

    def take_fault(self, path: str) -> int | None:
        """The status to fail this REST path with, using up one of the fault's times; None to serve it."""
        with self._lock:
            for fault in self._faults:
                if path.endswith(fault[0]) and fault[2] > 0:
                    fault[2] -= 1
                    return int(fault[1])
        return None

    # --- background work ------------------------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run delivery work after the response; keep a reference so the task is not garbage-collected."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox background task failed", exc_info=task.exception())
