"""Scenario 8: a morning's reminder batch, as the clinic's desks live it.

One import of `reminders` rows across three desks goes out at `SEND_RATE_PER_SECOND`; the sandbox calls back
every status of every text; one patient in ten answers C as soon as the text reaches the phone; 20 staff are
subscribed across the three desks. Reported: the batch's time against the pacing floor (rows ÷ rate), the staff's
live-event latency for the answers, the status callbacks' time (from the sandbox's own log), and whether every
reminder ended in exactly the state it should, each text sent once.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.mqttc import Subscriber, clock, desk_login
from bench.procs import Broker, Devhost, start_devhost
from bench.stats import Summary

DESKS = ("reception", "billing", "pharmacy")
STAFF = 20
REPLY_EVERY = 10  # one patient in ten answers
TEMPLATE = "Hi {name}, this is {clinic}: your appointment is on {date} at {time}. Reply C to confirm."


@dataclass
class BatchResult:
    reminders: int
    rate: float
    seconds: float = 0.0  # import accepted until the last text was sent
    floor_seconds: float = 0.0  # reminders ÷ rate: the pace Twilio's limits allow
    live: Summary | None = None  # an answer's webhook until each staff of its desk has the event, ms
    callbacks: Summary | None = None  # the relay's answer time to the sandbox's status callbacks, ms
    callback_errors: int = 0
    states: dict[str, int] = field(default_factory=dict)  # state -> reminders on the boards
    texts_sent: int = 0  # Twilio message creates the sandbox received
    wrong_states: int = 0  # an answered reminder not confirmed, or an unanswered one not sent
    notes: list[str] = field(default_factory=list)


def run_batch(workdir: Path, broker: Broker, *, reminders: int, rate: float) -> BatchResult:
    result = BatchResult(reminders, rate, floor_seconds=reminders / rate)
    dev = start_devhost(
        workdir,
        broker,
        "devhost-batch",
        RELAY_DESKS="Reception=R,Billing=B,Pharmacy=P",
        SEND_RATE_PER_SECOND=f"{rate:g}",
        SCHEDULE_MIN_LEAD_SECONDS="0",
        SCHEDULE_POLL_SECONDS="1",
        CLINIC_NAME="Lakeside Clinic",
    )
    try:
        _run(result, dev, broker)
    finally:
        dev.stop()
    return result


def _rows(n: int) -> tuple[bytes, list[tuple[str, str]]]:
    day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "name", "date", "time", "desk"])
    rows = []
    for i in range(n):
        phone, desk = f"+1415558{1000 + i:04d}", DESKS[i % len(DESKS)]  # clear of the sandbox's failing 0198/0199
        writer.writerow([phone, f"Patient {i}", day, f"{8 + i % 10:02d}:{(i * 7) % 60:02d}", desk])
        rows.append((phone, desk))
    return out.getvalue().encode(), rows


def _run(result: BatchResult, dev: Devhost, broker: Broker) -> None:
    sandbox = f"{dev.base_url}/sandbox"
    http = httpx.Client(base_url=dev.base_url, timeout=30)
    http.delete(f"{sandbox}/calls")
    sessions = {desk: dev.session(desk) for desk in DESKS}
    arrivals: dict[str, list[float]] = {}  # MessageSid -> arrival per staff
    lock = threading.Lock()

    def arrived(sid: str, at: float) -> None:
        with lock:
            arrivals.setdefault(sid, []).append(at)

    staff = []
    for i in range(STAFF):
        desk = DESKS[i % len(DESKS)]
        login = desk_login(sessions[desk]) if i < len(DESKS) else desk_login(dev.session(desk))
        sub = Subscriber(broker.mqtt_port, transport="tcp", topics=[f"sms/{desk}/inbound"], on_arrival=arrived, **login)
        sub.start()
        staff.append((desk, sub))
    file, rows = _rows(result.reminders)
    sent_at_local = datetime.now(UTC).strftime("%H:%M")  # already past by the time it is read: goes at once
    answered: dict[str, tuple[str, float]] = {}  # phone -> (MessageSid of the answer, when it was posted)
    stop = threading.Event()
    try:
        begin = time.monotonic()
        imported = http.post(
            "/api/reminders/import",
            headers={"Authorization": f"Bearer {sessions['reception']['token']}"},
            files={"file": ("tomorrow.csv", file, "text/csv")},
            data={"template": TEMPLATE, "sendDaysBefore": "1", "sendTime": sent_at_local},
        )
        if imported.status_code != 202:
            raise RuntimeError(f"import answered {imported.status_code}: {imported.text[:300]}")
        body = imported.json()
        if body["scheduled"] != result.reminders:
            raise RuntimeError(f"import scheduled {body['scheduled']} of {result.reminders}: {body['rows'][:3]}")
        answerer = threading.Thread(
            target=_answer, args=(sandbox, rows[::REPLY_EVERY], answered, stop), name="answers", daemon=True
        )
        answerer.start()
        batch = body["batch"]
        token = sessions["reception"]["token"]
        deadline = begin + result.floor_seconds * 3 + 120
        while time.monotonic() < deadline:
            state = http.get(f"/api/reminders/batches/{batch}", headers={"Authorization": f"Bearer {token}"}).json()
            if state.get("done"):
                break
            time.sleep(0.2)
        else:
            result.notes.append(f"the batch was not done after {deadline - begin:.0f} s: {state}")
        result.seconds = time.monotonic() - begin
        answerer.join(60)
        time.sleep(3)  # the last answers' events and callbacks
    finally:
        stop.set()
        for _, sub in staff:
            sub.stop()
    per_desk = {d: sum(1 for desk, _ in staff if desk == d) for d in DESKS}
    live = []
    for phone, (sid, posted) in answered.items():
        desk = next(d for p, d in rows if p == phone)
        got = arrivals.get(sid, [])
        live += [at - posted for at in got]
        if len(got) < per_desk[desk]:
            result.notes.append(f"the answer from {phone} reached {len(got)} of {per_desk[desk]} staff")
    result.live = Summary.of(live, sum(per_desk[next(d for p, d in rows if p == ph)] for ph in answered) - len(live))
    callbacks = httpx.get(f"{sandbox}/callbacks", timeout=30).json()
    result.callbacks = Summary.of([c["seconds"] for c in callbacks])
    result.callback_errors = sum(1 for c in callbacks if not 200 <= c["answered"] < 300)
    calls = httpx.get(f"{sandbox}/calls", timeout=30).json()
    result.texts_sent = sum(1 for c in calls if c["method"] == "POST" and c["path"].endswith("/Messages.json"))
    _check_states(result, http, sessions, rows, answered)
    http.close()


def _answer(
    sandbox: str, rows: list[tuple[str, str]], answered: dict[str, tuple[str, float]], stop: threading.Event
) -> None:
    """Each chosen patient answers C as soon as the reminder is on the phone."""
    waiting = dict(rows)
    with httpx.Client(timeout=30) as http:
        while waiting and not stop.is_set():
            for phone in list(waiting):
                if http.get(f"{sandbox}/phones/{phone}/messages").json():
                    posted = clock()
                    reply = http.post(f"{sandbox}/phones/{phone}/reply", json={"body": "C"}).json()
                    answered[phone] = (str(reply.get("sid")), posted)
                    del waiting[phone]
            time.sleep(0.2)


def _check_states(
    result: BatchResult,
    http: httpx.Client,
    sessions: dict[str, dict[str, Any]],
    rows: list[tuple[str, str]],
    answered: dict[str, tuple[str, float]],
) -> None:
    day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    seen: dict[str, str] = {}
    for desk in DESKS:
        board = http.get(
            "/api/reminders", params={"date": day}, headers={"Authorization": f"Bearer {sessions[desk]['token']}"}
        ).json()
        for row in board["reminders"]:
            seen[row["phone"]] = row["state"]
            result.states[row["state"]] = result.states.get(row["state"], 0) + 1
    for phone, _ in rows:
        want = "confirmed" if phone in answered else "sent"
        if seen.get(phone) != want:
            result.wrong_states += 1
