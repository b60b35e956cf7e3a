"""Inbound polling against the sandbox: paging, restarts, the overlap window, and the sweep behind webhooks."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from devhost.sandbox import SandboxConfig, create_sandbox_app
from devhost.sandbox.state import SandboxState, new_sid
from relay.polling import Poller
from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from relay.webhooks import WebhookRequest
from tests.support.asgi import serve_in_thread
from tests.support.broker import BrokerProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import ACCOUNT, OURS, TOKEN, as_session, desk, make_runtime

pytestmark = pytest.mark.slow


@dataclass
class Relay:
    """Where the sandbox posts its webhooks: the in-process runtime, or a front door that is down."""

    runtime: Runtime | None = None
    reachable: bool = True


@dataclass
class Twilio:
    url: str  # the sandbox's base, for the phones' endpoints and TWILIO_API_BASE_URL
    state: SandboxState
    relay: Relay

    def reply(self, phone: str, body: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/phones/{phone}/reply", json={"body": body}, timeout=15)
        assert response.status_code in (200, 502), response.text
        return {"http": response.status_code, **response.json()}

    def arrived(self, phone: str, body: str, sent: datetime | None = None) -> str:
        """A text Twilio took in (sent now, or at `sent`) whose webhook never reached anyone."""
        message = self.state.add_message(
            sid=new_sid("SM"),
            from_=phone,
            to=OURS,
            body=body,
            direction="inbound",
            status="received",
            num_segments=1,
            date_sent=sent or datetime.now(UTC),
        )
        return message.sid

    def received(self, phone: str) -> list[str]:
        return [m["body"] for m in httpx.get(f"{self.url}/phones/{phone}/messages", timeout=10).json()]

    def list_calls(self) -> int:
        calls = httpx.get(f"{self.url}/calls", timeout=10).json()
        return sum(1 for c in calls if c["method"] == "GET" and c["path"].endswith("/Messages.json"))


def relay_endpoint(relay: Relay) -> Starlette:
    """What functions/receive_sms does, for a runtime built in this process."""

    async def receive(request: Request) -> Response:
        if not relay.reachable or relay.runtime is None:
            return Response("the relay is unreachable", status_code=503)
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        webhook = WebhookRequest(
            url=str(request.url), headers={k.lower(): v for k, v in request.headers.items()}, params=dict(form)
        )
        result = await anyio.to_thread.run_sync(relay.runtime.inbound.receive, webhook)
        return Response(result.twiml, media_type="text/xml")

    return Starlette(routes=[Route("/api/receive_sms", receive, methods=["POST"])])


@contextmanager
def sandbox_with_relay() -> Iterator[Twilio]:
    """A fresh sandbox whose webhooks reach the runtime a test puts in `twilio.relay`."""
    relay = Relay()
    with serve_in_thread(relay_endpoint(relay)) as relay_base:
        config = SandboxConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            from_number=OURS,
            messaging_service_sid=None,
            webhook_url=f"{relay_base}/api/receive_sms",
        )
        sandbox = create_sandbox_app(config)
        with serve_in_thread(Starlette(routes=[Mount("/sandbox", sandbox)])) as base:
            yield Twilio(base + "/sandbox", sandbox.state.sandbox, relay)


@pytest.fixture
def twilio() -> Iterator[Twilio]:
    """Per test, so one test's messages never fall into another's listing window."""
    with sandbox_with_relay() as sandbox:
        yield sandbox


def runtime_for(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str, mode: str, **env: str
) -> Runtime:
    store = SqliteStore(str(tmp_path / "relay.sqlite3"))
    rt = make_runtime(store, broker.mqtt_port, signing_key, twilio.url, RELAY_INBOUND_MODE=mode, **env)
    twilio.relay.runtime = rt
    return rt


def poller(rt: Runtime, **options: Any) -> Poller:
    """A poller as the timer builds it, with the page size and per-run budget a test chooses."""
    return Poller(rt.settings, rt.store, rt.inbound, rt.gateway, rt.clock, **options)


def phones(n: int) -> list[str]:
    return [f"+1415555{secrets.randbelow(9000) + 1000:04d}" for _ in range(n)]


def inbound_sids(got: list[tuple[str, dict[str, Any]]]) -> Counter[str]:
    return Counter(p["MessageSid"] for topic, p in got if topic.endswith("/inbound"))


def test_poll_mode_pages_restarts_and_delivers_everything_once(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    twilio.relay.reachable = False
    rt = runtime_for(twilio, tmp_path, broker, signing_key, "poll")
    try:
        assert rt.poller.poll().ingested == 0  # the first run only sets the mark
        senders = phones(55)
        first = twilio.reply(senders[0], "message 0")
        assert first["http"] == 200 and first["status"] == 503  # the webhook failed...
        assert twilio.state.get_message(first["sid"]) is not None  # ...yet Twilio keeps the message
        expected = {first["sid"]} | {twilio.arrived(senders[i % 55], f"message {i}") for i in range(1, 550)}

        with Subscriber(broker.mqtt_port, as_session(desk(rt), rt)) as sub:
            calls_before = twilio.list_calls()
            run = poller(rt, page_size=100, max_per_run=300).poll()
            assert (run.listed, run.ingested, run.complete) == (550, 300, False)
            assert twilio.list_calls() - calls_before == 6  # 550 messages, 100 a page

            # A restart: a new poller over the same store carries on from the saved mark.
            run = poller(rt, page_size=100, max_per_run=300).poll()
            assert (run.ingested, run.complete) == (250, True)
            assert poller(rt, page_size=100).poll().ingested == 0

            got = inbound_sids(sub.drain(quiet=1.5))
        assert set(got) == expected
        assert max(got.values()) == 1
        assert all(rt.store.get_message(sid) is not None for sid in expected)
    finally:
        rt.close()


def test_overlap_catches_late_listings_at_and_before_the_mark(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    twilio.relay.reachable = False
    rt = runtime_for(twilio, tmp_path, broker, signing_key, "poll")
    try:
        rt.poller.poll()
        phone = phones(1)[0]
        twilio.reply(phone, "first")
        mark = rt.poller.poll().mark
        assert mark == rt.poller.mark()

        same_second = twilio.arrived(phone, "sent in the mark's own second, listed late", mark)
        earlier = twilio.arrived(phone, "sent before the mark, listed late", mark - timedelta(seconds=90))
        run = rt.poller.poll()
        assert run.ingested == 2
        assert rt.store.get_message(same_second) is not None
        assert rt.store.get_message(earlier) is not None
        assert rt.poller.mark() == mark  # nothing newer arrived, so the mark stays

        outside = twilio.arrived(phone, "older than the overlap window", mark - timedelta(minutes=3))
        assert rt.poller.poll().ingested == 0
        assert rt.store.get_message(outside) is None
    finally:
        rt.close()


def test_both_mode_sweep_recovers_what_the_webhook_missed(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    rt = runtime_for(twilio, tmp_path, broker, signing_key, "both")
    sub = Subscriber(broker.mqtt_port, as_session(desk(rt), rt))
    sub.start()
    try:
        rt.poller.poll()
        pushed = [twilio.reply(p, "via the webhook")["sid"] for p in phones(5)]
        assert set(inbound_sids(sub.drain(quiet=1.0))) == set(pushed)

        broker.stop()
        twilio.relay.reachable = False
        missed = []
        for p in phones(20):
            answer = twilio.reply(p, "while the relay was down")
            assert answer["status"] == 503
            missed.append(answer["sid"])
        assert not any(rt.store.get_message(sid) for sid in missed)

        broker.start()
        twilio.relay.reachable = True
        sub.stop()
        sub = Subscriber(broker.mqtt_port, as_session(desk(rt), rt))
        sub.start()
        assert rt.publisher.wait_connected(30)
        probe = twilio.reply(phones(1)[0], "are you back?")["sid"]
        sub.wait_for(lambda topic, p: p.get("MessageSid") == probe, timeout=30)

        run = rt.poller.poll()
        assert run.ingested == 20
        assert run.listed == 26
        got = inbound_sids(sub.drain(quiet=1.5))
        assert got == Counter(missed)  # each missed one once; pushed ones and the probe not again
        assert rt.poller.poll().ingested == 0
    finally:
        sub.stop()
        rt.close()


def test_poll_mode_ingests_an_mms_and_the_texts_after_it(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    """The poller lists each new MMS's Media and stores its URLs; the bytes come through Twilio's CDN redirect."""
    twilio.relay.reachable = False
    rt = runtime_for(twilio, tmp_path, broker, signing_key, "poll")
    try:
        rt.poller.poll()
        phone = phones(1)[0]
        mms = httpx.post(f"{twilio.url}/phones/{phone}/reply", json={"body": "my rash", "image": True}, timeout=15)
        sid = mms.json()["sid"]
        assert sid.startswith("MM")
        stop = twilio.reply(phone, "STOP")["sid"]

        run = rt.poller.poll()
        assert (run.ingested, run.deferred, run.complete) == (2, 0, True)
        stored = rt.store.get_message(sid)
        assert stored is not None and stored.payload["NumMedia"] == "1"
        assert stored.payload["MediaContentType0"] == "image/png"
        assert rt.store.get_message(stop) is not None
        media = rt.gateway.fetch_media(str(stored.payload["MediaUrl0"]))
        assert (media.content_type, media.content[:8]) == ("image/png", b"\x89PNG\r\n\x1a\n")
    finally:
        rt.close()


def test_a_media_list_that_keeps_failing_defers_then_stores_the_mms_as_unavailable(
    twilio: Twilio, tmp_path: Path, broker: BrokerProcess, signing_key: str
) -> None:
    """Bounded retries: the texts behind the MMS are stored at once, the MMS after three failed listings, and its
    attachment is listed again when someone opens it."""
    twilio.relay.reachable = False
    rt = runtime_for(twilio, tmp_path, broker, signing_key, "poll")
    try:
        rt.poller.poll()
        phone, other = phones(2)
        sid = httpx.post(f"{twilio.url}/phones/{phone}/reply", json={"image": True}, timeout=15).json()["sid"]
        later = twilio.reply(other, "a text from another number, after the MMS")["sid"]
        fault = {"path": "/Media.json", "status": 503, "times": 3}
        assert httpx.post(f"{twilio.url}/faults", json=fault, timeout=5).status_code == 204

        first = rt.poller.poll()
        assert (first.ingested, first.deferred) == (1, 1)
        assert rt.store.get_message(later) is not None and rt.store.get_message(sid) is None
        held = twilio.state.get_message(sid)
        assert held is not None and held.date_sent is not None and first.mark <= held.date_sent
        assert (rt.poller.poll().deferred, rt.store.get_message(sid)) == (1, None)

        third = rt.poller.poll()
        assert (third.ingested, third.deferred) == (1, 0)
        stored = rt.store.get_message(sid)
        assert stored is not None and stored.payload["MediaUnavailable"] == "true"
        assert str(stored.payload["MediaUrl0"]).endswith(f"/Messages/{sid}/Media.json#0")
        assert rt.poller.poll().ingested == 0

        media = rt.gateway.fetch_media(str(stored.payload["MediaUrl0"]))  # the fault is spent: listed now
        assert media.content.startswith(b"\x89PNG")
    finally:
        rt.close()
