"""Persist first, publish after: every event is stored before it is published, and retried until acked."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import timedelta
from typing import NamedTuple

from relay.clock import Clock
from relay.errors import PublishFailed
from relay.publisher import Publisher
from relay.store import Event, Store, StoreError
from relay.topics import Topics

log = logging.getLogger("relay.outbox")
HOLD_SECONDS = 1.0
ANY_CLOCK = timedelta(minutes=5)  # past any instance's clock skew (the health check reports more), and this one's


class Acked(NamedTuple):
    event: Event
    at: float  # time.monotonic() of the PUBACK
    held: bool  # waited a window already


def encode(event: Event) -> bytes:
    return json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Outbox:
    def __init__(
        self, store: Store, publisher: Publisher, topics: Topics, clock: Clock, *, ack_window: float = 0.0
    ) -> None:
        self._store = store
        self._ack_window = ack_window  # how long to gather acknowledgements before one write marks them all
        self._publisher = publisher
        self._topics = topics
        self._clock = clock
        self._drain_lock = threading.Lock()
        self._acks: queue.SimpleQueue[Acked | None] = queue.SimpleQueue()  # None: stop
        self._unmarked: set[str] = set()
        self._deferred: set[str] = set()  # this process's publishes that failed: its own to retry at once
        self._unmarked_lock = threading.Lock()
        self._recorder = threading.Thread(target=self._record_acks, name="outbox-acks", daemon=True)
        self._recorder.start()

    def topic(self, event: Event) -> str:
        return self._topics.of(event.audience, event.kind)

    def publish(self, event: Event) -> bool:
        """Publish now; on failure the event stays pending for the next drain. True when acked."""
        try:
            self._publisher.publish(
                self.topic(event), encode(event), key=event.key, on_acked=lambda: self._acked(event)
            )
        except PublishFailed as exc:
            log.warning("publish deferred to the outbox: event=%s reason=%s", event.key, exc.message)
            with self._unmarked_lock:
                self._deferred.add(event.key)
            return False
        with self._unmarked_lock:
            self._deferred.discard(event.key)
        return True

    def _acked(self, event: Event) -> None:
        """Runs on paho's network thread: hand over, never write to the store there (mark_soon only notes it)."""
        with self._unmarked_lock:
            self._unmarked.add(event.key)
        self._store.mark_soon(event)
        self._acks.put(Acked(event, time.monotonic(), False))

    def _record_acks(self) -> None:
        """Marks acknowledged events published, many per write, so PUBACKs never queue on the store's lock.

        Where the store carries marks in the next append to their desk (Table Storage), a mark acknowledged in the
        last HOLD_SECONDS of a window waits one window more instead of costing a write of its own: on a busy desk
        the next message carries it. Each mark waits at most two windows, well inside the outbox timer's age."""
        held: list[Acked] = []
        stopping = False
        while not stopping:
            batch = held
            if not batch:
                first = self._acks.get()
                if first is None:
                    return
                batch = [first]
            deadline = time.monotonic() + self._ack_window
            while len(batch) < 500:
                try:
                    item = self._acks.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            young = time.monotonic() - HOLD_SECONDS
            hold = self._ack_window > 0 and not stopping
            held, due = [], []
            for a in batch:
                if hold and not a.held and a.at > young:
                    held.append(Acked(a.event, a.at, True))
                else:
                    due.append(a.event)
            if due:
                self._mark(due)

    def _mark(self, events: list[Event]) -> None:
        try:
            self._store.mark_published(*events)
        except StoreError:
            log.exception("could not mark %d events published; they may be published again", len(events))
        with self._unmarked_lock:
            self._unmarked.difference_update(e.key for e in events)

    def close(self, timeout: float = 5.0) -> None:
        """Record the acknowledgements already received, then stop; the store must outlive this call."""
        self._acks.put(None)
        self._recorder.join(timeout)

    def _settled(self, key: str) -> bool:
        """Published, or about to be: in paho's hands, or acknowledged and waiting to be marked."""
        with self._unmarked_lock:
            if key in self._unmarked:
                return True
        return self._publisher.is_inflight(key)

    def drain(self, min_age: timedelta, limit: int = 500) -> int:
        """Publish pending events older than `min_age`, oldest first; stops at the first failure."""
        return self._drain(min_age, limit, mine_at_once=False)

    def resume(self, min_age: timedelta, limit: int = 500) -> int:
        """Once the broker answers again: what this process deferred at once, others' events past `min_age`.

        A younger event of another instance may be in its publisher's hands right now, or acknowledged and not yet
        marked; publishing it here as well would deliver it twice (a second worker's first connect did)."""
        return self._drain(min_age, limit, mine_at_once=True)

    def _drain(self, min_age: timedelta, limit: int, *, mine_at_once: bool) -> int:
        if not self._drain_lock.acquire(blocking=False):
            return 0
        try:
            sent = 0
            while True:
                now = self._clock.now()
                if mine_at_once:
                    with self._unmarked_lock:
                        mine = set(self._deferred)
                    batch = self._store.pending_events(now + ANY_CLOCK, limit)
                    due = [e for e in batch if e.key in mine or e.created_at <= now - min_age]
                else:
                    batch = due = self._store.pending_events(now - min_age, limit)
                todo = [e for e in due if not self._settled(e.key)]
                for event in todo:
                    if not self.publish(event):
                        return sent
                    sent += 1
                if len(batch) < limit or not todo:
                    return sent
        except StoreError:
            log.exception("outbox drain stopped: the store is unavailable")
            return 0
        finally:
            self._drain_lock.release()
