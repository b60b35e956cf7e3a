"""Scenario 7: the Table Storage path, on Azurite behind a proxy that counts every round trip.

Each Table call is a network round trip and, on Azure, a billed transaction, so the count per user action is the
figure that carries from this machine to production. The proxy reads each HTTP request's line and headers (the
Azure SDK sends every body with a Content-Length), records the method and table, and pipes the bytes through.

Requests are made one at a time with a pause after each: a round trip is booked to the request it follows, from
the request's start to the next one's, so what the relay writes after answering (the outbox's published marks,
carried by the next append or gathered for up to two 5 s windows) counts too; the sandbox's status callbacks are
held back. The timers' queries run whatever the traffic: they are told apart by their filters, counted as a rate
(at rest before the run, and during it) and not booked to the request they happened to follow. A batch
transaction is named by the table it writes.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.forms import SidSource, inbound_params, signed
from bench.mqttc import SubscriberProcess, clock, desk_login
from bench.procs import ACCOUNT_SID, Broker, Devhost, start_devhost
from bench.stats import Summary
from tests.support.azurite import azurite_process, connection_string
from tests.support.tableproxy import CountingProxy, Trip

ACTIONS = ("send", "inbound", "status")
PAUSE_SECONDS = 0.35  # after each request: the sandbox's callbacks for a send come within ~0.15 s
IDLE_SECONDS = 16.0  # the outbox timer scans every 15 s, the scheduler at its poll interval
SETTLE_SECONDS = 11.0  # after the last request: the outbox marks what no append carried within two 5 s windows
# The timers' own queries (relay/store): the outbox's scan for unpublished events, the scheduler's due query and
# the reminders' once-a-minute sweep. No request makes them.
TIMER_FILTERS = ("published eq false", "send_at le", "state eq 'sent' and sent_at lt")


def by_timer(trip: Trip) -> bool:
    return trip.method == "GET" and any(f in trip.query for f in TIMER_FILTERS)


@dataclass
class TablesResult:
    messages: int
    trips: dict[str, Counter[str]] = field(default_factory=dict)  # action -> "METHOD table" -> count
    before_answer: dict[str, int] = field(default_factory=dict)  # action -> round trips before the HTTP answer
    timers_during: dict[str, int] = field(default_factory=dict)  # action -> timers' round trips while it ran
    latency: dict[str, Summary] = field(default_factory=dict)  # action -> request time, ms
    idle_per_second: float = 0.0
    idle_unexplained: int = 0  # round trips at rest that no timer filter matched: each would be a request's
    run_seconds: float = 0.0  # from the first request to the end
    routed_arrival: Summary | None = None  # webhook to the desk's subscriber, ms
    notes: list[str] = field(default_factory=list)

    @property
    def timers(self) -> int:
        """The timers' round trips from the first request to the end."""
        return sum(self.timers_during.values())

    def requests(self, action: str) -> int:
        """Two status callbacks per text, one of each other request per message."""
        return self.messages * (2 if action == "status" else 1)

    def per_action(self, action: str) -> float:
        """What each request costs, the timers' queries apart."""
        return sum(self.trips.get(action, Counter()).values()) / self.requests(action)

    def booked(self, action: str) -> float:
        """As it was counted before the timers were told apart: each booked to the request it followed."""
        return self.per_action(action) + self.timers_during.get(action, 0) / self.requests(action)

    def per_answer(self, action: str) -> float:
        return self.before_answer.get(action, 0) / self.messages


def run_tables(workdir: Path, broker: Broker, *, messages: int) -> TablesResult:
    result = TablesResult(messages)
    with azurite_process() as (direct, _):
        endpoint = re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)/", direct)
        assert endpoint is not None
        proxy = CountingProxy(int(endpoint.group(1)))
        proxy.start()
        try:
            # The sandbox's own status callbacks come long after the run: the bench posts them, one at a time.
            dev = start_devhost(
                workdir, broker, "devhost-tables", store=connection_string(proxy.port), SANDBOX_STATUS_DELAY_MS="600000"
            )
            try:
                _measure(result, proxy, dev, broker, messages)
            finally:
                dev.stop()
        finally:
            proxy.stop()
    return result


def _measure(result: TablesResult, proxy: CountingProxy, dev: Devhost, broker: Broker, n: int) -> None:
    desk = dev.session("reception")
    token = str(desk["token"])
    http = httpx.Client(base_url=dev.base_url, timeout=10)
    subscribers = [
        SubscriberProcess(broker.ws_port, transport="websockets", topics=["sms/reception/#"], **desk_login(s))
        for s in (desk, dev.session("reception"), dev.session("reception"))
    ]
    for sub in subscribers:
        sub.start()
    sids = SidSource()
    timings: dict[str, list[float]] = {a: [] for a in ACTIONS}
    arrivals: list[float] = []
    windows: dict[str, list[tuple[float, float]]] = {a: [] for a in ACTIONS}
    sent: list[str] = []

    def timed(action: str, call: object) -> httpx.Response:
        assert callable(call)
        start = clock()
        response: httpx.Response = call()
        end = clock()
        windows[action].append((start, end))
        timings[action].append(end - start)
        time.sleep(PAUSE_SECONDS)
        return response

    try:
        time.sleep(1.0)
        idle_start = clock()
        time.sleep(IDLE_SECONDS)
        idle = proxy.between(idle_start, clock())
        result.idle_per_second = len(idle) / (clock() - idle_start)
        result.idle_unexplained = sum(1 for t in idle if not by_timer(t))
        for i in range(n):
            to = inbound_params("SM" + "0" * 32, i)["From"]
            body = {"to": to, "body": "See you at 3pm."}
            r = timed("send", lambda b=body: http.post("/api/send_sms", json=b, headers=_bearer(token)))
            if r.status_code != 201:
                raise RuntimeError(f"send_sms answered {r.status_code}: {r.text[:200]}")
            sent.append(r.json()["sid"])
        url = f"{dev.base_url}/api/receive_sms"
        for i in range(n):
            sid = sids()
            form, signature = signed(url, inbound_params(sid, i))
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
            start = clock()
            r = timed("inbound", lambda f=form, h=headers: http.post("/api/receive_sms", content=f, headers=h))
            if r.status_code != 200:
                result.notes.append(f"receive_sms answered {r.status_code}: {r.text[:120]}")  # Twilio would retry it
            arrived = subscribers[0].wait(sid, 5.0)
            if arrived is None:
                result.notes.append(f"{sid} never reached the desk")
            else:
                arrivals.append(arrived - start)
        status_url = f"{dev.base_url}/api/sms_status"
        for sid in sent:
            for status in ("sent", "delivered"):  # what Twilio calls back for each text
                params = {"MessageSid": sid, "MessageStatus": status, "SmsStatus": status, "AccountSid": ACCOUNT_SID}
                form, signature = signed(status_url, params)
                headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
                r = timed("status", lambda f=form, h=headers: http.post("/api/sms_status", content=f, headers=h))
                if r.status_code >= 400:
                    result.notes.append(f"sms_status answered {r.status_code}: {r.text[:120]}")  # Twilio would retry it
    finally:
        for sub in subscribers:
            sub.stop()
        http.close()
    time.sleep(SETTLE_SECONDS)
    starts = sorted((start, action) for action in ACTIONS for start, _ in windows[action])
    end = clock()
    for i, (start, action) in enumerate(starts):
        until = starts[i + 1][0] if i + 1 < len(starts) else end
        trips = [t for t in proxy.between(start, until) if t.at < until]
        counted = result.trips.setdefault(action, Counter())
        counted.update(f"{t.method} {t.table}" for t in trips if not by_timer(t))
        result.timers_during[action] = result.timers_during.get(action, 0) + sum(1 for t in trips if by_timer(t))
    result.run_seconds = end - starts[0][0]
    for action in ACTIONS:
        result.trips.setdefault(action, Counter())
        result.before_answer[action] = sum(
            1 for begun, answered in windows[action] for t in proxy.between(begun, answered) if not by_timer(t)
        )
        result.latency[action] = Summary.of(timings[action])
    result.routed_arrival = Summary.of(arrivals, n - len(arrivals))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
