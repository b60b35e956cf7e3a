"""The embedded broker: amqtt with CONNECT authenticated before any session is touched, and no retained messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.events import MQTTEvents
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from broker.auth import DeskGuardPlugin
from broker.config import BrokerConfig

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10

_SESSION_CARRY_OVER = (
    "will_flag",
    "will_retain",
    "will_message",
    "will_topic",
    "will_qos",
    "keep_alive",
    "username",
    "password",
)


class GuardedBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt 0.12's Broker with two gaps closed.

    amqtt deletes (clean session) or takes over (persistent session) an existing session with the same client id
    before the auth plugins run, so a CONNECT with a bad token and a victim's client id would cut the victim off.
    Here the CONNECT is authenticated first; the session handling after that mirrors amqtt's.

    amqtt also replays retained messages to a resumed session for every subscription in the broker, not only its
    own, without the receive check; so this broker keeps no retained messages.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        for plugin in self.plugins_manager.plugins:
            if isinstance(plugin, DeskGuardPlugin):
                plugin.bind_disconnector(self.disconnect_clients)

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, session = await asyncio.wait_for(
                BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager),
                CONNECT_TIMEOUT_SECONDS,
            )
        except (AMQTTError, MQTTError, NoDataError, OSError, TimeoutError) as exc:
            # amqtt reads a v5 CONNECT as a longer 3.1.1 one and waits for bytes that never come: hence the timeout.
            with contextlib.suppress(OSError):
                await writer.close()
            raise AMQTTError(exc) from exc

        if not await self._authenticate(session, self.listeners_config["default"]):
            connack = ConnackPacket.build(0, NOT_AUTHORIZED)
            await self.plugins_manager.fire_event(MQTTEvents.PACKET_SENT, packet=connack)
            await connack.to_stream(writer)
            await writer.close()
            msg = f"CONNECT from {remote_address}:{remote_port} refused: not authorized"
            raise AMQTTError(msg)

        # Authenticated, and the guard plugin bound the client id to the token's webAppId: the same desk may now
        # replace or resume its own session, as amqtt does.
        if session.clean_session:
            await self._delete_session(session.client_id)
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for name in _SESSION_CARRY_OVER:
                setattr(existing, name, getattr(session, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        """Not kept (see the class docstring); the message itself is still delivered live."""
        logger.debug("retain flag ignored on %s", topic_name)

    async def disconnect_clients(self, prefix: str) -> int:
        """Close and forget every session, live or persistent, whose client id starts with `prefix` (a desk's
        `<webAppId>-`, or one staff session's `<webAppId>-<sid>-`); returns how many."""
        doomed = [client_id for client_id in self._sessions if client_id.startswith(prefix)]
        for client_id in doomed:
            await self._cleanup_session(client_id)
        return len(doomed)

    def bound_port(self, listener_name: str) -> int:
        """The port a listener actually got, for a configured port of 0."""
        sockets = self._servers[listener_name].instance.sockets
        return int(next(iter(sockets)).getsockname()[1])


class DevBroker:
    """Start/stop wrapper the CLI and the local host use; ports are the bound ones once started."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.mqtt_port = config.mqtt_port
        self.ws_port = config.ws_port
        self._broker: GuardedBroker | None = None

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{_url_host(self.config.host)}:{self.mqtt_port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket listener serves every path, so this and `<ws_url>/mqtt` (mqtt.js's default) both work."""
        return f"ws://{_url_host(self.config.host)}:{self.ws_port}"

    async def start(self) -> None:
        """Raises amqtt's BrokerError when a listener cannot bind."""
        if self._broker is not None:
            raise RuntimeError("broker already started")
        broker = GuardedBroker(self.config.amqtt_config())
        await broker.start()
        self._broker = broker
        self.mqtt_port = broker.bound_port("default")
        self.ws_port = broker.bound_port("ws")

    async def shutdown(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


async def run_broker(config: BrokerConfig) -> DevBroker:
    """Start a broker and return it; the caller awaits `shutdown()`."""
    broker = DevBroker(config)
    await broker.start()
    return broker


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
