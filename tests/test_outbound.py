"""Sending caps against SMS pumping, on a real runtime: SQLite, the broker and the Twilio sandbox."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from relay.errors import TooManyRequests
from relay.outbound import SendRequest
from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore
from tests.support.broker import BrokerProcess
from tests.support.runtime import clock, desk, make_runtime


def runtime_with(tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str, **env: str) -> Runtime:
    return make_runtime(SqliteStore(str(tmp_path / "relay.sqlite3")), broker.mqtt_port, signing_key, sandbox_url, **env)


@pytest.fixture
def capped(tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str) -> Iterator[Runtime]:
    rt = runtime_with(
        tmp_path,
        broker,
        signing_key,
        sandbox_url,
        NEW_RECIPIENT_LIMIT_PER_HOUR="3",
        NEW_RECIPIENT_LIMIT_PER_HOUR_ALL_DESKS="4",
    )
    yield rt
    rt.close()


def creates(sandbox_url: str) -> int:
    calls = httpx.get(f"{sandbox_url}/calls", timeout=5).json()
    return sum(1 for c in calls if c["method"] == "POST" and c["path"].endswith("/Messages.json"))


def test_new_recipients_are_capped_per_desk_and_for_all_desks(capped: Runtime, sandbox_url: str) -> None:
    a, b = desk(capped, "reception"), desk(capped, "billing", "Ken")
    for i in range(3):
        capped.outbound.send(SendRequest(a.web_app_id, f"+1415555016{i}", "your appointment"))
    before = creates(sandbox_url)
    with pytest.raises(TooManyRequests) as refused:
        capped.outbound.send(SendRequest(a.web_app_id, "+14155550163", "one number too many"))
    assert refused.value.code == "new_recipient_limit"
    assert 3500 < refused.value.retry_after <= 3601
    assert creates(sandbox_url) == before
    capped.outbound.send(SendRequest(a.web_app_id, "+14155550160", "a number it texted already"))
    capped.outbound.send(SendRequest(b.web_app_id, "+14155550121", "the fourth new number"))
    with pytest.raises(TooManyRequests) as everyone:
        capped.outbound.send(SendRequest(b.web_app_id, "+14155550122", "the fifth, from any desk"))
    assert "desks have" in everyone.value.message
    capped.outbound.send(SendRequest(b.web_app_id, "+14155550161", "known to the relay", take_over=True))
    clock(capped).advance(timedelta(minutes=61))
    capped.outbound.send(SendRequest(a.web_app_id, "+14155550163", "an hour later"))


@pytest.mark.slow
def test_the_defaults_admit_a_1000_row_reminder_import_in_an_hour(
    tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> None:
    rt = runtime_with(tmp_path, broker, signing_key, sandbox_url)
    try:
        a, started = desk(rt), time.monotonic()
        for row in range(1000):
            to = f"+1415555{(row + 200) // 100:02d}{row % 100:02d}"  # 0200-1199: never our own 0100
            rt.outbound.send(SendRequest(a.web_app_id, to, "reminder"))
            clock(rt).advance(timedelta(seconds=3.5))  # 1,000 rows spread over 58 minutes
        print(f"1,000 sends in {time.monotonic() - started:.1f} s")
    finally:
        rt.close()


def test_two_instances_sending_side_by_side_never_pass_the_cap_together(
    azurite: str, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> None:
    """Each place is a hit written first, then counted with everyone's: a count first and a hit after let two
    instances each take the last place (on Table Storage, where each is a round trip)."""
    prefix = "c" + uuid.uuid4().hex[:10]
    env = {"SEND_LIMIT_PER_MINUTE": "5", "NEW_RECIPIENT_LIMIT_PER_HOUR": "100"}
    instances = [
        make_runtime(TableStore(azurite, table_prefix=prefix), broker.mqtt_port, signing_key, sandbox_url, **env)
        for _ in range(2)
    ]
    try:
        grants = [desk(rt) for rt in instances]

        def send(i: int) -> bool:
            rt, grant = instances[i % 2], grants[i % 2]
            try:
                rt.outbound.send(SendRequest(grant.web_app_id, f"+1415555{300 + i:04d}", "see you at 3"))
            except TooManyRequests:
                return False
            return True

        with ThreadPoolExecutor(12) as pool:
            at_once = sum(pool.map(send, range(12)))
        assert at_once <= 5
        later = 0
        while send(12 + later):  # what the race refused is free again; then the cap holds
            later += 1
        assert at_once + later == 5
    finally:
        for rt in instances:
            rt.close()
