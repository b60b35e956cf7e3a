"""The long-lived publisher across broker restarts, in-process against a real broker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from relay.outbound import SendRequest
from relay.store.sqlite import SqliteStore
from tests.support.broker import BrokerProcess
from tests.support.mqtt import Subscriber
from tests.support.ports import free_port
from tests.support.runtime import as_session, desk, inbound_params, make_runtime

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


def test_an_instance_that_connects_leaves_another_instances_fresh_events_to_it(
    tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str
) -> None:
    """A second worker's first connect used to publish every pending event, those the first was publishing at that
    moment too: the desk saw them twice. The first publishes its own deferred event once its broker is back."""
    path = str(tmp_path / "relay.sqlite3")
    first = make_runtime(SqliteStore(path), broker.mqtt_port, signing_key, sandbox_url)
    second = None
    try:
        grant, phone = desk(first), "+14155550199"
        first.outbound.send(SendRequest(grant.web_app_id, phone, "See you at 3"))
        with Subscriber(broker.mqtt_port, as_session(grant, first)) as sub:
            sub.drain(0.5)
            first.publisher.stop()
            said = inbound_params(phone, "On my way")
            first.inbound.ingest(said)
            sid = said["MessageSid"]
            second = make_runtime(SqliteStore(path), broker.mqtt_port, signing_key, sandbox_url)
            assert [p for _, p in sub.drain(1.5) if p.get("MessageSid") == sid] == []
            first.publisher.start()
            arrived: list[str] = []
            deadline = time.monotonic() + 10
            while not arrived and time.monotonic() < deadline:
                arrived += [p["MessageSid"] for t, p in sub.drain(0.3) if t.endswith("/inbound")]
            arrived += [p["MessageSid"] for t, p in sub.drain(1.5) if t.endswith("/inbound")]
        assert arrived == [sid]
    finally:
        first.close()
        if second is not None:
            second.close()
