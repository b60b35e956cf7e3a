"""Mosquitto dynamic security driven by the relay: per-connection clients, sign-out and expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from tests.support.mosquitto import MosquittoProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import as_session, clock, desk, make_runtime

pytestmark = pytest.mark.parametrize("broker", ["mosquitto"], indirect=True, scope="module")


@pytest.fixture
def runtime(tmp_path: Path, broker: MosquittoProcess, signing_key: str, sandbox_url: str) -> Iterator[Runtime]:
    store = SqliteStore(str(tmp_path / "relay.sqlite3"))
    rt = make_runtime(store, broker.mqtt_port, signing_key, sandbox_url, **broker.relay_env())
    yield rt
    rt.close()


def connects(port: int, session: dict[str, object]) -> bool:
    try:
        with Subscriber(port, session):  # type: ignore[arg-type]
            return True
    except ConnectionRefusedError:
        return False


def test_each_connection_gets_its_own_client_bound_to_its_id(runtime: Runtime, broker: MosquittoProcess) -> None:
    a = desk(runtime)
    session = as_session(a, runtime)
    assert session["mqtt"]["username"] == a.client_id
    with Subscriber(broker.mqtt_port, session) as sub:
        assert sub.granted == [1, 1]
    stolen = as_session(a, runtime)
    stolen["mqtt"]["clientId"] = a.web_app_id + "-someoneelse"
    assert not connects(broker.mqtt_port, stolen)


def test_a_desk_reads_only_its_topics(runtime: Runtime, broker: MosquittoProcess) -> None:
    a, b = desk(runtime), desk(runtime)
    sub = Subscriber(broker.mqtt_port, as_session(a, runtime))
    sub.topics = [f"sms/{b.web_app_id}/#", "#", f"sms/{a.web_app_id}/#", "$CONTROL/dynamic-security/#"]
    with sub:
        pass
    assert sub.granted == [0x80, 0x80, 1, 0x80]


def test_expired_grants_are_removed_from_the_broker(runtime: Runtime, broker: MosquittoProcess) -> None:
    a = desk(runtime)
    session = as_session(a, runtime)
    assert connects(broker.mqtt_port, session)
    clock(runtime).advance(timedelta(hours=12, seconds=1))
    assert runtime.access.sweep(runtime.clock.now()) >= 1
    assert not connects(broker.mqtt_port, session)


def test_sign_out_disconnects_and_deletes(runtime: Runtime, broker: MosquittoProcess) -> None:
    a = desk(runtime)
    session = as_session(a, runtime)
    sub = Subscriber(broker.mqtt_port, session)
    sub.start()
    try:
        closed = sub.disconnected_by_broker(lambda: runtime.sessions.sign_out(a.token), timeout=5)
    finally:
        sub.stop()
    assert closed
    assert not connects(broker.mqtt_port, session)
