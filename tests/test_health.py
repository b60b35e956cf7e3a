"""`/api/health` tells the truth: a real write and read of a heartbeat row, the outbox's backlog, the WAL's size,
and 503 while writes fail, here on a real full tmpfs that is then freed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest

from relay.health import DEADLINE_SECONDS
from relay.runtime import Runtime
from relay.store import Event, MessageRecord, Store, StoreError
from relay.store.sqlite import WAL_LIMIT_BYTES, SqliteStore
from tests.support.functions import FUNCTIONS
from tests.support.runtime import clock
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024


def health() -> tuple[int, dict[str, object]]:
    response = FUNCTIONS["health"](func.HttpRequest(method="GET", url="http://127.0.0.1/api/health", body=b""))
    return response.status_code, json.loads(response.get_body())


def store_one(store: Store, n: int) -> None:
    now = datetime.now(UTC)
    sid = f"SMdisk{n:06d}"
    record = MessageRecord(sid, "inbound", f"+1555{n % 50:07d}", "+14155550100", "reception", "x" * 200, now, {})
    store.save_message(record, Event("reception", "inbound", {"MessageSid": sid, "Body": "x" * 200}, now))


def test_health_writes_and_reads_a_heartbeat_and_reports_the_outbox(
    store: Store, installed: Callable[[Store], Runtime]
) -> None:
    rt = installed(store)
    status, report = health()
    assert status == 200, report
    wal_bytes = report["store"]["walBytes"]  # type: ignore[index]
    assert report["store"]["ok"] is True  # type: ignore[index]
    assert wal_bytes > 0 if isinstance(store, SqliteStore) else wal_bytes is None  # the heartbeat is in it
    assert report["outbox"] == {"pending": 0, "oldestSeconds": None}
    assert report["clock"]["ok"] is True  # type: ignore[index]

    stored_at = rt.clock.now()
    record = MessageRecord("SMwaiting", "inbound", "+15550001111", "+14155550100", "reception", "hi", stored_at, {})
    store.save_message(record, Event("reception", "inbound", {"MessageSid": "SMwaiting"}, stored_at))
    clock(rt).advance(timedelta(seconds=20))
    status, report = health()
    assert status == 200
    assert report["outbox"] == {"pending": 1, "oldestSeconds": 20.0}

    clock(rt).advance(timedelta(seconds=rt.settings.max_clock_skew_seconds))
    status, report = health()
    if isinstance(store, SqliteStore):  # one machine, one clock
        assert (status, report["clock"]) == (200, {"ok": True, "skewSeconds": None})
    else:  # now ahead of Table Storage's own clock by more than MAX_CLOCK_SKEW_SECONDS
        assert status == 503
        assert report["clock"]["ok"] is False  # type: ignore[index]
        assert report["clock"]["skewSeconds"] > rt.settings.max_clock_skew_seconds  # type: ignore[index]


def test_a_stuck_write_is_a_503_within_the_health_deadline(
    tmp_path: Path, installed: Callable[[Store], Runtime]
) -> None:
    """Another process holds the database's write locks; health must not wait the store's 5 s, nor forever."""
    db = tmp_path / "relay.sqlite3"
    installed(SqliteStore(str(db)))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sqlite3, sys, time\n"
            f"fd = os.open({str(db) + '.writer'!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            f"sqlite3.connect({str(db)!r}, isolation_level=None).execute('BEGIN IMMEDIATE')\n"
            "print('holding', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        started = time.monotonic()
        status, report = health()
        took = time.monotonic() - started
        assert (status, report["store"]) == (503, {"ok": False, "walBytes": None})
        assert took < DEADLINE_SECONDS + 1.0
    finally:
        holder.kill()
        holder.wait(5)
    assert _eventually(lambda: health()[0] == 200), "health stays red after the lock is released"


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 32 MiB tmpfs, so the disk really fills."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], check=False).returncode == 0
    )
    require_tool(mounted, "mounting a tmpfs needs root and permission to mount (CI runs as root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path, limit: int | None = None) -> None:
    """Write `limit` bytes, or until the disk is full."""
    chunk = b"\0" * MIB
    with open(path, "wb") as f:
        written = 0
        while limit is None or written < limit:
            try:
                f.write(chunk)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return
            written += len(chunk)


def test_a_full_disk_turns_health_red_and_writes_recover_once_space_is_freed(
    small_disk: Path, installed: Callable[[Store], Runtime]
) -> None:
    store = SqliteStore(str(small_disk / "relay.sqlite3"))
    installed(store)
    wal = small_disk / "relay.sqlite3-wal"
    assert health()[0] == 200

    freed = small_disk / "freed.bin"
    fill(freed, 12 * MIB)
    fill(small_disk / "everything-else.bin")
    failed = 0
    for n in range(3000):
        try:
            store_one(store, n)
        except StoreError:
            failed += 1
            if failed == 5:
                break
    assert failed == 5, "the disk never filled"
    # A heartbeat may still fit in WAL space a checkpoint left allocated; writes filling that space turn it red.
    for n in range(3000, 3200):
        status, report = health()
        if status == 503:
            break
        with contextlib.suppress(StoreError):
            store_one(store, n)
    assert status == 503
    assert report["store"] == {"ok": False, "walBytes": None}
    assert report["status"] == "unavailable"

    freed.unlink()
    largest_wal = 0
    for n in range(5000, 7000):  # far more than 12 MiB of WAL frames: only checkpoints can make room for them
        store_one(store, n)
        largest_wal = max(largest_wal, wal.stat().st_size if wal.exists() else 0)
    status, report = health()
    assert status == 200, report
    print(f"largest WAL during 2,000 writes after the disk was freed: {largest_wal / MIB:.2f} MiB")
    assert largest_wal <= WAL_LIMIT_BYTES + MIB
