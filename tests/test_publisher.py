"""The long-lived publisher across broker restarts, in-process against a real broker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from relay.store.sqlite import SqliteStore
from tests.support.broker import BrokerProcess
from tests.support.ports import free_port
from tests.support.runtime import make_runtime

pytestmark = pytest.mark.slow


def open_files(under: Path) -> int:
    """This process's open descriptors on files in `under`: the store's database and WAL."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(under))
        except OSError:
            continue
    return count


def test_reconnects_drain_the_outbox_without_leaving_store_connections_behind(
    tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> None:
    """Each reconnect drains the outbox; on a new thread each time, every drain kept a SQLite connection."""
    rt = make_runtime(SqliteStore(str(tmp_path / "relay.sqlite3")), broker.mqtt_port, signing_key, sandbox_url)
    try:
        time.sleep(0.5)  # the first drain, on connect
        before = open_files(tmp_path)
        for _ in range(3):
            broker.restart()
            time.sleep(1.2)  # paho waits at least 1 s before it reconnects
            deadline = time.monotonic() + 10
            while not rt.publisher.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rt.publisher.connected
            time.sleep(0.3)  # its drain
        assert open_files(tmp_path) - before < 2
    finally:
        rt.close()


def test_a_list_of_broker_urls_moves_past_one_that_is_down(
    tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> None:
    """`MQTT_URL` as a cluster's nodes: the first refuses connections, the publisher goes on to the next."""
    dead = free_port()
    urls = f"mqtt://127.0.0.1:{dead},mqtt://127.0.0.1:{broker.mqtt_port}"
    rt = make_runtime(SqliteStore(str(tmp_path / "relay.sqlite3")), dead, signing_key, sandbox_url, MQTT_URL=urls)
    try:
        assert rt.publisher.connected
        rt.publisher.publish("sms/reception/inbound", b"{}")
    finally:
        rt.close()
