"""Sending caps against SMS pumping, on a real runtime: SQLite, the broker and the Twilio sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from relay.errors import TooManyRequests
from relay.outbound import SendRequest
from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
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
