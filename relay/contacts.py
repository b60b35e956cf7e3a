"""The address book: names for numbers, shared by every desk of the clinic, and told live to all of them.

Names and notes are whatever staff (or a spreadsheet) typed: hostile text, shown with textContent, refused when
they carry control or direction-changing characters, neutralised on export.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from relay.clock import Clock, iso
from relay.csvfiles import read_table, write_table
from relay.desks import DeskRuleError, clean_name
from relay.directory import DeskDirectory
from relay.errors import BadRequest, NotFound, RelayError
from relay.notices import Notices
from relay.phones import normalise
from relay.store import Store
from relay.store.contacts import Contact
from relay.tokens import Staff

MAX_NAME = 80
MAX_NOTE = 500
MAX_QUERY = 100
MAX_RESULTS = 200
KIND = "contact"


def clean_contact_name(value: object) -> str:
    try:
        return clean_name(value, what="The name", code="invalid_name", limit=MAX_NAME)
    except DeskRuleError as exc:
        raise BadRequest(str(exc), code=exc.code) from None


def clean_note(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTE:
        raise BadRequest(f"'note' must be text of at most {MAX_NOTE} characters.", code="invalid_note")
    if any(unicodedata.category(c) in ("Cf", "Cs", "Co", "Cn") or (c < " " and c not in "\n\t") for c in value):
        raise BadRequest("'note' may not contain control or direction-changing characters.", code="invalid_note")
    return value.strip() or None


class Contacts:
    def __init__(self, store: Store, notices: Notices, directory: DeskDirectory, clock: Clock) -> None:
        self._store = store
        self._notices = notices
        self._directory = directory
        self._clock = clock

    def search(self, query: str | None) -> list[dict[str, Any]]:
        """By name (any case, any part) or by number (its digits, any part)."""
        q = (query or "").strip()
        if len(q) > MAX_QUERY:
            raise BadRequest(f"'q' is longer than {MAX_QUERY} characters.", code="invalid_query")
        words = q.casefold()
        digits = "".join(c for c in q if c.isascii() and c.isdigit())
        found = [
            c
            for c in self._store.contacts.all()
            if not q or words in c.name.casefold() or (digits and digits in c.phone)
        ]
        return [_json(c) for c in found[:MAX_RESULTS]]

    def get(self, phone_raw: str) -> dict[str, Any]:
        found = self._store.contacts.get(normalise(phone_raw, field="phone"))
        if found is None:
            raise NotFound("No contact has that number.", code="contact_not_found")
        return _json(found)

    def put(self, staff: Staff, phone_raw: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The contact as stored, and whether it is new."""
        phone = normalise(phone_raw, field="phone")
        contact = Contact(phone, clean_contact_name(body.get("name")), clean_note(body.get("note")), self._clock.now())
        created = self._store.contacts.put(contact)
        self._tell(phone, _json(contact), staff, contact.updated_at)
        return _json(contact), created

    def delete(self, staff: Staff, phone_raw: str) -> None:
        phone = normalise(phone_raw, field="phone")
        if not self._store.contacts.delete(phone):
            raise NotFound("No contact has that number.", code="contact_not_found")
        self._tell(phone, None, staff, self._clock.now())

    def import_csv(self, staff: Staff, raw: bytes) -> dict[str, Any]:
        """Row by row: a bad row is reported with its number and the rest still count."""
        table = read_table(raw, ("name", "phone"), ("note",))
        now = self._clock.now()
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, cells in table.rows:
            try:
                phone = normalise(cells["phone"], field="phone")
                if phone in seen:
                    raise BadRequest("This number is on an earlier row of the file.", code="duplicate_row")
                contact = Contact(phone, clean_contact_name(cells["name"]), clean_note(cells.get("note")), now)
            except RelayError as exc:
                results.append({"row": number, "phone": cells.get("phone"), "result": "error", "error": _error(exc)})
                continue
            seen.add(phone)
            created = self._store.contacts.put(contact)
            results.append({"row": number, "phone": phone, "result": "created" if created else "updated"})
        counts = {k: sum(1 for r in results if r["result"] == k) for k in ("created", "updated", "error")}
        if counts["created"] or counts["updated"]:
            # One notice for the whole file: the desks fetch the book again rather than take thousands of events.
            self._tell("*", None, staff, now, imported=counts)
        return {**counts, "rows": results}

    def add_missing(self, staff: Staff, names: dict[str, str]) -> int:
        """Names from an imported reminder list, for numbers the book has no name for: a name staff typed is
        never overwritten by a spreadsheet's. One notice for the lot; returns how many were added."""
        now = self._clock.now()
        known = self._store.contacts.of_phones(list(names))
        fresh = [Contact(phone, name, None, now) for phone, name in names.items() if phone not in known]
        added = sum(1 for contact in fresh if self._store.contacts.put(contact))
        if added:
            self._tell("*", None, staff, now, imported={"created": added, "updated": 0, "error": 0})
        return added

    def export_csv(self) -> bytes:
        rows = ([c.name, c.phone, c.note] for c in self._store.contacts.all())
        return write_table(("name", "phone", "note"), rows, free_text=("name", "note"))

    def names(self, phones: list[str]) -> dict[str, dict[str, str]]:
        """What conversation and message JSON carry: `{"name"}` per number that has a contact."""
        return {p: {"name": c.name} for p, c in self._store.contacts.of_phones(phones).items()}

    def _tell(
        self,
        phone: str,
        contact: dict[str, Any] | None,
        staff: Staff,
        at: datetime,
        imported: dict[str, int] | None = None,
    ) -> None:
        """On every live desk's own topic, so the broker's per-desk ACL stays as it is."""
        payload: dict[str, Any] = {"phone": phone, "contact": contact, "by": staff.to_json(), "at": iso(at)}
        if imported is not None:
            payload["imported"] = imported
        desks = [d.id for d in self._directory.live()]
        self._notices.tell(f"contact:{phone}", secrets.token_hex(8), desks, KIND, payload, at)


def _json(c: Contact) -> dict[str, Any]:
    return {"phone": c.phone, "name": c.name, "note": c.note, "updatedAt": iso(c.updated_at)}


def _error(exc: RelayError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message}
