"""Shared fixtures: a real broker, the local host with its sandbox, and Azurite, each on free loopback ports."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from devhost.sandbox import SandboxConfig, create_sandbox_app
from relay.runtime import Runtime, install
from relay.store import Store
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore
from tests.support.asgi import serve_in_thread
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.mosquitto import MosquittoProcess
from tests.support.mosquitto import available as mosquitto_available
from tests.support.rabbitmq import RabbitCluster
from tests.support.rabbitmq import available as rabbitmq_available
from tests.support.runtime import ACCOUNT, OURS, TOKEN, make_runtime
from tests.support.sandbox import Sandbox, sandboxes
from tests.support.tools import require_tool

BROKERS = ["amqtt", "mosquitto", "rabbitmq"]

SCRUBBED_PREFIXES = ("TWILIO_", "MQTT_", "RELAY_", "RABBITMQ_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's real Twilio account, broker or proxy."""
    for name in list(os.environ):
        if name.upper().startswith(SCRUBBED_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def signing_key() -> str:
    return secrets.token_urlsafe(48)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """A failure on the RabbitMQ cluster carries the tail of each node's log: a refusal there is a closed
    connection with no reason given, and the reason is only in the broker's log."""
    report = yield
    cluster = getattr(item, "funcargs", {}).get("broker")
    if isinstance(report, pytest.TestReport) and report.failed and isinstance(cluster, RabbitCluster):
        for i, node in enumerate(cluster.nodes):
            report.sections.append((f"RabbitMQ {node.name} log (tail)", cluster.log(i)[-4000:]))
    return report


@pytest.fixture(scope="session")
def rabbitmq(signing_key: str) -> Iterator[RabbitCluster]:
    """One 3-node cluster for the whole run (it takes ~35 s to form), stopped at the end even after a failure."""
    require_tool(rabbitmq_available(), "Debian's rabbitmq-server is not installed")
    with RabbitCluster(signing_key) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def broker(
    request: pytest.FixtureRequest, signing_key: str
) -> Iterator[BrokerProcess | MosquittoProcess | RabbitCluster]:
    """A broker the test can stop and start again on the same ports: the embedded amqtt unless a module asks
    for another with `pytest.mark.parametrize("broker", BROKERS, indirect=True, scope="module")`."""
    kind = getattr(request, "param", "amqtt")
    if kind == "rabbitmq":
        cluster: RabbitCluster = request.getfixturevalue("rabbitmq")
        yield cluster
        return
    if kind == "mosquitto":
        require_tool(mosquitto_available(), "Debian's mosquitto (with mosquitto_ctrl) is not installed")
        with MosquittoProcess() as mosquitto:
            yield mosquitto
        return
    with BrokerProcess(signing_key) as process:
        yield process


@pytest.fixture(scope="module")
def devhost(
    request: pytest.FixtureRequest, broker: BrokerProcess, signing_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    """`python -m devhost` with its sandbox, publishing to the module's broker, with the module's `DEVHOST_ENV`
    settings when it has some."""
    data_dir: Path = tmp_path_factory.mktemp("devhost")
    env = getattr(request.module, "DEVHOST_ENV", None)
    code = secrets.token_urlsafe(12)
    with DevhostProcess(broker, data_dir, access_code=code, signing_key=signing_key, extra_env=env) as host:
        yield host


@pytest.fixture(scope="module")
def maria(browser: Any, devhost: DevhostProcess) -> Iterator[Any]:
    """Maria signed in at Reception in a browser; no page of hers ever opened an alert (a hostile name's onerror)."""
    from tests.support.webclient import signed_in

    with signed_in(browser, devhost, "Maria") as desk:
        yield desk
        assert not desk.dialogs, desk.dialogs


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, imported here only when a browser test asks for it."""
    from tests.support.webclient import chromium

    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """The Twilio sandbox alone, served in a thread, for in-process runtimes (`tests.support.runtime`)."""
    sandbox = create_sandbox_app(
        SandboxConfig(account_sid=ACCOUNT, auth_token=TOKEN, from_number=OURS, messaging_service_sid=None)
    )
    with serve_in_thread(Starlette(routes=[Mount("/sandbox", sandbox)])) as base:
        yield base + "/sandbox"


@pytest.fixture(params=["sqlite", "tables"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store contract test runs on both backends: SQLite in a temp dir, Table Storage on Azurite."""
    backend: Store
    if request.param == "sqlite":
        backend = SqliteStore(str(tmp_path / "relay.db"))
    else:
        conn: str = request.getfixturevalue("azurite")
        backend = TableStore(conn, table_prefix=f"t{uuid.uuid4().hex[:16]}", timeout_seconds=5.0)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A Table Storage connection string for an in-memory Azurite started for this run."""
    from tests.support.azurite import start_azurite

    with start_azurite() as connection_string:
        yield connection_string


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Sandboxes with a signature-checking receiver, each configured as the test asks, stopped afterwards."""
    with sandboxes() as start:
        yield start


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


@pytest.fixture
def installed(broker: BrokerProcess, signing_key: str, sandbox_url: str) -> Iterator[Callable[..., Runtime]]:
    """Build an in-process runtime on a store (with extra settings) and install it, so the real functions called
    in the test use it; every one made is closed afterwards."""
    made: list[Runtime] = []

    def make(store: Store, **env: str) -> Runtime:
        rt = make_runtime(store, broker.mqtt_port, signing_key, sandbox_url, **env)
        install(rt)
        made.append(rt)
        return rt

    yield make
    install(None)
    for rt in made:
        rt.close()
