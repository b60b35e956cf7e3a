"""A circuit breaker for the broker: after a few PUBACK timeouts, stop waiting on it inline until it answers."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("relay.breaker")


class Breaker:
    """Open after `threshold` timeouts in a row, until any PUBACK arrives; one attempt per `probe_seconds` meanwhile,
    so a broker that lost the in-flight messages (and so will never acknowledge them) is still found again."""

    def __init__(self, threshold: int = 3, probe_seconds: float = 5.0) -> None:
        self._threshold = threshold
        self._probe_seconds = probe_seconds
        self._failures = 0
        self._next_probe = 0.0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self._failures >= self._threshold

    def allow(self) -> bool:
        if self._failures < self._threshold:  # the common case, without the lock
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + self._probe_seconds
            return True

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures == self._threshold:
                self._next_probe = time.monotonic() + self._probe_seconds
                log.warning("MQTT broker not acknowledging: publishing through the outbox until it answers")

    def answered(self) -> bool:
        """Record an acknowledgement; True when this closed the breaker (the outbox then has work waiting)."""
        if self._failures == 0:
            return False
        with self._lock:
            was_open, self._failures = self._failures >= self._threshold, 0
        if was_open:
            log.warning("MQTT broker acknowledging again")
        return was_open
