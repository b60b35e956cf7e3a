"""One more relay instance for the catch-up tests: a separate process that stores messages and their events
on a shared store, so libfaketime can skew its clock alone.

    python -m tests.support.event_writer <sqlite path | Table connection string> <table prefix> <sid prefix>
        <count> <threads>
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from relay.store import UNROUTED, Event, StatusRecord, Store
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore

DESK = "desk-a"


def audience_of(n: int) -> str:
    """Half for the desk, half unrouted: the desk's feed merges both."""
    return DESK if n % 2 == 0 else UNROUTED


def write(store: Store, sid_prefix: str, n: int) -> None:
    """A delivery status and its event: the fewest round trips that store an event (Azurite is slow)."""
    sid = f"{sid_prefix}{n:05d}"
    audience = audience_of(n)
    now = datetime.now(UTC)  # this process's clock, skewed or not
    payload = {"MessageSid": sid, "MessageStatus": "delivered"}
    status = StatusRecord(sid, "delivered", None, None, now)
    if store.add_status(status, Event(audience, "status", payload, now)) is None:
        raise SystemExit(f"{sid} was stored twice")


def main(target: str, prefix: str, sid_prefix: str, count: int, threads: int) -> None:
    store: Store = TableStore(target, table_prefix=prefix) if "TableEndpoint=" in target else SqliteStore(target)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda n: write(store, sid_prefix, n), range(count)))
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
