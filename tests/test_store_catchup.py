"""The catch-up feed never skips: two instances write at once, one of them with its clock MAX_CLOCK_SKEW_SECONDS
behind (libfaketime), while a reader follows the cursor page by page; it must end with every event a catch-up
from scratch returns, each once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.store.base import UNROUTED, Event, Store
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore
from tests.support.event_writer import DESK
from tests.support.processes import terminate
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parents[1]
PER_INSTANCE = 500
PAGE = 50
SKEW_SECONDS = 30


@pytest.fixture(params=["sqlite", "tables"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Store]]:
    """What the writer processes are given (target, table prefix) and the reader's own store on the same data."""
    if request.param == "sqlite":
        target, prefix = str(tmp_path / "relay.db"), "-"
        reader: Store = SqliteStore(target)
    else:
        target, prefix = request.getfixturevalue("azurite"), f"c{uuid.uuid4().hex[:16]}"
        reader = TableStore(target, table_prefix=prefix)
    yield target, prefix, reader
    reader.close()


def writer(target: str, prefix: str, sid_prefix: str, skew_seconds: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.support.event_writer", target, prefix, sid_prefix, str(PER_INSTANCE), "4"]
    if skew_seconds:
        command = ["faketime", "-m", "-f", f"-{skew_seconds}s", *command]
    return subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE)


def page(store: Store, cursor: str | None, limit: int) -> tuple[list[Event], str | None]:
    found = store.events_after([DESK, UNROUTED], cursor, limit)
    return found.events, found.cursor


def test_following_the_cursor_misses_nothing_with_two_instances_and_a_skewed_clock(
    shared: tuple[str, str, Store],
) -> None:
    require_tool(shutil.which("faketime") is not None, "faketime (Debian's libfaketime) skews one instance's clock")
    target, prefix, reader = shared
    reader.events_after([DESK], None, 1)  # the tables exist before two processes race to create them
    writers = [
        writer(target, prefix, "SMa", 0),
        writer(target, prefix, "SMb", SKEW_SECONDS),
    ]
    followed: list[Event] = []
    cursor: str | None = None
    pages_while_writing = 0
    try:
        while True:
            done = all(w.poll() is not None for w in writers)  # before the read: an empty page then means the end
            events, cursor = page(reader, cursor, PAGE)
            followed.extend(events)
            pages_while_writing += bool(events) and not done
            if done and not events:
                break
            if len(events) < PAGE:
                time.sleep(0.02)  # caught up: leave the (single-threaded) emulator to the writers a moment
        for w in writers:
            assert w.wait() == 0, w.stderr.read().decode() if w.stderr else ""
    finally:
        for w in writers:
            terminate(w)

    from_scratch: list[Event] = []
    cursor = None
    while True:
        events, cursor = page(reader, cursor, 500)
        if not events:
            break
        from_scratch.extend(events)
    sids = [e.payload["MessageSid"] for e in from_scratch]
    assert len(sids) == len(set(sids)) == 2 * PER_INSTANCE
    followed_sids = [e.payload["MessageSid"] for e in followed]
    missed = set(sids) - set(followed_sids)
    print(f"followed {len(followed_sids)} events in pages of {PAGE}; missed {len(missed)} of {len(sids)}")
    assert not missed
    assert pages_while_writing > 5, "the reader must follow the cursor while the writes are in flight"
    assert len(followed_sids) == len(set(followed_sids)), "an event was handed out twice"
