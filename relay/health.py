"""The health check: a real write and read of a heartbeat row under a deadline of its own, the outbox's
backlog, the SQLite WAL's size, and this instance's clock against the store's. Red when any write fails."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from relay.clock import Clock
from relay.publisher import Publisher
from relay.store import Event, Heartbeat, Store, StoreError

DEADLINE_SECONDS = 2.0  # well under the 5 s a store call may take, so a stalled store reads as down, quickly
OUTBOX_SCAN = 1000  # the depth reported is at most this


T = TypeVar("T")


class HealthCheck:
    def __init__(self, store: Store, publisher: Publisher, clock: Clock, max_clock_skew_seconds: float) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._max_skew = max_clock_skew_seconds
        self._key = f"instance-{secrets.token_hex(6)}"
        # One probe of each kind at a time: while the store stalls, checks share the running one instead of
        # piling up. The outbox count is a scan and may be slow on a big table: it never turns health red.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="health")
        self._lock = threading.Lock()
        self._running: dict[str, Future[Any]] = {}

    def report(self) -> tuple[bool, dict[str, Any]]:
        started = self._clock.now()
        deadline = time.monotonic() + DEADLINE_SECONDS
        beating = self._start("heartbeat", lambda: self._store.heartbeat(self._key, started))
        # Events stamped by a clock up to the allowed skew ahead are pending too.
        counting = self._start(
            "outbox", lambda: self._store.pending_events(started + timedelta(seconds=self._max_skew), OUTBOX_SCAN)
        )
        beat: Heartbeat | None = self._wait(beating, deadline)
        pending: list[Event] | None = self._wait(counting, deadline) if beat is not None else None
        now = self._clock.now()
        broker_ok = self._publisher.connected
        skew = None
        if beat is not None and beat.store_clock is not None:
            skew = round((now - beat.store_clock).total_seconds(), 3)
        clock_ok = skew is None or abs(skew) <= self._max_skew
        oldest = min((e.created_at for e in pending), default=None) if pending else None
        healthy = beat is not None and broker_ok and clock_ok
        return healthy, {
            "status": "ok" if healthy else "unavailable",
            "broker": {"connected": broker_ok},
            "store": {"ok": beat is not None, "walBytes": beat.wal_bytes if beat else None},
            "outbox": {
                "pending": len(pending) if pending is not None else None,
                "oldestSeconds": round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None,
            },
            "clock": {"ok": clock_ok, "skewSeconds": skew},
        }

    def _start(self, kind: str, work: Callable[[], T]) -> Future[T]:
        with self._lock:
            running = self._running.get(kind)
            if running is None or running.done():
                running = self._running[kind] = self._pool.submit(work)
            return running

    @staticmethod
    def _wait(running: Future[T], deadline: float) -> T | None:
        try:
            return running.result(timeout=max(0.0, deadline - time.monotonic()))
        except (StoreError, TimeoutError):
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
