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
    """The furthest status reached; among equals, the first recorded wins."""
    best: StatusRecord | None = None
    for status in statuses:
        if best is None or RANK.get(status.status, 0) > RANK.get(best.status, 0):
            best = status
    return best
