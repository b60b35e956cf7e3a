"""Mosquitto dynamic security driven by the relay: per-connection clients, per-session sign-out, expiry, archiving."""

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
    a, b = desk(runtime, "reception"), desk(runtime, "billing")
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


def test_signing_out_one_session_leaves_the_desks_other_session_connected(
    runtime: Runtime, broker: MosquittoProcess
) -> None:
    maria, ken = desk(runtime, "reception", "Maria"), desk(runtime, "reception", "Ken")
    with Subscriber(broker.mqtt_port, as_session(ken, runtime)) as kens_tab:
        marias_tab = Subscriber(broker.mqtt_port, as_session(maria, runtime))
        marias_tab.start()
        try:
            assert marias_tab.disconnected_by_broker(lambda: runtime.sessions.sign_out(maria.token), timeout=5)
        finally:
            marias_tab.stop()
        runtime.publisher.publish("sms/reception/inbound", b'{"Body": "still here"}')
        _, payload = kens_tab.wait_for(lambda t, p: p.get("Body") == "still here")
        assert payload["Body"] == "still here"
    assert connects(broker.mqtt_port, as_session(ken, runtime))
    assert not connects(broker.mqtt_port, as_session(maria, runtime))


def test_archiving_a_desk_cuts_off_all_of_its_sessions(runtime: Runtime, broker: MosquittoProcess) -> None:
    runtime.directory.add("Lab", "L", runtime.clock.now())
    one, two = desk(runtime, "lab", "Maria"), desk(runtime, "lab", "Ken")
    assert connects(broker.mqtt_port, as_session(one, runtime))
    runtime.admin.archive_desk("lab")
    assert not connects(broker.mqtt_port, as_session(one, runtime))
    assert not connects(broker.mqtt_port, as_session(two, runtime))
