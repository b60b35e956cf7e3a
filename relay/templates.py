"""Saved texts per desk, and the placeholders every reminder text may use: {name}, {date} (as `Wed 24 Nov`),
{time}, {desk} and {clinic}. Rendering substitutes values, never formats: a name with braces stays text."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import date
from typing import Any

from relay.clock import Clock, iso
from relay.desks import DeskRuleError, clean_name
from relay.errors import BadRequest, NotFound
from relay.notices import Notices
from relay.outbound import MAX_BODY
from relay.store import Store
from relay.store.templates import Template
from relay.tokens import Staff

PLACEHOLDERS = ("name", "date", "time", "desk", "clinic")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME = 80
MAX_TEMPLATES = 100
KIND = "template"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def check_template(body: object, field: str = "template") -> str:
    """A non-empty text of at most MAX_BODY characters whose placeholders are all known."""
    if not isinstance(body, str) or not body.strip():
        raise BadRequest(f"'{field}' must be a non-empty text.", code="invalid_template")
    if len(body) > MAX_BODY:
        raise BadRequest(f"'{field}' is longer than {MAX_BODY} characters.", code="invalid_template")
    unknown = sorted({m for m in _PLACEHOLDER.findall(body) if m not in PLACEHOLDERS})
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise BadRequest(f"Unknown placeholder {{{unknown[0]}}}; use {known}.", code="invalid_template")
    return body


def render(body: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body)


def day_text(day: date) -> str:
    """`Wed 24 Nov`, in English whatever the server's locale."""
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"


class Templates:
    def __init__(self, store: Store, notices: Notices, clock: Clock) -> None:
        self._store = store
        self._notices = notices
        self._clock = clock

    def of_desk(self, desk: str) -> list[dict[str, Any]]:
        return [_json(t) for t in self._store.templates.of_desk(desk)]

    def get(self, desk: str, template_id: str) -> Template:
        found = self._store.templates.get(desk, template_id) if _ID.match(template_id) else None
        if found is None:
            raise NotFound("No such template at this desk.", code="template_not_found")
        return found

    def put(self, desk: str, staff: Staff, template_id: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        if not _ID.match(template_id):
            raise BadRequest("A template id is 1-64 letters, digits, '-' or '_'.", code="invalid_template_id")
        try:
            name = clean_name(body.get("name"), what="The template's name", code="invalid_name", limit=MAX_NAME)
        except DeskRuleError as exc:
            raise BadRequest(str(exc), code=exc.code) from None
        text = check_template(body.get("body"), "body")
        existing = self._store.templates.of_desk(desk)
        if len(existing) >= MAX_TEMPLATES and all(t.id != template_id for t in existing):
            raise BadRequest(f"A desk keeps at most {MAX_TEMPLATES} templates.", code="too_many_templates")
        template = Template(desk, template_id, name, text, self._clock.now())
        created = self._store.templates.put(template)
        self._tell(desk, template_id, _json(template), staff)
        return _json(template), created

    def delete(self, desk: str, staff: Staff, template_id: str) -> None:
        if not _ID.match(template_id) or not self._store.templates.delete(desk, template_id):
            raise NotFound("No such template at this desk.", code="template_not_found")
        self._tell(desk, template_id, None, staff)

    def _tell(self, desk: str, template_id: str, template: dict[str, Any] | None, staff: Staff) -> None:
        now = self._clock.now()
        payload = {"id": template_id, "template": template, "by": staff.to_json(), "at": iso(now)}
        self._notices.tell(f"template:{desk}:{template_id}", secrets.token_hex(8), [desk], KIND, payload, now)


def _json(t: Template) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "body": t.body, "updatedAt": iso(t.updated_at)}
