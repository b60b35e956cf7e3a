"""Bulk reminders from a list, through the real host and sandbox: the dry run answers every row, the real run
schedules exactly the valid ones and the phones get their own names and times, a re-import adds nothing; the
board, its export and Remind again; and a batch's pace measured at the sandbox."""

from __future__ import annotations

import csv
import io
import itertools
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.bulk import ImportForm
from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from relay.store.tables import TableStore
from relay.templates import day_text
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber
from tests.support.runtime import clock, desk, inbound_params, make_runtime

FAST = {
    "SCHEDULE_MIN_LEAD_SECONDS": "0",
    "SCHEDULE_POLL_SECONDS": "1",
    "SEND_RATE_PER_SECOND": "200",
    "CLINIC_NAME": "Lakeside Clinic",
}
TEMPLATE = "Hi {name}, {clinic} reminds you of {date} at {time} ({desk}). Reply C to confirm."
HOSTILE = '=HYPERLINK("http://evil","x")'
ERRORS = {  # row number: (what the cells are, the code)
    5: "invalid_number",
    17: "country_not_allowed",
    29: "number_type_not_allowed",
    41: "opted_out",
    53: "duplicate_row",
    65: "appointment_in_past",
    77: "unknown_desk",
    89: "missing_field",
}


def numbers(n: int) -> list[str]:
    base = secrets.randbelow(8000) + 1000
    return [f"+1415556{base + i:04d}" for i in range(n)]


def call(host: DevhostProcess, session: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {session['token']}", **kw.pop("headers", {})}
    return httpx.request(method, f"{host.base_url}/api/{path}", headers=headers, timeout=60, **kw)


def upload(
    host: DevhostProcess, session: dict[str, Any], data: bytes, *, dry_run: bool = False, **fields: str
) -> httpx.Response:
    return send_form(host, session, data, dry_run, fields)


def send_form(
    host: DevhostProcess, session: dict[str, Any], data: bytes, dry_run: bool, fields: dict[str, str]
) -> httpx.Response:
    form = {"sendDaysBefore": "1", "sendTime": "00:00", **fields}
    if "templateId" not in form:
        form.setdefault("template", TEMPLATE)
    params = {"dryRun": "true"} if dry_run else {}
    files = {"file": ("tomorrow.csv", data, "text/csv")}
    return call(host, session, "POST", "reminders/import", params=params, files=files, data=form)


def twilio_sends(sandbox_url: str) -> int:
    calls = httpx.get(f"{sandbox_url}/calls", timeout=10).json()
    return sum(1 for c in calls if c["method"] == "POST" and c["path"].endswith("/Messages.json"))


def received(sandbox_url: str, phone: str) -> list[str]:
    return [m["body"] for m in httpx.get(f"{sandbox_url}/phones/{phone}/messages", timeout=10).json()]


def the_list(phones: list[str], day: date, opted_out: str) -> tuple[bytes, dict[int, dict[str, str]]]:
    """200 appointments tomorrow, with one row of each kind of error (ERRORS), one for another desk and one
    hostile name; the valid rows by row number."""
    yesterday = (day - timedelta(days=2)).isoformat()
    rows: list[dict[str, str]] = []
    for i in range(200):
        n = i + 1
        row = {"phone": phones[i], "name": f"Patient {n} Núñez", "date": day.isoformat()}
        row |= {"time": f"{8 + i // 60:02d}:{i % 60:02d}", "desk": "", "note": ""}
        rows.append(row)
    rows[4]["phone"] = "12ab"
    rows[16]["phone"] = "+4930123456"
    rows[28]["phone"] = "+19005550123"
    rows[40]["phone"] = opted_out
    rows[52] = {**rows[51], "name": "Same appointment"}
    rows[64]["date"] = yesterday
    rows[76]["desk"] = "Pharmacy"
    rows[88]["name"] = ""
    rows[100]["desk"] = "Billing"
    rows[112]["name"] = HOSTILE
    out = io.StringIO()
    writer = csv.DictWriter(out, ["phone", "name", "date", "time", "desk", "note"], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    valid = {n: r for n, r in enumerate(rows, start=1) if n not in ERRORS}
    return ("\ufeff" + out.getvalue()).encode(), valid


def expected_text(row: dict[str, str], day: date) -> str:
    desk_name = "Billing" if row["desk"] == "Billing" else "Reception"
    return (
        f"Hi {row['name']}, Lakeside Clinic reminds you of {day_text(day)} at {row['time']} ({desk_name}). "
        "Reply C to confirm."
    )


@pytest.fixture(scope="module")
def host(broker: BrokerProcess, signing_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    data_dir = tmp_path_factory.mktemp("bulk")
    code = secrets.token_urlsafe(12)
    with DevhostProcess(broker, data_dir, access_code=code, signing_key=signing_key, extra_env=FAST) as process:
        yield process


def test_a_200_row_list_dry_run_then_scheduled_once_and_the_board(host: DevhostProcess) -> None:
    maria, ken = host.session("reception", "Maria"), host.session("billing", "Ken")
    sandbox = host.sandbox_url
    day = datetime.now(UTC).date() + timedelta(days=1)
    phones = numbers(200)
    opted_out = phones[40]
    r = httpx.post(f"{sandbox}/phones/{opted_out}/reply", json={"body": "STOP"}, timeout=10)
    assert r.status_code < 300, r.text
    kept = phones[10]  # a name staff typed is never overwritten by the spreadsheet's
    assert call(host, maria, "PUT", f"contacts/{kept.replace('+', '%2B')}", json={"name": "Kept Name"}).is_success
    data, valid = the_list(phones, day, opted_out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the STOP reaches the relay through the signed webhook
        probe = upload(host, maria, data, dry_run=True).json()
        if probe["rows"][40]["status"] == "invalid":
            break
        time.sleep(0.2)

    # The dry run: every row answered with its number, nothing sent, nothing stored.
    before = twilio_sends(sandbox)
    r = upload(host, maria, data, dry_run=True)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert (preview["dryRun"], preview["batch"], preview["valid"], preview["invalid"]) == (True, None, 192, 8)
    assert [row["row"] for row in preview["rows"]] == list(range(1, 201))
    errors = {row["row"]: row["error"]["code"] for row in preview["rows"] if row["status"] == "invalid"}
    assert errors == ERRORS
    assert all(row["error"]["message"] for row in preview["rows"] if row["status"] == "invalid")
    for row in preview["rows"]:
        if row["status"] == "valid":
            assert row["text"] == expected_text(valid[row["row"]], day), row
            # ú is not in GSM-7, so about 95 characters take two UCS-2 parts; the hostile name is plain GSM-7.
            assert (row["segments"], row["encoding"]) == ((1, "GSM-7") if row["row"] == 113 else (2, "UCS-2"))
            assert datetime.fromisoformat(row["sendAt"]) <= datetime.now(UTC) + timedelta(seconds=5)
    assert preview["rows"][100]["desk"] == "billing"
    time.sleep(1.5)
    assert twilio_sends(sandbox) == before
    assert call(host, maria, "GET", "reminders", params={"date": day.isoformat()}).json()["total"] == 0

    # Saved as a template, then the real run with it: exactly the valid rows, each phone its own text, once.
    r = call(host, maria, "PUT", "templates/tomorrow", json={"name": "Tomorrow", "body": TEMPLATE})
    assert r.status_code == 201, r.text
    with Subscriber(host.broker.mqtt_port, maria) as tab:
        r = upload(host, maria, data, templateId="tomorrow")
        assert r.status_code == 202, r.text
        done = r.json()
        assert (done["scheduled"], done["invalid"], done["existing"]) == (192, 8, 0)
        batch = done["batch"]
        assert batch
        _, progress = tab.wait_for(lambda t, p: t == "sms/reception/batch" and p["batch"] == batch and p["done"], 60)
    assert (progress["total"], progress["sent"], progress["failed"], progress["scheduled"]) == (192, 192, 0, 0)
    got = call(host, maria, "GET", f"reminders/batches/{batch}").json()
    assert {k: got[k] for k in ("total", "sent", "done")} == {"total": 192, "sent": 192, "done": True}
    assert call(host, ken, "GET", f"reminders/batches/{batch}").status_code == 404
    assert twilio_sends(sandbox) - before == 192
    for n, row in valid.items():
        assert received(sandbox, row["phone"]) == [expected_text(row, day)], n
    assert not any("Reply C" in body for body in received(sandbox, opted_out))

    # The address book learnt the names it did not have.
    found = call(host, maria, "GET", "contacts", params={"q": "Patient 12 "}).json()["contacts"]
    assert [c["name"] for c in found if c["phone"] == phones[11]] == ["Patient 12 Núñez"]
    assert call(host, maria, "GET", "contacts", params={"q": "Kept"}).json()["contacts"][0]["phone"] == kept

    # Importing the same list again schedules nothing twice.
    again = upload(host, maria, data, templateId="tomorrow")
    assert again.status_code == 202
    assert (again.json()["scheduled"], again.json()["existing"], again.json()["batch"]) == (0, 192, None)
    time.sleep(2)
    assert twilio_sends(sandbox) - before == 192

    # The board: counts over the whole day whatever the filter; an answer and a change by hand show.
    confirmer, decliner = valid[2]["phone"], valid[3]["phone"]
    httpx.post(f"{sandbox}/phones/{confirmer}/reply", json={"body": "C"}, timeout=10)
    board = _board_until(host, maria, day, lambda b: b["counts"]["confirmed"] == 1)
    assert board["total"] == 191 and board["counts"]["sent"] == 190
    [row] = [r for r in board["reminders"] if r["phone"] == confirmer]
    assert (row["state"], row["lastReply"], row["contact"], row["time"]) == (
        "confirmed",
        "C",
        {"name": "Patient 2 Núñez"},
        "08:01",
    )
    declined = next(r for r in board["reminders"] if r["phone"] == decliner)
    r = call(host, maria, "PATCH", f"reminders/{declined['id']}", json={"state": "declined", "note": "=1+1 moved"})
    assert r.status_code == 200, r.text
    only = call(host, maria, "GET", "reminders", params={"date": day.isoformat(), "state": "declined"}).json()
    assert [r["phone"] for r in only["reminders"]] == [decliner]
    assert only["counts"] == {**{s: 0 for s in only["counts"]}, "sent": 189, "confirmed": 1, "declined": 1}
    billing = call(host, ken, "GET", "reminders", params={"date": day.isoformat()}).json()
    assert [r["phone"] for r in billing["reminders"]] == [valid[101]["phone"]]
    r = call(host, maria, "GET", "reminders", params={"date": day.isoformat(), "state": "bogus"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_state")

    # The day as CSV: formulas neutralised in names and notes, phone numbers left as they are.
    r = call(host, maria, "GET", "reminders/export", params={"date": day.isoformat()})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(table) == 191
    hostile = next(t for t in table if t["phone"] == valid[113]["phone"])
    assert hostile["name"] == "'" + HOSTILE and hostile["phone"].startswith("+1")
    moved = next(t for t in table if t["phone"] == decliner)
    assert (moved["state"], moved["note"]) == ("declined", "'=1+1 moved")


def _board_until(host: DevhostProcess, session: dict[str, Any], day: date, ready: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        board: dict[str, Any] = call(host, session, "GET", "reminders", params={"date": day.isoformat()}).json()
        if ready(board) or time.monotonic() > deadline:
            return board
        time.sleep(0.2)


def test_refusals_change_nothing(host: DevhostProcess) -> None:
    maria = host.session("reception", "Maria")
    sandbox = host.sandbox_url
    day = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()  # a day of its own on the shared host
    good = f"phone,name,date,time\r\n{numbers(1)[0]},Ana,{day},09:00\r\n".encode()
    before = twilio_sends(sandbox)
    latin1 = "phone,name,date,time\r\n+14155550101,Zoë,2030-01-01,09:00\r\n".encode("latin-1")
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (latin1, {}, 400, "invalid_csv"),
        (b"name,phone\r\n", {}, 400, "invalid_csv"),
        (b"phone,name,date,time\r\n" + b"x" * (1024 * 1024), {}, 413, "payload_too_large"),
        (good, {"template": "Hi {nom}"}, 400, "invalid_template"),
        (good, {"template": ""}, 400, "invalid_template"),
        (good, {"sendDaysBefore": "-1"}, 400, "invalid_send_days_before"),
        (good, {"sendTime": "9am"}, 400, "invalid_send_time"),
        (good, {"templateId": "nope"}, 404, "template_not_found"),
    ]
    for data, fields, status, code in cases:
        r = send_form(host, maria, data, False, fields)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (fields, r.text)
    r = call(host, maria, "POST", "reminders/import", content=good, headers={"Content-Type": "text/csv"})
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
    r = call(host, maria, "POST", "reminders/import", params={"dryRun": "maybe"}, files={"file": ("a.csv", good)})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_dry_run")
    for method, path, allow in (("GET", "reminders/import", "POST"), ("PATCH", "reminders/export", "GET")):
        r = call(host, maria, method, path, json={})
        assert (r.status_code, r.headers.get("allow")) == (405, allow), path
    r = call(host, maria, "GET", "reminders/export", params={"date": "tomorrow"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_date")
    r = call(host, maria, "POST", "reminders/remind-again", json={"date": day})
    assert (r.status_code, r.json()) == (202, {"batch": None, "count": 0})
    r = call(host, maria, "POST", "reminders/remind-again", json={"date": day, "template": "Hi {who}"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_template")
    r = call(host, maria, "POST", "reminders/remind-again", json={"date": "24/11/2026"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_date")
    r = call(host, maria, "GET", "reminders/batches/B000")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "batch_not_found")
    assert twilio_sends(sandbox) == before
    assert call(host, maria, "GET", "reminders", params={"date": day}).json()["total"] == 0


def test_templates_saved_per_desk_and_told_live(host: DevhostProcess) -> None:
    maria, ken = host.session("reception", "Maria"), host.session("billing", "Ken")
    with Subscriber(host.broker.mqtt_port, maria) as tab:
        r = call(host, maria, "PUT", "templates/recall", json={"name": " Recall ", "body": "Hi {name}, {clinic}"})
        assert r.status_code == 201, r.text
        _, seen = tab.wait_for(lambda t, p: t == "sms/reception/template" and p["id"] == "recall")
    assert seen["template"]["name"] == "Recall" and seen["by"]["name"] == "Maria"
    r = call(host, maria, "PUT", "templates/recall", json={"name": "Recall", "body": "Hello {name}"})
    assert r.status_code == 200 and r.json()["body"] == "Hello {name}"
    listed = call(host, maria, "GET", "templates").json()["templates"]
    assert [(t["id"], t["body"]) for t in listed if t["id"] == "recall"] == [("recall", "Hello {name}")]
    assert all(t["id"] != "recall" for t in call(host, ken, "GET", "templates").json()["templates"])
    for path, body, code in (
        ("templates/recall", {"name": "x", "body": "Hi {surname}"}, "invalid_template"),
        ("templates/recall", {"name": "", "body": "Hi"}, "invalid_name"),
        ("templates/a%20b", {"name": "x", "body": "Hi"}, "invalid_template_id"),
    ):
        r = call(host, maria, "PUT", path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body
    assert call(host, ken, "DELETE", "templates/recall").status_code == 404
    assert call(host, maria, "DELETE", "templates/recall").status_code == 204
    assert call(host, maria, "DELETE", "templates/recall").status_code == 404


@pytest.fixture
def paced(broker: BrokerProcess, signing_key: str, sandbox_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """An instance sending at Twilio's toll-free pace, 3 a second, with a clock the test moves."""
    env = {**FAST, "SEND_RATE_PER_SECOND": "3", "SEND_LIMIT_PER_MINUTE": "5", "REMINDER_NO_ANSWER_HOURS": "12"}
    rt = make_runtime(SqliteStore(str(tmp_path / "paced.db")), broker.mqtt_port, signing_key, sandbox_url, **env)
    yield rt
    rt.close()


def test_a_30_row_batch_at_3_a_second_takes_10_s_and_never_bursts(paced: Runtime, sandbox_url: str) -> None:
    rt = paced
    grant = desk(rt)
    day = rt.clock.now().date() + timedelta(days=1)
    phones = numbers(30)
    lines = ["phone,name,date,time", *(f"{p},P{i},{day},{9 + i // 60:02d}:{i % 60:02d}" for i, p in enumerate(phones))]
    form = ImportForm("\r\n".join(lines).encode(), "Hi {name}, {time}", None, "1", "00:00")
    answer = rt.bulk.import_csv(grant.web_app_id, grant.staff, form, dry_run=False)
    assert answer["scheduled"] == 30  # the per-minute limit (5 here) does not hold a batch back
    seen = len(httpx.get(f"{sandbox_url}/calls", timeout=10).json())
    started = time.monotonic()
    assert rt.scheduler.run() == 30
    took = time.monotonic() - started
    calls = httpx.get(f"{sandbox_url}/calls", timeout=10).json()[seen:]
    at = sorted(datetime.fromisoformat(c["at"]) for c in calls if c["method"] == "POST")
    assert len(at) == 30
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(at)]
    busiest = max(sum(1 for t in at if start <= t < start + timedelta(seconds=1)) for start in at)
    span = (at[-1] - at[0]).total_seconds()
    print(
        f"batch pacing: 30 rows at 3/s took {took:.1f} s (first to last send {span:.1f} s); gaps min "
        f"{min(gaps):.3f} s, mean {sum(gaps) / len(gaps):.3f} s, max {max(gaps):.3f} s; at most {busiest} in any second"
    )
    assert 9.0 <= took <= 13.0  # 29 gaps of 1/3 s is 9.7 s
    assert busiest <= 4 and min(gaps) >= 0.15  # a send's own jitter (HTTP to the sandbox) can put a 4th in a window
    progress = rt.batches.progress(grant.web_app_id, answer["batch"])
    assert (progress["sent"], progress["done"]) == (30, True)

    # A day later nobody answered two of them: Remind again sends to exactly those, as a new batch.
    quiet, answered = phones[0], phones[1]
    rt.inbound.ingest(inbound_params(answered, "Y"))
    clock(rt).advance(timedelta(hours=13))
    assert rt.reminders.sweep() == 29
    board = rt.board.day(grant.web_app_id, day.isoformat())
    assert (board["counts"]["no_answer"], board["counts"]["confirmed"]) == (29, 1)
    again = rt.bulk.remind_again(
        grant.web_app_id, grant.staff, {"date": day.isoformat(), "template": "{name}, {time}?"}
    )
    assert again["count"] == 29 and again["batch"] != answer["batch"]
    assert rt.board.day(grant.web_app_id, day.isoformat(), "scheduled")["total"] == 30
    assert rt.bulk.remind_again(grant.web_app_id, grant.staff, {"date": day.isoformat()})["count"] == 0
    assert rt.scheduler.run() == 29
    board = rt.board.day(grant.web_app_id, day.isoformat())
    assert (board["counts"]["sent"], board["counts"]["confirmed"], board["total"]) == (29, 1, 30)
    deadline = time.monotonic() + 10
    while len(received(sandbox_url, quiet)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert received(sandbox_url, quiet) == ["Hi P0, 09:00", "P0, 09:00?"]


@pytest.fixture
def instance(
    request: pytest.FixtureRequest, broker: BrokerProcess, signing_key: str, sandbox_url: str, tmp_path: Path
) -> Iterator[Runtime]:
    """An in-process instance on either backend, fast, with a per-minute limit of 5 and a daily cap of 15."""
    backend: Any = request.param
    if backend == "sqlite":
        store: Any = SqliteStore(str(tmp_path / "relay.db"))
    else:
        conn: str = request.getfixturevalue("azurite")
        store = TableStore(conn, table_prefix=f"t{uuid.uuid4().hex[:16]}")
    env = {**FAST, "SEND_LIMIT_PER_MINUTE": "5", "SEND_LIMIT_PER_DAY": "15"}
    rt = make_runtime(store, broker.mqtt_port, signing_key, sandbox_url, **env)
    yield rt
    rt.close()


@pytest.mark.parametrize("instance", ["sqlite", "tables"], indirect=True)
def test_two_imports_at_once_schedule_each_appointment_once_and_the_daily_cap_holds(instance: Runtime) -> None:
    rt = instance
    grant = desk(rt)
    day = rt.clock.now().date() + timedelta(days=2)
    phones = numbers(20)
    lines = ["phone,name,date,time", *(f"{p},P{i},{day},{10 + i // 60:02d}:{i % 60:02d}" for i, p in enumerate(phones))]
    form = ImportForm("\r\n".join(lines).encode(), "Hi {name}", None, "2", "00:00")
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(2, timeout=10)

    def tab() -> None:
        barrier.wait()
        answers.append(rt.bulk.import_csv(grant.web_app_id, grant.staff, form, dry_run=False))

    threads = [threading.Thread(target=tab) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(a["scheduled"] + a["existing"] for a in answers) == [20, 20]
    assert sum(a["scheduled"] for a in answers) == 20  # each appointment once, whichever import won its row
    assert rt.board.day(grant.web_app_id, day.isoformat())["counts"]["scheduled"] == 20
    again = rt.bulk.import_csv(grant.web_app_id, grant.staff, form, dry_run=True)
    assert (again["valid"], again["existing"]) == (0, 20)

    # A batch is held by the daily cap (15), not by the per-minute limit (5); the rest waits for tomorrow.
    assert rt.scheduler.run() == 15
    board = rt.board.day(grant.web_app_id, day.isoformat())
    assert (board["counts"]["sent"], board["counts"]["scheduled"]) == (15, 5)
    progress = [rt.batches.progress(grant.web_app_id, a["batch"]) for a in answers if a["batch"]]
    assert sum(p["sent"] for p in progress) == 15 and sum(p["scheduled"] for p in progress) == 5


def test_a_send_time_in_quiet_hours_goes_when_they_end(
    broker: BrokerProcess, signing_key: str, sandbox_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    quiet = f"{start:%H:%M}-{end:%H:%M}"
    store = SqliteStore(str(tmp_path / "quiet.db"))
    rt = make_runtime(store, broker.mqtt_port, signing_key, sandbox_url, **FAST, QUIET_HOURS=quiet)
    try:
        grant = desk(rt)
        day = (now + timedelta(days=3)).date()
        csv_text = f"phone,name,date,time\r\n{numbers(1)[0]},Ana,{day},12:00\r\n".encode()
        past = ImportForm(csv_text, "Hi {name}", None, "3", "00:00")  # already past: the next allowed moment
        [row] = rt.bulk.import_csv(grant.web_app_id, grant.staff, past, dry_run=True)["rows"]
        assert datetime.fromisoformat(row["sendAt"]) == end.replace(second=0, microsecond=0)
        ahead = ImportForm(csv_text, "Hi {name}", None, "1", "00:00")
        [row] = rt.bulk.import_csv(grant.web_app_id, grant.staff, ahead, dry_run=True)["rows"]
        expected = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
        assert datetime.fromisoformat(row["sendAt"]) == rt.scheduler.quiet.next_allowed(expected)
    finally:
        rt.close()
