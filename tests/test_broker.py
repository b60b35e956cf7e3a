"""The development broker, as a real process, driven by real paho clients over TCP and WebSocket."""

from __future__ import annotations

import hashlib
import json
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from relay.tokens import RABBITMQ_AUDIENCE, SERVICE_USER, Staff, TokenIssuer, new_client_id
from relay.topics import Topics
from tests.support.broker import BrokerProcess

pytestmark = pytest.mark.timeout(60)

KEY = "dev-broker-test-signing-key-" + "k" * 16
OTHER_KEY = "a-completely-different-signing-key-" + "x" * 8
PREFIX = "sms"
TOPICS = Topics(PREFIX)
HOUR = timedelta(hours=1)
WAIT = 5.0  # seconds for anything that should happen
QUIET = 0.7  # seconds we watch for something that must not happen
NOT_AUTHORIZED = 135  # paho's reason code for a 3.1.1 CONNACK return code 5
SUBACK_FAILURE = 0x80


class Peer:
    """A paho client whose callbacks feed queues, so every wait in a test is bounded."""

    def __init__(
        self,
        port: int,
        client_id: str,
        username: str | None,
        password: str | None,
        *,
        transport: str = "tcp",
        ws_path: str = "/mqtt",
        protocol: MQTTProtocolVersion = mqtt.MQTTv311,
        clean_session: bool = True,
        will_topic: str | None = None,
    ) -> None:
        self.port = port
        extra: dict[str, Any] = {} if protocol == mqtt.MQTTv5 else {"clean_session": clean_session}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport=transport,  # type: ignore[arg-type]
            **extra,
        )
        if transport == "websockets":
            client.ws_set_options(path=ws_path)
        if username is not None:
            client.username_pw_set(username, password)
        if will_topic is not None:
            client.will_set(will_topic, b"forged will", qos=1)
        client.reconnect_delay_set(3, 3)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnected = threading.Event()
        client.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.put(rc)
        client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.put(list(rcs))
        client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        client.on_disconnect = lambda *_args: self.disconnected.set()
        self.client = client

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self.connacks.get(timeout=WAIT)

    def subscribe(self, *filters: str) -> list[int]:
        self.client.subscribe([(f, 1) for f in filters])
        return [rc.value for rc in self.subacks.get(timeout=WAIT)]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=WAIT)

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def received(self) -> list[tuple[str, bytes]]:
        """Everything delivered so far, without waiting."""
        out = []
        while not self.messages.empty():
            msg = self.messages.get_nowait()
            out.append((msg.topic, bytes(msg.payload)))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


Connect = Callable[..., Peer]


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerProcess]:
    with BrokerProcess(KEY, PREFIX) as proc:
        yield proc


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(KEY, TOPICS)


@pytest.fixture
def peer(broker: BrokerProcess) -> Iterator[Connect]:
    """Make a Peer on the module broker (closed after the test); `port=` overrides for other brokers."""
    made: list[Peer] = []

    def make(client_id: str, username: str | None, password: str | None, **kwargs: Any) -> Peer:
        port = kwargs.pop("port", broker.ws_port if kwargs.get("transport") == "websockets" else broker.mqtt_port)
        p = Peer(port, client_id, username, password, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def now() -> datetime:
    return datetime.now(UTC)


STAFF = Staff("n1", "Maria")


def new_web_app_id() -> str:
    """A desk id as the relay makes them: lower case, digits and _, never '-'."""
    return "d" + secrets.token_hex(6)


def session_of(web_app_id: str) -> str:
    """Each test desk has one staff session unless a test asks for another."""
    return hashlib.sha256(web_app_id.encode()).hexdigest()[:16]


def issue(
    issuer: TokenIssuer, web_app_id: str, at: datetime, ttl: timedelta, sid: str | None = None
) -> tuple[str, datetime]:
    return issuer.issue(web_app_id, sid or session_of(web_app_id), STAFF, at, ttl)


def client_for(web_app_id: str, sid: str | None = None) -> str:
    return new_client_id(web_app_id, sid or session_of(web_app_id))


def desk(peer: Connect, issuer: TokenIssuer, web_app_id: str, **kwargs: Any) -> Peer:
    """A desk connected with its own fresh token and client id, subscribed to its own filters."""
    token, _ = issue(issuer, web_app_id, now(), HOUR)
    p = peer(client_for(web_app_id), web_app_id, token, **kwargs)
    assert p.connect() == 0
    assert p.subscribe(*TOPICS.filters_for(web_app_id)) == [1, 1]
    return p


def service(peer: Connect, issuer: TokenIssuer, **kwargs: Any) -> Peer:
    p = peer(f"{SERVICE_USER}-{secrets.token_hex(4)}", SERVICE_USER, issuer.service_token(now(), HOUR), **kwargs)
    assert p.connect() == 0
    return p


def test_service_message_reaches_only_the_addressed_desk(peer: Connect, issuer: TokenIssuer) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    desk_a, desk_b = desk(peer, issuer, a), desk(peer, issuer, b)
    relay = service(peer, issuer)

    relay.publish(TOPICS.of(a, "inbound"), b"for A")
    relay.publish(TOPICS.of("unrouted", "inbound"), b"for all")
    relay.publish(TOPICS.of(b, "inbound"), b"for B")

    assert desk_a.next_message().payload == b"for A"
    assert desk_a.next_message().payload == b"for all"
    # The relay's publishes are broadcast in order, so once B has its own message, A's was already routed.
    assert desk_b.next_message().payload == b"for all"
    assert desk_b.next_message().payload == b"for B"
    assert desk_a.received() == [] and desk_b.received() == []


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "sms/#",
        "sms/+/inbound",
        "+/+/inbound",
        "sms/_control/#",
        "sms/_control/signout",
        "$SYS/#",
        "$SYS/broker/uptime",
        "{a}/#",
        "sms/{a}/#",
        "sms/{a}/inbound",
    ],
)
def test_desk_cannot_subscribe_outside_its_own_filters(peer: Connect, issuer: TokenIssuer, topic_filter: str) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    desk_b = desk(peer, issuer, b)

    assert desk_b.subscribe(topic_filter.format(a=a)) == [SUBACK_FAILURE]

    relay = service(peer, issuer)
    relay.publish(TOPICS.of(a, "inbound"), b"for A")
    relay.publish(TOPICS.of(b, "inbound"), b"barrier")
    assert desk_b.next_message().payload == b"barrier"
    assert desk_b.received() == []


def test_desk_publishes_are_dropped_and_forged_signouts_ignored(peer: Connect, issuer: TokenIssuer) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    desk_a, desk_b = desk(peer, issuer, a), desk(peer, issuer, b)
    forged = json.dumps({"webAppId": b, "issuedBefore": time.time() + 3600}).encode()

    desk_a.publish(TOPICS.of(b, "inbound"), b"spoofed")
    desk_a.publish(TOPICS.of(a, "inbound"), b"to myself")
    desk_a.publish(TOPICS.of("unrouted", "inbound"), b"to everyone")
    desk_a.publish(f"{PREFIX}/_control/signout", forged)
    desk_a.publish(TOPICS.of(a, "inbound"), b"retained", retain=True)
    time.sleep(QUIET)

    assert desk_a.received() == [] and desk_b.received() == []
    # amqtt drops a refused publish but keeps the connection.
    assert not desk_a.disconnected.is_set() and not desk_b.disconnected.is_set()
    token, _ = issue(issuer, b, now(), HOUR)
    assert peer(client_for(b), b, token).connect() == 0


def test_desk_with_a_will_is_refused(peer: Connect, issuer: TokenIssuer) -> None:
    """amqtt broadcasts wills without the publish check, so a desk (empty `pub`) may not set one."""
    a, b = new_web_app_id(), new_web_app_id()
    token, _ = issue(issuer, a, now(), HOUR)
    assert peer(client_for(a), a, token, will_topic=TOPICS.of(b, "inbound")).connect() == NOT_AUTHORIZED
    assert peer(client_for(a), a, token, will_topic=TOPICS.of(a, "inbound")).connect() == NOT_AUTHORIZED


def test_retained_messages_are_not_kept(peer: Connect, issuer: TokenIssuer) -> None:
    a = new_web_app_id()
    relay = service(peer, issuer)
    relay.publish(TOPICS.of(a, "inbound"), b"retained", retain=True)

    desk_a = desk(peer, issuer, a)
    relay.publish(TOPICS.of(a, "inbound"), b"live")

    message = desk_a.next_message()
    assert (message.payload, message.retain) == (b"live", False)


def _claims(sub: str, **overrides: Any) -> dict[str, Any]:
    issued = int(now().timestamp()) - 5
    claims = {
        "sub": sub,
        "sid": session_of(sub),
        "iat": issued,
        "exp": issued + 3600,
        "subs": TOPICS.filters_for(sub),
        "pub": [],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _credentials(case: str, a: str, b: str) -> tuple[str | None, str | None]:
    """(username, password) for desk `a`, spoiled in the way `case` names."""
    past = int(now().timestamp()) - 7200
    match case:
        case "wrong signature":
            return a, jwt.encode(_claims(a), OTHER_KEY, algorithm="HS256")
        case "tampered payload":
            head, _, sig = jwt.encode(_claims(a), KEY, algorithm="HS256").split(".")
            body = jwt.utils.base64url_encode(json.dumps(_claims(a, subs=["#"])).encode()).decode()
            return a, f"{head}.{body}.{sig}"
        case "alg none":
            return a, jwt.encode(_claims(a), None, algorithm="none")  # type: ignore[arg-type]
        case "expired":
            return a, jwt.encode(_claims(a, iat=past, exp=past + 3600), KEY, algorithm="HS256")
        case "sub differs from username":
            return a, jwt.encode(_claims(b), KEY, algorithm="HS256")
        case "no iat":
            return a, jwt.encode(_claims(a, iat=None), KEY, algorithm="HS256")
        case "a rabbitmq token":  # with an audience: meant for MQTT_BROKER_ACCESS=rabbitmq, not this broker
            return a, jwt.encode(_claims(a, aud=RABBITMQ_AUDIENCE), KEY, algorithm="HS256")
        case "anonymous":
            return None, None
        case "username without password":
            return a, None
        case "garbage password":
            return a, "not-a-jwt"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "wrong signature",
        "tampered payload",
        "alg none",
        "expired",
        "sub differs from username",
        "no iat",
        "a rabbitmq token",
        "anonymous",
        "username without password",
        "garbage password",
    ],
)
def test_bad_credentials_are_refused_at_connect(peer: Connect, case: str) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    username, password = _credentials(case, a, b)
    assert peer(client_for(a), username, password).connect() == NOT_AUTHORIZED


@pytest.mark.parametrize(
    "client_id", ["{b}-0123456789abcdef", "{a}0123456789abcdef", "{a}", "relay-service-1", "x-{a}-1"]
)
def test_desk_client_id_must_start_with_its_web_app_id(peer: Connect, issuer: TokenIssuer, client_id: str) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    token, _ = issue(issuer, a, now(), HOUR)
    assert peer(client_id.format(a=a, b=b), a, token).connect() == NOT_AUTHORIZED


def test_service_client_id_must_start_with_relay_service(peer: Connect, issuer: TokenIssuer) -> None:
    token = issuer.service_token(now(), HOUR)
    assert peer(client_for(new_web_app_id()), SERVICE_USER, token).connect() == NOT_AUTHORIZED
    assert peer(f"{SERVICE_USER}-{secrets.token_hex(4)}", SERVICE_USER, token).connect() == 0


@pytest.mark.parametrize("clean_session", [True, False])
def test_bad_token_with_a_victims_client_id_cannot_take_over(
    peer: Connect,
    issuer: TokenIssuer,
    clean_session: bool,
) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    token, _ = issue(issuer, a, now(), HOUR)
    client_id = client_for(a)
    victim = peer(client_id, a, token, clean_session=clean_session)
    assert victim.connect() == 0
    assert victim.subscribe(*TOPICS.filters_for(a)) == [1, 1]

    forged = jwt.encode(_claims(a), OTHER_KEY, algorithm="HS256")
    b_token, _ = issue(issuer, b, now(), HOUR)
    for username, password in ((a, forged), (b, b_token), (a, b_token), (None, None)):
        intruder = peer(client_id, username, password, clean_session=clean_session)
        assert intruder.connect() == NOT_AUTHORIZED
        intruder.close()

    service(peer, issuer).publish(TOPICS.of(a, "inbound"), b"still yours")
    assert victim.next_message().payload == b"still yours"
    assert not victim.disconnected.is_set()


def test_signout_disconnects_the_desk_and_refuses_its_old_tokens(peer: Connect, issuer: TokenIssuer) -> None:
    a, b = new_web_app_id(), new_web_app_id()
    old_token, _ = issue(issuer, a, now() - timedelta(seconds=10), HOUR)
    tcp = peer(client_for(a), a, old_token)
    ws = peer(client_for(a), a, old_token, transport="websockets")
    assert tcp.connect() == 0 and ws.connect() == 0
    bystander = desk(peer, issuer, b)
    relay = service(peer, issuer)
    issued_before = int(jwt.decode(old_token, options={"verify_signature": False})["iat"])

    relay.publish(f"{PREFIX}/_control/signout", json.dumps({"webAppId": a, "issuedBefore": issued_before}).encode())

    assert tcp.disconnected.wait(WAIT) and ws.disconnected.wait(WAIT)
    assert peer(client_for(a), a, old_token).connect() == NOT_AUTHORIZED
    fresh, _ = issue(issuer, a, now(), HOUR)
    assert peer(client_for(a), a, fresh).connect() == 0
    relay.publish(TOPICS.of(b, "inbound"), b"unaffected")
    assert bystander.next_message().payload == b"unaffected"
    assert not bystander.disconnected.is_set()


def test_signing_out_one_session_leaves_the_desks_other_sessions_connected(peer: Connect, issuer: TokenIssuer) -> None:
    a = new_web_app_id()
    maria, ken = secrets.token_hex(8), secrets.token_hex(8)
    maria_token, maria_exp = issue(issuer, a, now(), HOUR, sid=maria)
    ken_token, _ = issue(issuer, a, now(), HOUR, sid=ken)
    maria_tab = peer(client_for(a, maria), a, maria_token)
    ken_tab = peer(client_for(a, ken), a, ken_token)
    assert maria_tab.connect() == 0 and ken_tab.connect() == 0
    assert ken_tab.subscribe(*TOPICS.filters_for(a)) == [1, 1]
    relay = service(peer, issuer)

    until = int(maria_exp.timestamp()) + 1
    relay.publish(
        f"{PREFIX}/_control/signout", json.dumps({"webAppId": a, "sessionId": maria, "until": until}).encode()
    )

    assert maria_tab.disconnected.wait(WAIT)
    assert peer(client_for(a, maria), a, maria_token).connect() == NOT_AUTHORIZED
    relay.publish(TOPICS.of(a, "inbound"), b"for the desk")
    assert ken_tab.next_message().payload == b"for the desk"
    assert not ken_tab.disconnected.is_set()


def test_a_session_token_needs_a_client_id_of_its_own_session(peer: Connect, issuer: TokenIssuer) -> None:
    a = new_web_app_id()
    token, _ = issue(issuer, a, now(), HOUR)
    assert peer(client_for(a, secrets.token_hex(8)), a, token).connect() == NOT_AUTHORIZED
    assert peer(client_for(a), a, token).connect() == 0


@pytest.mark.parametrize("ws_path", ["/mqtt", "/"])
def test_websocket_desk_authenticates_and_receives(peer: Connect, issuer: TokenIssuer, ws_path: str) -> None:
    a = new_web_app_id()
    desk_a = desk(peer, issuer, a, transport="websockets", ws_path=ws_path)
    service(peer, issuer).publish(TOPICS.of(a, "inbound"), b"over ws")
    assert desk_a.next_message().payload == b"over ws"

    bad = peer(client_for(a), a, jwt.encode(_claims(a), OTHER_KEY, algorithm="HS256"), transport="websockets")
    assert bad.connect() == NOT_AUTHORIZED


def test_mqtt5_is_not_offered(peer: Connect, issuer: TokenIssuer) -> None:
    """amqtt 0.12 speaks MQTT 3.1.1 only: a v5 CONNECT never gets a CONNACK (mqtt.js defaults to 3.1.1)."""
    a = new_web_app_id()
    token, _ = issue(issuer, a, now(), HOUR)
    v5 = peer(client_for(a), a, token, protocol=mqtt.MQTTv5)
    v5.client.connect("127.0.0.1", v5.port, keepalive=30)
    v5.client.loop_start()
    with pytest.raises(queue.Empty):
        v5.connacks.get(timeout=2 * QUIET)


def test_key_rotation_refuses_old_tokens_and_sigterm_stops_cleanly(peer: Connect) -> None:
    a = new_web_app_id()
    with BrokerProcess(KEY, PREFIX) as own:
        old, _ = issue(TokenIssuer(KEY, TOPICS), a, now(), HOUR)
        connected = peer(client_for(a), a, old, port=own.mqtt_port)
        assert connected.connect() == 0
        ws = peer(client_for(a), a, old, port=own.ws_port, transport="websockets")
        assert ws.connect() == 0

        own.signing_key = OTHER_KEY
        started = time.monotonic()
        assert own.restart() == 0
        assert time.monotonic() - started < 10
        assert connected.disconnected.wait(WAIT) and ws.disconnected.wait(WAIT)

        assert peer(client_for(a), a, old, port=own.mqtt_port).connect() == NOT_AUTHORIZED
        new, _ = issue(TokenIssuer(OTHER_KEY, TOPICS), a, now(), HOUR)
        assert peer(client_for(a), a, new, port=own.mqtt_port).connect() == 0
        stopped = time.monotonic()
        assert own.stop() == 0
        assert time.monotonic() - stopped < 5
