"""Twilio's pace for scheduled and batch sends (SEND_RATE_PER_SECOND), shared by every instance.

Time is cut into slots of 1/rate seconds and each send first wins a slot with a conditional insert in the store,
then waits for the slot's start: two instances never take the same slot, so together they never send faster
than the rate, and never in bursts. Slot keys go round a ring of an hour's worth and expire a minute after their
slot, so the store holds at most that many.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from relay.store import Store

NAMESPACE = "pace"
RING_SECONDS = 3600
KEEP_SECONDS = 60
MAX_TRIES = 10_000


class Pacer:
    def __init__(self, store: Store, rate_per_second: float) -> None:
        self._store = store
        self._slot = 1.0 / rate_per_second
        self._ring = max(1, math.ceil(RING_SECONDS / self._slot))

    def wait_turn(self) -> float:
        """Blocks until this caller's slot begins; returns the seconds it waited. Wall time, not the relay's
        clock: the pace is Twilio's, and it is kept across processes."""
        now = time.time()
        slot = math.ceil(now / self._slot)
        moment = datetime.fromtimestamp(now, UTC)
        for _ in range(MAX_TRIES):
            expires = datetime.fromtimestamp(slot * self._slot + KEEP_SECONDS, UTC)
            if self._store.kv_insert(NAMESPACE, str(slot % self._ring), {"slot": slot}, expires, moment):
                break
            slot += 1
        wait = max(0.0, slot * self._slot - time.time())
        time.sleep(wait)
        return wait
