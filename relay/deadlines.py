"""One deadline per webhook for all of its store and broker work, so Twilio always gets an answer in time.

A blocked socket read cannot be interrupted in Python, so the work runs on a thread of this module's pool
and the webhook's own thread waits for it, bounded: 503 when the work is not done by the deadline, and
Twilio retries (MessageSid dedup makes the retry safe). The late work still finishes or fails by itself,
bounded by the store's own timeouts. A webhook that answered 503 may thus still have been stored: the retry
then answers 200 as a duplicate, and the outbox publishes it.

A stalled store would otherwise hold every function thread for the whole deadline, and webhooks queued behind
them would answer late. So work that runs past `stall_seconds` (half the deadline) opens a breaker: the
webhooks waiting and those arriving answer 503 at once, one probe goes through per `stall_seconds`, and the
first work to finish within `stall_seconds` closes it.

Inside the work, `broker_wait(seconds)` bounds a PUBACK wait to a quarter of the deadline, so a stalled
broker can never make the work look stalled: after the durable write, delivery is the outbox's job.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from relay.errors import DeadlineExceeded

log = logging.getLogger("relay.deadlines")

T = TypeVar("T")
SLICE_SECONDS = 0.05  # how often a waiting webhook looks for a stall

_broker_until: contextvars.ContextVar[float | None] = contextvars.ContextVar("broker_until", default=None)


def broker_wait(seconds: float) -> float:
    """How long a PUBACK wait may last: `seconds`, or less inside a webhook's work."""
    until = _broker_until.get()
    if until is None:
        return seconds
    return max(0.0, min(seconds, until - time.monotonic()))


class WebhookDeadline:
    def __init__(self, seconds: float, *, threads: int = 32) -> None:
        self.seconds = seconds
        self._stall = seconds / 2
        self._broker = seconds / 4
        self._threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook")
        self._lock = threading.Lock()
        self._running: dict[Future[Any], float] = {}
        self._stalled = False
        self._next_probe = 0.0
        self._settled_at = 0.0  # work started before this was already counted for the last stall

    def run(self, work: Callable[[], T]) -> T:
        """`work()`'s result, or DeadlineExceeded (503) when it is not done in time or the work is stalling."""
        started = time.monotonic()
        probe = self._admit(started)
        context = contextvars.copy_context()
        context.run(_broker_until.set, started + self._broker)
        future: Future[T] = self._executor.submit(context.run, work)
        with self._lock:
            self._running[future] = started
        future.add_done_callback(self._finished)
        until = started + (self._stall if probe else self.seconds)
        while True:
            try:
                return future.result(timeout=max(0.0, min(SLICE_SECONDS, until - time.monotonic())))
            except TimeoutError:
                now = time.monotonic()
                if now >= until or (not probe and self._stalling(now)):
                    raise DeadlineExceeded(
                        f"Not done within WEBHOOK_DEADLINE_SECONDS ({self.seconds:g} s) or the store is stalled; "
                        "Twilio should retry.",
                    ) from None

    def _admit(self, now: float) -> bool:
        """True for a probe; raises when the store is stalled and no probe is due, or every thread is held."""
        stalled = self._stalling(now)
        with self._lock:
            if len(self._running) >= self._threads:
                raise DeadlineExceeded("Every webhook thread is waiting on the store; Twilio should retry.")
            if not stalled:
                return False
            if now < self._next_probe:
                raise DeadlineExceeded("The store is not answering; Twilio should retry.")
            self._next_probe = now + self._stall
            return True

    def _stalling(self, now: float) -> bool:
        with self._lock:
            if not self._stalled and any(
                now - started > self._stall for started in self._running.values() if started > self._settled_at
            ):
                self._stalled = True
                self._next_probe = now + self._stall
                log.warning("webhook work running over %g s: answering 503 until the store answers", self._stall)
            return self._stalled

    def _finished(self, future: Future[Any]) -> None:
        now = time.monotonic()
        with self._lock:
            started = self._running.pop(future, now)
            if self._stalled and now - started <= self._stall:
                self._stalled = False
                self._settled_at = now
                log.warning("webhook work finishing in time again: answering normally")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
