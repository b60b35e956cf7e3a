"""Losing a RabbitMQ node loses nothing: `kill -9` the desk's node, then the relay's, while webhooks flow in.

The desk holds a persistent MQTT/TCP session (a quorum queue, replicated on all three nodes) on node 2 and moves
to node 3 when node 2 dies, as the web client moves along its list of broker URLs. The relay publishes on node
1 and moves along `MQTT_URL` when node 1 dies; the outbox holds what could not be published meanwhile. Every
webhook the relay acknowledged reaches the desk; duplicates are removed by MessageSid, as the web client does.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from tests.support.mqtt import PersistentDesk
from tests.support.rabbitmq import RabbitCluster
from tests.support.runtime import desk, inbound_params, make_runtime

pytestmark = pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True, scope="module")

RATE = 50  # webhooks per second


@pytest.fixture
def runtime(tmp_path: Path, broker: RabbitCluster, signing_key: str, sandbox_url: str) -> Iterator[Runtime]:
    store = SqliteStore(str(tmp_path / "relay.sqlite3"))
    env = {**broker.relay_env(), "MQTT_PUBLISH_TIMEOUT_SECONDS": "1"}
    rt = make_runtime(store, broker.nodes[0].mqtt_port, signing_key, sandbox_url, **env)
    yield rt
    rt.close()


class Webhooks:
    """Twilio posting inbound texts at a steady rate; records what the relay acknowledged."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.acked: list[str] = []
        self.phase = "all nodes up"
        self.phases: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            params = inbound_params(f"+1415555{secrets.randbelow(9000) + 1000}", "during failover")
            self.runtime.inbound.ingest(params)  # returns once stored: the relay's 200 to Twilio
            self.acked.append(params["MessageSid"])
            self.phases[params["MessageSid"]] = self.phase
            time.sleep(1 / RATE)

    def __enter__(self) -> Webhooks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def wait_for_all(desk_: PersistentDesk, wanted: list[str], timeout: float) -> set[str]:
    """What of `wanted` has still not arrived after `timeout`."""
    deadline = time.monotonic() + timeout
    while set(wanted) - set(desk_.values("MessageSid")) and time.monotonic() < deadline:
        time.sleep(0.2)
    return set(wanted) - set(desk_.values("MessageSid"))


def catch_up(runtime: Runtime, web_app_id: str) -> set[str]:
    """Every MessageSid the catch-up feed (`GET /api/messages`) gives the desk, page by page."""
    sids, cursor = set(), None
    while True:
        page = runtime.conversations.feed(web_app_id, cursor)
        sids |= {e["payload"].get("MessageSid") for e in page["events"]}
        if not page["events"]:
            return sids
        cursor = page["cursor"]


def test_killing_the_desks_node_then_the_relays_loses_no_acknowledged_message(
    runtime: Runtime, broker: RabbitCluster
) -> None:
    grant = desk(runtime, "reception")
    persistent = PersistentDesk(
        grant.client_id, grant.mqtt_username, grant.mqtt_password, runtime.topics.filters_for("reception")
    )
    assert persistent.connect(broker.nodes[1].mqtt_port) is False
    with Webhooks(runtime) as hooks:
        time.sleep(1.0)
        broker.kill(1)  # the desk's node
        assert persistent.dropped.wait(15)
        persistent.leave()
        broker.wait_ready(2, 60)  # node 3 has seen node 2 go, and serves vhost '/'
        assert persistent.connect(broker.nodes[2].mqtt_port) is True  # the session (its quorum queue) survived
        rejoined_in = broker.start_node(1)
        desk_phase = list(hooks.acked)
        lost_with_desk_node = wait_for_all(persistent, desk_phase, 30)
        broker.kill(0)  # the relay's node: the publisher moves to node 2, the outbox covers the gap
        time.sleep(3.0)
    lost_over_mqtt = wait_for_all(persistent, hooks.acked, 20)
    broker.start_node(0)
    got = persistent.values("MessageSid")
    duplicates = sum(n - 1 for n in Counter(got).values())
    print(
        f"failover: sent={len(hooks.acked)} received={len(set(got))} duplicates={duplicates} "
        f"lost with the desk's node={len(lost_with_desk_node)} of {len(desk_phase)}, "
        f"missed over MQTT with the relay's node={len(lost_over_mqtt)}"
    )
    assert len(desk_phase) > RATE and len(hooks.acked) > len(desk_phase) + RATE
    assert not lost_with_desk_node, f"{len(lost_with_desk_node)} of {len(desk_phase)} never reached the desk"
    assert set(got) <= set(hooks.acked)
    # RabbitMQ 3.10 acknowledges some publishes around a quorum-queue leader change that it then drops; every
    # one is stored, so a desk that catches up (as the web client does after a reconnect) still has it.
    assert lost_over_mqtt <= catch_up(runtime, "reception")
    assert rejoined_in < 90
    persistent.end()
