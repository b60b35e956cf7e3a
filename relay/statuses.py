"""Delivery statuses: their order, so a late callback never moves a shown status backwards."""

from __future__ import annotations

from relay.store import StatusRecord

RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
    "receiving": 1,
    "received": 4,
}


def latest(statuses: list[StatusRecord]) -> StatusRecord | None:
    """The furthest delivery status reached; among equals, the first recorded wins.

    Records that are not delivery statuses (a reminder's answer is kept as `reminder-…`) are skipped."""
    best: StatusRecord | None = None
    for status in (s for s in statuses if s.status in RANK):
        if best is None or RANK.get(status.status, 0) > RANK.get(best.status, 0):
            best = status
    return best
