"""The health check: a real write and read of a heartbeat row under a deadline of its own, the outbox's
backlog, the SQLite WAL's size, and this instance's clock against the store's. Red when any write fails."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from relay.clock import Clock
from relay.publisher import Publisher
from relay.store import Event, Heartbeat, Store, StoreError

DEADLINE_SECONDS = 2.0  # well under the 5 s a store call may take, so a stalled store reads as down, quickly
OUTBOX_SCAN = 1000  # the depth reported is at most this


@dataclass(frozen=True)
class _Probe:
    beat: Heartbeat
    pending: list[Event]


class HealthCheck:
    def __init__(self, store: Store, publisher: Publisher, clock: Clock, max_clock_skew_seconds: float) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._max_skew = max_clock_skew_seconds
        self._key = f"instance-{secrets.token_hex(6)}"
        # One probe at a time: while the store stalls, checks share the running probe instead of piling up.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")
        self._lock = threading.Lock()
        self._running: Future[_Probe] | None = None

    def report(self) -> tuple[bool, dict[str, Any]]:
        probe = self._probe()
        now = self._clock.now()
        broker_ok = self._publisher.connected
        store_ok = probe is not None
        skew = None
        if probe is not None and probe.beat.store_clock is not None:
            skew = round((now - probe.beat.store_clock).total_seconds(), 3)
        clock_ok = skew is None or abs(skew) <= self._max_skew
        oldest = min((e.created_at for e in probe.pending), default=None) if probe else None
        healthy = store_ok and broker_ok and clock_ok
        return healthy, {
            "status": "ok" if healthy else "unavailable",
            "broker": {"connected": broker_ok},
            "store": {"ok": store_ok, "walBytes": probe.beat.wal_bytes if probe else None},
            "outbox": {
                "pending": len(probe.pending) if probe else None,
                "oldestSeconds": round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None,
            },
            "clock": {"ok": clock_ok, "skewSeconds": skew},
        }

    def _probe(self) -> _Probe | None:
        with self._lock:
            if self._running is None or self._running.done():
                self._running = self._pool.submit(self._run)
            running = self._running
        try:
            return running.result(timeout=DEADLINE_SECONDS)
        except (StoreError, TimeoutError):
            return None

    def _run(self) -> _Probe:
        now = self._clock.now()
        beat = self._store.heartbeat(self._key, now)
        # Events stamped by a clock up to the allowed skew ahead are pending too.
        pending = self._store.pending_events(now + timedelta(seconds=self._max_skew), OUTBOX_SCAN)
        return _Probe(beat, pending)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
