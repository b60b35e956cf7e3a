"""Desk changes reach every instance at once over the broker, and a feed that cannot be trusted is not."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest

from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from relay.tokens import SERVICE_USER
from tests.support.broker import BrokerProcess
from tests.support.runtime import make_runtime

Instances = Callable[..., tuple[Runtime, Runtime]]


@pytest.fixture
def instances(tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str) -> Iterator[Instances]:
    """Two relay instances on one store and one broker, as two Functions instances share Table Storage."""
    made: list[Runtime] = []

    def make(**env: str) -> tuple[Runtime, Runtime]:
        for _ in range(2):
            store = SqliteStore(str(tmp_path / "relay.sqlite3"))
            made.append(make_runtime(store, broker.mqtt_port, signing_key, sandbox_url, **broker.relay_env(), **env))
        return made[-2], made[-1]

    yield make
    for rt in made:
        rt.close()


def until(check: Callable[[], bool], seconds: float) -> float | None:
    """How long `check` took to hold, or None if it did not within `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def live(*runtimes: Runtime) -> bool:
    return until(lambda: all(rt.desk_changes.epoch() is not None for rt in runtimes), 10) is not None


def name_on(rt: Runtime, desk: str) -> str:
    found = rt.directory.get(desk)
    assert found is not None
    return found.name


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto", "rabbitmq"], indirect=True)
def test_a_desk_renamed_on_one_instance_shows_at_once_on_another(instances: Instances) -> None:
    first, second = instances()
    assert live(first, second)
    assert name_on(first, "reception") == "Reception"  # cached on the first, which would keep it 2 s without the feed
    second.directory.rename("reception", "Front desk", None, second.clock.now())
    took = until(lambda: name_on(first, "reception") == "Front desk", 1.0)
    assert took is not None and took < 1.0


def test_a_desk_that_a_starting_instance_seeds_shows_at_once_on_one_already_running(
    tmp_path: Path, broker: BrokerProcess, signing_key: str, sandbox_url: str, instances: Instances
) -> None:
    """The new instance creates its configured desk before it is connected; its probe tells the others."""
    first, _ = instances()
    assert live(first) and first.directory.get("lab") is None
    desks = "Reception=R,Billing=B,Lab=L"
    starting = make_runtime(
        SqliteStore(str(tmp_path / "relay.sqlite3")), broker.mqtt_port, signing_key, sandbox_url, RELAY_DESKS=desks
    )
    try:
        assert until(lambda: first.directory.get("lab") is not None, 1.0) is not None
    finally:
        starting.close()


def test_a_change_made_while_an_instance_was_disconnected_is_not_hidden_by_its_cache(
    instances: Instances, broker: BrokerProcess
) -> None:
    first, second = instances()
    assert live(first, second)
    assert name_on(first, "reception") == "Reception"
    broker.stop()
    second.directory.rename("reception", "Front desk", None, second.clock.now())  # its announcement cannot go out
    broker.start()
    assert first.publisher.wait_connected(10)
    assert until(lambda: name_on(first, "reception") == "Front desk", 3.5) is not None  # not the 300 s of trust


def test_a_broker_that_refuses_the_feed_leaves_the_short_cache(
    instances: Instances, signing_key: str, broker: BrokerProcess
) -> None:
    now = int(time.time())
    claims = {"sub": SERVICE_USER, "iat": now, "exp": now + 3600, "subs": [], "pub": ["sms/#"]}  # no subscriptions
    first, second = instances(MQTT_PASSWORD=jwt.encode(claims, signing_key, algorithm="HS256"))
    time.sleep(1.0)  # a probe that was going to come back has by now
    assert first.desk_changes.epoch() is None
    assert name_on(first, "reception") == "Reception"
    second.directory.rename("reception", "Front desk", None, second.clock.now())
    assert until(lambda: name_on(first, "reception") == "Front desk", 3.0) is not None
