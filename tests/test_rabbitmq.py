"""RabbitMQ as the broker, on a real 3-node cluster: desks' rights from their tokens, and the relay ending
connections through the management API at sign-out, expiry and archiving. The relay publishes on node 1; desks
connect to nodes 2 and 3."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from tests.support.mqtt import Subscriber
from tests.support.rabbitmq import RabbitCluster
from tests.support.runtime import as_session, clock, desk, make_runtime

pytestmark = pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True, scope="module")


@pytest.fixture
def runtime(tmp_path: Path, broker: RabbitCluster, signing_key: str, sandbox_url: str) -> Iterator[Runtime]:
    store = SqliteStore(str(tmp_path / "relay.sqlite3"))
    rt = make_runtime(store, broker.nodes[0].mqtt_port, signing_key, sandbox_url, **broker.relay_env())
    yield rt
    rt.close()


def subscribed(port: int, session: dict[str, Any]) -> Subscriber:
    """Use with `with`, which connects and waits for the SUBACK."""
    return Subscriber(port, session)


def connects(port: int, session: dict[str, Any]) -> bool:
    try:
        with Subscriber(port, session):
            return True
    except ConnectionRefusedError:
        return False


def listed(broker: RabbitCluster, client_id: str, timeout: float = 20.0) -> bool:
    """The management API lists a connection once its node has emitted statistics: a second on a quiet
    cluster (`collect_statistics_interval`), but more than five in CI, with the suite and three nodes on two cores."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.get("client_properties", {}).get("client_id") == client_id for c in broker.connections(1)):
            return True
        time.sleep(0.2)
    return False


def test_the_token_carries_rabbitmqs_audience_and_scopes(runtime: Runtime) -> None:
    import jwt

    grant = desk(runtime, "reception")
    claims = jwt.decode(grant.token, options={"verify_signature": False})
    assert claims["aud"] == "rabbitmq"
    assert sorted(claims["scope"].split()) == sorted(
        [
            "rabbitmq.read:*/amq.topic/sms.reception.*",
            "rabbitmq.read:*/amq.topic/sms.unrouted.*",
            *(
                f"rabbitmq.{r}:*/mqtt-subscription-reception-{grant.session_id}-*"
                for r in ("configure", "write", "read")
            ),
        ]
    )
    assert runtime.sessions.authenticate(grant.token).web_app_id == "reception"


def test_a_desk_reads_its_topics_on_another_node_than_the_relay(runtime: Runtime, broker: RabbitCluster) -> None:
    a = desk(runtime, "reception")
    ken = desk(runtime, "reception", "Ken")
    with (
        subscribed(broker.nodes[1].mqtt_port, as_session(a, runtime)) as on_2,
        subscribed(broker.nodes[2].mqtt_port, as_session(ken, runtime)) as on_3,
    ):
        assert on_2.granted == on_3.granted == [1, 1]
        runtime.publisher.publish("sms/reception/inbound", b'{"Body": "to the desk"}')
        runtime.publisher.publish("sms/unrouted/inbound", b'{"Body": "to everyone"}')
        for sub in (on_2, on_3):
            got = sorted(p["Body"] for _, p in (sub.wait_for(lambda t, p: True) for _ in range(2)))
            assert got == ["to everyone", "to the desk"]


@pytest.mark.parametrize("topic", ["sms/billing/#", "#", "sms/+/inbound", "sms/#", "$SYS/#"])
def test_another_desks_topics_are_refused_never_granted(runtime: Runtime, broker: RabbitCluster, topic: str) -> None:
    """RabbitMQ refuses by closing the connection instead of SUBACK 0x80; either is a refusal."""
    billing = desk(runtime, "billing")
    sub = Subscriber(broker.nodes[1].mqtt_port, as_session(desk(runtime, "reception"), runtime))
    sub.topics = [topic]
    with contextlib.suppress(ConnectionRefusedError):
        sub.start(5)
    try:
        assert 1 not in sub.granted and 0 not in sub.granted
        runtime.publisher.publish("sms/billing/inbound", json.dumps({"Body": "billing only"}).encode())
        with subscribed(broker.nodes[2].mqtt_port, as_session(billing, runtime)):
            pass
        assert not [p for _, p in sub.drain(0.5) if p.get("Body") == "billing only"]
    finally:
        sub.stop()


def test_a_desk_cannot_publish(runtime: Runtime, broker: RabbitCluster) -> None:
    victim_grant, attacker_grant = desk(runtime, "billing"), desk(runtime, "reception", "Eve")
    with subscribed(broker.nodes[1].mqtt_port, as_session(victim_grant, runtime)) as victim:
        attacker = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=attacker_grant.client_id)
        attacker.username_pw_set(attacker_grant.mqtt_username, attacker_grant.mqtt_password)
        attacker.connect("127.0.0.1", broker.nodes[2].mqtt_port)
        attacker.loop_start()
        try:
            attacker.publish("sms/billing/inbound", json.dumps({"Body": "spoofed"}), qos=1).wait_for_publish(2)
        except RuntimeError:
            pass  # the broker closed the connection: that is its refusal
        finally:
            attacker.disconnect()
            attacker.loop_stop()
        assert not [p for _, p in victim.drain(1.0) if p.get("Body") == "spoofed"]


def test_signing_out_closes_that_session_only_and_the_sweep_keeps_it_out(
    runtime: Runtime, broker: RabbitCluster
) -> None:
    maria, ken = desk(runtime, "reception", "Maria"), desk(runtime, "reception", "Ken")
    with subscribed(broker.nodes[2].mqtt_port, as_session(ken, runtime)) as kens_tab:
        marias_tab = subscribed(broker.nodes[1].mqtt_port, as_session(maria, runtime))
        marias_tab.start()
        try:
            assert listed(broker, maria.client_id)
            assert marias_tab.disconnected_by_broker(lambda: runtime.sessions.sign_out(maria.token), timeout=5)
        finally:
            marias_tab.stop()
        # RabbitMQ itself still accepts the signed-out token: the next sweep closes such a connection.
        back = subscribed(broker.nodes[1].mqtt_port, as_session(maria, runtime))
        back.start()
        try:
            assert listed(broker, maria.client_id)
            assert back.disconnected_by_broker(lambda: runtime.access.sweep(runtime.clock.now()), timeout=5)
        finally:
            back.stop()
        runtime.publisher.publish("sms/reception/inbound", b'{"Body": "still here"}')
        kens_tab.wait_for(lambda t, p: p.get("Body") == "still here")
        assert kens_tab.client.is_connected()


def closing(sub: Subscriber) -> threading.Event:
    gone = threading.Event()
    sub.client.on_disconnect = lambda *args: gone.set()
    return gone


def test_an_expired_token_is_cut_off_by_the_sweep(runtime: Runtime, broker: RabbitCluster) -> None:
    first = desk(runtime, "reception")
    clock(runtime).advance(timedelta(hours=6))
    renewed = desk(runtime, "reception", "Ken")
    clock(runtime).advance(timedelta(hours=6, seconds=1))
    with (
        subscribed(broker.nodes[1].mqtt_port, as_session(first, runtime)) as old,
        subscribed(broker.nodes[2].mqtt_port, as_session(renewed, runtime)) as live,
    ):
        assert listed(broker, first.client_id) and listed(broker, renewed.client_id)
        old_gone, live_gone = closing(old), closing(live)
        assert runtime.access.sweep(runtime.clock.now()) >= 1
        assert old_gone.wait(5)
        assert not live_gone.wait(1)


def test_archiving_a_desk_closes_every_session_of_it(runtime: Runtime, broker: RabbitCluster) -> None:
    runtime.directory.add("Lab", "L", runtime.clock.now())
    one, two, other = desk(runtime, "lab", "Maria"), desk(runtime, "lab", "Ken"), desk(runtime, "reception")
    with (
        subscribed(broker.nodes[1].mqtt_port, as_session(one, runtime)) as tab_one,
        subscribed(broker.nodes[2].mqtt_port, as_session(two, runtime)) as tab_two,
        subscribed(broker.nodes[2].mqtt_port, as_session(other, runtime)) as bystander,
    ):
        assert all(listed(broker, g.client_id) for g in (one, two, other))
        gone = [closing(tab) for tab in (tab_one, tab_two, bystander)]
        runtime.admin.archive_desk("lab")
        assert gone[0].wait(5) and gone[1].wait(5)
        assert not gone[2].wait(1)
