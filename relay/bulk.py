"""Bulk reminders from a list: a clinic's CSV of appointments becomes one scheduled reminder per row, and "Remind
again" sends once more to a day's unanswered ones. Each list is a batch (relay/batches.py).

A row's reminder has an id derived from (desk, phone, date, time): its insert is conditional on both backends, so
importing the same list twice, even at once from two tabs, schedules each appointment once; the second import
reports those rows as `existing`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from relay.batches import Batches, new_id
from relay.clock import Clock, iso
from relay.contacts import Contacts, clean_contact_name, clean_note
from relay.csvfiles import read_table
from relay.desks import Desk
from relay.directory import DeskDirectory
from relay.errors import BadRequest, RelayError
from relay.outbound import Outbound, SendRequest
from relay.phones import normalise
from relay.quiet import local_moment, zone
from relay.reminders import Reminders
from relay.scheduler import Scheduler
from relay.segments import count
from relay.settings import Settings
from relay.store import Store
from relay.store.reminders import Reminder
from relay.store.scheduled import Scheduled
from relay.templates import Templates, check_template, day_text, render
from relay.tokens import Staff

REQUIRED = ("phone", "name", "date", "time")
OPTIONAL = ("desk", "note")
MAX_DAYS_BEFORE = 35
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class ImportForm:
    """The multipart form's fields, as bytes (the file) and text (the rest); absent ones are None."""

    file: bytes | None
    template: str | None
    template_id: str | None
    send_days_before: str | None
    send_time: str | None


def parse_day(raw: object, field: str = "date") -> date:
    if not isinstance(raw, str) or not _DATE.match(raw.strip()):
        raise BadRequest(f"'{field}' must be a date as YYYY-MM-DD.", code="invalid_date")
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequest(f"'{field}' is not a date in the calendar.", code="invalid_date") from None


def parse_time(raw: object, field: str, code: str) -> time:
    m = _TIME.match(raw.strip()) if isinstance(raw, str) else None
    if m is None:
        raise BadRequest(f"'{field}' must be a time as HH:MM (24-hour).", code=code)
    return time(int(m[1]), int(m[2]))


def reminder_id(desk: str, phone: str, day: date, at: time) -> str:
    """The same appointment gives the same id: what makes a re-import schedule nothing twice."""
    key = f"{desk}|{phone}|{day.isoformat()}|{at:%H:%M}".encode()
    return "SQ" + hashlib.sha256(key).hexdigest()[:32]


@dataclass(frozen=True)
class Planned:
    """A row that can be sent: what will go, to whom, when."""

    id: str
    phone: str
    name: str
    desk: str
    appointment: str
    send_at: datetime
    text: str


class RowError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Bulk:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        outbound: Outbound,
        scheduler: Scheduler,
        reminders: Reminders,
        contacts: Contacts,
        templates: Templates,
        batches: Batches,
        directory: DeskDirectory,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._outbound = outbound
        self._scheduler = scheduler
        self._reminders = reminders
        self._contacts = contacts
        self._templates = templates
        self._batches = batches
        self._directory = directory
        self._clock = clock
        self._tz = zone(settings.relay_timezone)

    def import_csv(
        self, desk: str, staff: Staff, form: ImportForm, dry_run: bool, base_url: str = ""
    ) -> dict[str, Any]:
        """Every row answered: its text and segments, or its error; without `dry_run`, the valid ones scheduled."""
        template = self._template(desk, form)
        days_before = _days_before(form.send_days_before)
        send_time = parse_time(form.send_time, "sendTime", "invalid_send_time")
        if form.file is None:
            raise BadRequest("Attach the list as the form's 'file' field.", code="missing_file")
        table = read_table(form.file, REQUIRED, OPTIONAL)
        now = self._clock.now()
        batch = None if dry_run else new_id()
        seen: set[str] = set()
        rows: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for number, cells in table.rows:
            row: dict[str, Any] = {
                "row": number,
                **{c: cells.get(c) or None for c in ("phone", "name", "date", "time")},
                "desk": cells.get("desk") or desk,
                "sendAt": None,
                "text": None,
                "segments": None,
                "encoding": None,
                "status": "invalid",
            }
            try:
                planned = self._plan(desk, cells, template, days_before, send_time, now)
            except RowError as exc:
                rows.append({**row, "error": {"code": exc.code, "message": exc.message}})
                continue
            segments = count(planned.text)
            row.update(
                phone=planned.phone,
                name=planned.name,
                desk=planned.desk,
                sendAt=iso(planned.send_at),
                text=planned.text,
                segments=segments.segments,
                encoding=segments.encoding,
                id=planned.id,
            )
            if planned.id in seen:
                error = {"code": "duplicate_row", "message": "This appointment is on an earlier row of the file."}
                rows.append({**row, "error": error})
                continue
            seen.add(planned.id)
            if self._store.scheduled.get(planned.id) is not None:
                rows.append({**row, "status": "existing"})
                continue
            if batch is None:
                rows.append({**row, "status": "valid"})
                continue
            added = self._schedule(desk, planned, staff, batch, base_url, now)
            rows.append({**row, "status": "scheduled" if added else "existing"})
            names.setdefault(planned.phone, planned.name)
        counts = {k: sum(1 for r in rows if r["status"] == k) for k in ("valid", "invalid", "existing", "scheduled")}
        if batch is not None:
            self._contacts.add_missing(staff, names)
            if counts["scheduled"]:
                self._batches.tell(desk, batch, now)
        return {"dryRun": dry_run, "batch": batch if counts["scheduled"] else None, **counts, "rows": rows}

    def remind_again(self, desk: str, staff: Staff, body: Mapping[str, Any], base_url: str = "") -> dict[str, Any]:
        """A day's no_answer reminders once more, now (or when quiet hours end), as a new batch of the same
        reminders: the board keeps one row per appointment."""
        day = parse_day(body.get("date"))
        template = check_template(body["template"]) if body.get("template") is not None else None
        now = self._clock.now()
        batch = new_id()
        sent = 0
        for reminder in self._store.reminders.of_day(desk, day.isoformat()):
            if reminder.state != "no_answer":
                continue
            text = self._text_again(reminder, template)
            try:
                to, text, _, _ = self._outbound.check(SendRequest(desk, reminder.phone, text, confirm=True), now)
            except RelayError:
                continue  # opted out or no longer allowed since: the board says so as it is
            if not self._reminders.again(reminder, now):
                continue
            data = self._data(desk, to, text, staff, batch, base_url) | {"reminder": reminder.id}
            item = Scheduled("SQ" + secrets.token_hex(16), desk, "scheduled", self._next(now), now, None, data)
            if self._store.scheduled.add(item) is not None:
                sent += 1
        if sent:
            self._batches.tell(desk, batch, now)
        return {"batch": batch if sent else None, "count": sent}

    # -- rows

    def _plan(
        self, desk: str, cells: dict[str, str], template: str, days_before: int, send_time: time, now: datetime
    ) -> Planned:
        missing = [c for c in REQUIRED if not cells.get(c)]
        if missing:
            raise RowError("missing_field", f"The row has no {missing[0]}.")
        try:
            day = parse_day(cells["date"])
            at = parse_time(cells["time"], "time", "missing_field")
            name = clean_contact_name(cells["name"])
            clean_note(cells.get("note") or None)
        except RelayError as exc:
            code = "missing_field" if exc.code == "invalid_date" else exc.code
            raise RowError(code, exc.message) from None
        row_desk = self._desk(cells.get("desk") or desk, desk)
        appointment = local_moment(day, at, self._tz)
        values = {
            "name": name,
            "date": day_text(day),
            "time": f"{at:%H:%M}",
            "desk": row_desk.name,
            "clinic": self._settings.clinic_name,
        }
        text = render(template, values)
        try:
            number = normalise(cells["phone"], field="phone")
            phone, text, _, _ = self._outbound.check(SendRequest(row_desk.id, number, text, confirm=True), now)
        except RelayError as exc:
            raise RowError(exc.code, exc.message) from None
        if appointment <= now:
            raise RowError("appointment_in_past", "The appointment is in the past.")
        send_at = max(local_moment(day - timedelta(days=days_before), send_time, self._tz), now)
        return Planned(
            reminder_id(row_desk.id, phone, day, at),
            phone,
            name,
            row_desk.id,
            f"{day.isoformat()}T{at:%H:%M}",
            self._next(send_at),
            text,
        )

    def _desk(self, raw: str, own: str) -> Desk:
        wanted = raw.strip().casefold()
        found = next((d for d in self._directory.live() if wanted in (d.id.casefold(), d.name.casefold())), None)
        if found is None:
            raise RowError("unknown_desk", f"There is no desk '{raw.strip()}'.")
        if found.id != own and self._settings.relay_auth == "appservice":
            # Roles are checked per desk when a session opens; a row must not send from a desk the person has none for.
            raise RowError("unknown_desk", f"Sign in at {found.name} to schedule its reminders.")
        return found

    def _schedule(self, desk: str, planned: Planned, staff: Staff, batch: str, base_url: str, now: datetime) -> bool:
        """The reminder first, then its item: the item's conditional insert decides; a reminder left without
        its item by a crash gets it on the next import."""
        self._reminders.scheduled(
            planned.id, planned.phone, self._settings.our_side, planned.desk, now, appointment=planned.appointment
        )
        data = self._data(desk, planned.phone, planned.text, staff, batch, base_url)
        item = Scheduled(planned.id, planned.desk, "scheduled", planned.send_at, now, None, data)
        return self._store.scheduled.add(item) is not None

    def _data(self, desk: str, to: str, text: str, staff: Staff, batch: str, base_url: str) -> dict[str, Any]:
        return {
            "to": to,
            "body": text,
            "media": [],
            "confirm": True,
            "by": staff.to_json(),
            "baseUrl": base_url,
            "batch": batch,
            "batchDesk": desk,  # the importing desk follows the batch, whichever desks its rows are for
        }

    def _next(self, at: datetime) -> datetime:
        return self._scheduler.quiet.next_allowed(at)

    def _template(self, desk: str, form: ImportForm) -> str:
        if form.template_id:
            return self._templates.get(desk, form.template_id).body
        return check_template(form.template)

    def _text_again(self, reminder: Reminder, template: str | None) -> str:
        if template is None:
            earlier = self._store.scheduled.get(reminder.id)
            if earlier is not None:
                return str(earlier.data.get("body") or "")
            message = self._store.get_message(reminder.message_sid or "")
            return message.body if message is not None else ""
        day, _, at = (reminder.appointment or "T").partition("T")
        contact = self._store.contacts.get(reminder.phone)
        found = self._directory.get(reminder.desk)
        values = {
            "name": contact.name if contact else "",
            "date": day_text(date.fromisoformat(day)) if day else "",
            "time": at,
            "desk": found.name if found else reminder.desk,
            "clinic": self._settings.clinic_name,
        }
        return render(template, values)


def _days_before(raw: str | None) -> int:
    value = (raw or "").strip()
    if not value.isascii() or not value.isdigit() or int(value) > MAX_DAYS_BEFORE:
        raise BadRequest(
            f"'sendDaysBefore' must be a whole number of days from 0 to {MAX_DAYS_BEFORE}.",
            code="invalid_send_days_before",
        )
    return int(value)
