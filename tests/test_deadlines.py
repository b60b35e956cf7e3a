"""Webhook answers stay within WEBHOOK_DEADLINE_SECONDS while the broker or the store is stopped with SIGSTOP
(the TCP connections stay open, so nothing fails fast), at a steady webhook rate, and nothing acknowledged is lost."""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from relay.deadlines import WebhookDeadline, broker_wait
from relay.errors import DeadlineExceeded
from tests.support.azurite import azurite_process
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import inbound_params

# With the PUBACK wait at its old default, 5 s: what bounds a webhook's wait must be its deadline.
DEVHOST_ENV = {"MQTT_PUBLISH_TIMEOUT_SECONDS": "5"}

pytestmark = pytest.mark.slow

PATIENT = "+14155550161"
RATE = 40  # webhooks per second
LOAD_SECONDS = 7.0
STALL_AT, STALL_SECONDS = 1.5, 5.0
BROKER_BOUND = 8.0 / 4  # the longest PUBACK wait inside a webhook: a quarter of WEBHOOK_DEADLINE_SECONDS


@dataclass
class Answer:
    params: dict[str, str]
    status: int
    code: str
    seconds: float


class Twilio:
    """Posts signed webhooks as Twilio does, timing each answer the way Twilio's 15 s limit counts it."""

    def __init__(self, host: DevhostProcess) -> None:
        self.host = host
        self.url = f"{host.base_url}/api/receive_sms"
        self.validator = RequestValidator(host.auth_token)
        self.client = httpx.Client(timeout=20, limits=httpx.Limits(max_connections=200))

    def post(self, params: dict[str, str]) -> Answer:
        signature = self.validator.compute_signature(self.url, params)
        started = time.monotonic()
        try:
            r = self.client.post(self.url, data=params, headers={"X-Twilio-Signature": signature})
            code = r.json()["error"]["code"] if r.status_code != 200 else ""
            return Answer(params, r.status_code, code, time.monotonic() - started)
        except httpx.HTTPError as exc:
            return Answer(params, 0, type(exc).__name__, time.monotonic() - started)

    def steady(self, phone: str, seconds: float, rate: int) -> list[Answer]:
        """`rate` new messages a second for `seconds`, each sent on time however slowly the others answer."""
        with ThreadPoolExecutor(max_workers=200) as pool:
            started, futures = time.monotonic(), []
            for i in range(int(seconds * rate)):
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                params = inbound_params(phone, f"load {i}", AccountSid=self.host.account_sid)
                futures.append(pool.submit(self.post, params))
            return [f.result() for f in futures]

    def until_acknowledged(self, answers: list[Answer], tries: int = 20) -> list[Answer]:
        """Twilio's retries: every webhook not answered 200 is posted again until it is."""
        pending = [a for a in answers if a.status != 200]
        for _ in range(tries):
            pending = [again for a in pending if (again := self.post(a.params)).status != 200]
            if not pending:
                break
            time.sleep(0.5)
        return pending


@contextmanager
def stalled(pid: int, at: float, seconds: float) -> Iterator[None]:
    """SIGSTOP `pid` `at` seconds into the block for `seconds`; SIGCONT for sure, whatever happens."""

    def stall() -> None:
        time.sleep(at)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def route_to_desk(host: DevhostProcess, phone: str) -> dict[str, Any]:
    desk = host.session()
    r = httpx.post(
        f"{host.base_url}/api/send_sms",
        json={"to": phone, "body": "your appointment"},
        headers={"Authorization": f"Bearer {desk['token']}"},
        timeout=10,
    )
    assert r.status_code == 201
    return desk


def stored_sids(host: DevhostProcess, desk: dict[str, Any]) -> set[str]:
    sids, cursor = set(), ""
    while True:
        page = httpx.get(
            f"{host.base_url}/api/messages",
            params={"after": cursor} if cursor else {},
            headers={"Authorization": f"Bearer {desk['token']}"},
            timeout=15,
        ).json()
        sids |= {e["payload"]["MessageSid"] for e in page["events"] if e["kind"] == "inbound"}
        if len(page["events"]) < 500:
            return sids
        cursor = page["cursor"]


def percentiles(answers: list[Answer]) -> tuple[float, float]:
    times = sorted(a.seconds for a in answers)
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def test_work_past_half_the_deadline_answers_503_at_once_until_work_finishes_in_time_again() -> None:
    deadline = WebhookDeadline(2.0, threads=4)
    stuck = threading.Event()
    try:
        assert deadline.run(lambda: broker_wait(10.0)) <= 0.5  # a quarter of the deadline inside the work
        assert broker_wait(10.0) == 10.0  # and untouched outside it
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            deadline.run(stuck.wait)
        assert 0.95 < time.monotonic() - started < 1.8  # the stall showed at half the deadline, not at its end
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            deadline.run(lambda: "not even tried")
        assert time.monotonic() - started < 0.05
        stuck.set()  # the store answers again: the next probe finishes in time and closes the breaker
        time.sleep(1.05)
        assert deadline.run(lambda: "probe") == "probe"
        assert deadline.run(lambda: "normal") == "normal"
    finally:
        stuck.set()
        deadline.close()


def test_a_stalled_broker_costs_each_webhook_a_short_bound_and_the_outbox_delivers_every_message(
    devhost: DevhostProcess, broker: BrokerProcess
) -> None:
    desk = route_to_desk(devhost, PATIENT)
    twilio = Twilio(devhost)
    with Subscriber(broker.mqtt_port, desk) as sub:
        with stalled(broker.pid, STALL_AT, STALL_SECONDS):
            answers = twilio.steady(PATIENT, LOAD_SECONDS, RATE)
        sent = {a.params["MessageSid"] for a in answers}
        delivered: set[str] = set()
        deadline = time.monotonic() + 30
        while not sent <= delivered and time.monotonic() < deadline:
            delivered |= {p.get("MessageSid", "") for _, p in sub.drain(0.5)}
    p50, p99 = percentiles(answers)
    print(f"broker stalled {STALL_SECONDS:g} s at {RATE}/s: webhook p50 {p50:.3f} s, p99 {p99:.3f} s")
    assert [a for a in answers if a.status != 200] == []
    assert p99 < BROKER_BOUND + 1.0  # on main: the whole 5 s PUBACK wait, and the webhooks queued behind it
    assert max(a.seconds for a in answers) < 8.0
    assert sent - delivered == set()
    assert sent - stored_sids(devhost, desk) == set()


def test_a_stalled_table_store_answers_503_within_the_deadline_and_loses_no_acknowledged_message(
    broker: BrokerProcess, signing_key: str, tmp_path: Path
) -> None:
    deadline = 3.0
    with azurite_process() as (connection, azurite):
        env = {"RELAY_STORE": connection, "WEBHOOK_DEADLINE_SECONDS": str(deadline)}
        code = secrets.token_urlsafe(12)
        with DevhostProcess(broker, tmp_path, access_code=code, signing_key=signing_key, extra_env=env) as host:
            desk = route_to_desk(host, PATIENT)
            twilio = Twilio(host)
            with stalled(azurite.pid, STALL_AT, STALL_SECONDS):
                answers = twilio.steady(PATIENT, LOAD_SECONDS, RATE // 2)
            p50, p99 = percentiles(answers)
            refused = [a for a in answers if a.status != 200]
            print(
                f"Azurite stalled {STALL_SECONDS:g} s at {RATE // 2}/s: webhook p50 {p50:.3f} s, p99 {p99:.3f} s, "
                f"{len(refused)} of {len(answers)} answered 503"
            )
            acknowledged = {a.params["MessageSid"] for a in answers if a.status == 200}
            assert {a.status for a in refused} == {503}
            assert {a.code for a in refused} - {"store_unavailable"} == {"deadline_exceeded"}
            assert max(a.seconds for a in answers) < deadline + 1.0  # the HTTP round trip on a loaded machine
            assert twilio.until_acknowledged(answers) == []
            assert acknowledged - stored_sids(host, desk) == set()
            assert {a.params["MessageSid"] for a in answers} - stored_sids(host, desk) == set()
