"""What a desk reads and keeps: its conversations (open or done), paged history with statuses, the unrouted list,
the catch-up feed."""

from __future__ import annotations

import secrets
from typing import Any

from relay.automatic import DIRECTION as AUTOMATIC
from relay.clock import Clock, iso
from relay.contacts import Contacts
from relay.directory import DeskDirectory
from relay.errors import BadRequest, Conflict, NotFound
from relay.notices import Notices
from relay.outbox import Outbox
from relay.ownership import Ownership
from relay.phones import normalise
from relay.reminders import Reminders
from relay.sessions import Caller
from relay.settings import Settings
from relay.statuses import latest
from relay.store import UNROUTED, Conversation, Event, MessageRecord, StatusRecord, Store
from relay.store.owners import DONE, OPEN
from relay.topics import Topics
from relay.twilio_gateway import Media, TwilioGateway

MAX_PAGE = 100
FEED_PAGE = 500
MAX_NOTE = 500
MAX_INTERNAL_NOTE = 2000
OPT_OUT = "optout"  # the store namespace inbound keeps STOPped numbers in
NOTE = "note"  # the stored direction of an internal note: a line in the thread for the desks, never an SMS
STATUSES = ("open", "done", "all")


class Conversations:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        outbox: Outbox,
        gateway: TwilioGateway,
        clock: Clock,
        ownership: Ownership,
        directory: DeskDirectory,
        reminders: Reminders,
        contacts: Contacts,
        notices: Notices,
    ) -> None:
        self._notices = notices
        self._reminders = reminders
        self._contacts = contacts
        self._settings = settings
        self._store = store
        self._outbox = outbox
        self._gateway = gateway
        self._clock = clock
        self._ownership = ownership
        self._directory = directory
        self._topics = Topics(settings.mqtt_topic_prefix)

    @staticmethod
    def check_status(status: str | None) -> None:
        """`status` open, done or all (the default, so a client that never heard of done still sees everything)."""
        if status is not None and status not in STATUSES:  # `?status=` with nothing is a mistake too
            raise BadRequest("'status' must be open, done or all.", code="invalid_status")

    def of_desk(self, web_app_id: str, status: str | None = None) -> list[dict[str, Any]]:
        self.check_status(status)
        found = [
            c for c in self._store.conversations(web_app_id) if status in (None, "all") or c.done == (status == "done")
        ]
        phones = [c.phone for c in found]
        names = self._contacts.names(phones)
        opted_out = self._store.kv_many(OPT_OUT, phones, self._clock.now())
        return [{**_conversation(c), "contact": names.get(c.phone), "optedOut": c.phone in opted_out} for c in found]

    def unrouted(self) -> list[dict[str, Any]]:
        return self.of_desk(UNROUTED)

    def set_done(self, caller: Caller, phone_raw: str, done: bool) -> dict[str, Any]:
        """Done or open again on this desk's list; its other browsers are told live, and catch-up replays it."""
        phone = normalise(phone_raw, field="phone")
        changed = self._store.set_done(caller.desk, phone, done) if caller.desk != UNROUTED else None
        if changed is None:
            raise NotFound("This desk has no conversation with that number.", code="conversation_not_found")
        owner = self._ownership.current(phone, [self._settings.our_side])
        if owner is not None and self._ownership.live_owner(owner) == caller.desk:
            self._ownership.set_state(phone, owner.our_side, DONE if done else OPEN)
        if changed:
            now = self._clock.now()
            payload = {"phone": phone, "done": done, "by": caller.staff.to_json(), "at": iso(now)}
            subject = f"done:{caller.desk}:{phone}"
            self._notices.tell(subject, secrets.token_hex(8), [caller.desk], "done", payload, now)
        return {"phone": phone, "done": done}

    def messages(self, web_app_id: str, phone_raw: str, before: str | None, limit_raw: str | None) -> dict[str, Any]:
        phone = normalise(phone_raw, field="phone")
        limit = _limit(limit_raw)
        if before is not None and (len(before) > 128 or not before.isprintable()):
            raise BadRequest("'before' is not a cursor this API gave out.", code="invalid_cursor")
        owner, seen = self._ownership.view(web_app_id, phone, self._settings.our_side)
        live = self._ownership.live_owner(owner)
        about = {
            "owner": self._desk_json(live),
            "state": owner.state if owner else "open",
            "yours": live == web_app_id,
            "optedOut": self._store.kv_get(OPT_OUT, phone, self._clock.now()) is not None,
        }
        if web_app_id == UNROUTED:
            window: dict[str, Any] = {"audience": UNROUTED}
        else:
            if not seen.allowed:
                return {"messages": [], "next": None, **about}
            window = {"until": seen.until}
        try:
            page, cursor = self._store.history(phone, before or None, limit, **window)
        except ValueError:
            raise BadRequest("'before' is not a cursor this API gave out.", code="invalid_cursor") from None
        statuses = self._store.statuses_of([m.sid for m in page if m.direction == "outbound"])
        contact = self._contacts.names([phone]).get(phone)
        shown = [{**self._message(m, statuses.get(m.sid, [])), "contact": contact} for m in page]
        return {"messages": shown, "next": cursor, **about}

    def mark_read(self, web_app_id: str, phone_raw: str) -> None:
        self._store.mark_read(web_app_id, normalise(phone_raw, field="phone"))

    def claim(self, web_app_id: str, phone_raw: str) -> dict[str, Any]:
        phone = normalise(phone_raw, field="phone")
        now = self._clock.now()
        payload = {"phone": phone, "webAppId": web_app_id, "at": iso(now)}
        event = self._store.claim(phone, web_app_id, Event(UNROUTED, "claimed", payload, now))
        if event is None:
            raise Conflict("That conversation is not waiting to be claimed.", code="already_claimed")
        self._ownership.take(phone, self._our_side(phone), web_app_id, now)
        self._outbox.publish(event)
        return {"phone": phone, "webAppId": web_app_id}

    def transfer(self, caller: Caller, phone_raw: str, body: dict[str, Any]) -> dict[str, Any]:
        """Hand a conversation to another desk, with a note it reads in the thread; both desks are told live."""
        phone = normalise(phone_raw, field="phone")
        target, note = body.get("desk"), body.get("note")
        if not isinstance(target, str) or not target:
            raise BadRequest("'desk' must be the id of the desk to transfer to.", code="invalid_desk")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise BadRequest(f"'note' must be text of at most {MAX_NOTE} characters.", code="invalid_note")
        desk = self._directory.live_desk(target)
        if desk.id == caller.desk:
            raise BadRequest("The conversation is already with your desk.", code="invalid_desk")
        owner = self._ownership.current(phone, [self._settings.our_side])
        if owner is None or self._ownership.live_owner(owner) != caller.desk:
            raise Conflict("Only the desk that has the conversation can transfer it.", code="not_owner")
        self._ownership.hand_over(
            phone,
            owner.our_side,
            desk.id,
            self._clock.now(),
            reason="transfer",
            by=caller.staff,
            note=(note or "").strip() or None,
            expect=caller.desk,
        )
        return {"phone": phone, "owner": desk.to_json()}

    def add_note(self, caller: Caller, phone_raw: str, body: dict[str, Any]) -> dict[str, Any]:
        """A note for colleagues, in the thread of the desk that has the conversation: told live to that desk,
        read by whichever desk has it next, and never sent to the phone."""
        phone = normalise(phone_raw, field="phone")
        text = body.get("body")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_INTERNAL_NOTE:
            raise BadRequest(f"'body' must be the note, 1 to {MAX_INTERNAL_NOTE} characters.", code="invalid_body")
        owner = self._ownership.current(phone, [self._settings.our_side])
        if not self._ownership.visibility(caller.desk, phone).allowed or owner is None:
            raise NotFound("This desk has no conversation with that number.", code="conversation_not_found")
        if self._ownership.live_owner(owner) != caller.desk:
            raise Conflict("Only the desk that has the conversation can add a note to it.", code="not_owner")
        now = self._clock.now()
        sid = "NT" + secrets.token_hex(16)
        payload: dict[str, Any] = {
            "MessageSid": sid,
            "direction": NOTE,
            "phone": phone,
            "From": owner.our_side,
            "To": phone,
            "Body": text,
            "sentBy": caller.staff.to_json(),
            "at": iso(now),
        }
        record = MessageRecord(sid, NOTE, phone, owner.our_side, caller.desk, text, now, payload)
        for event in self._store.save_line(record, [Event(caller.desk, NOTE, payload, now)]) or []:
            self._outbox.publish(event)
        return {**self._message(record, []), "contact": self._contacts.names([phone]).get(phone)}

    def feed(self, web_app_id: str, after: str | None) -> dict[str, Any]:
        if after is not None and (len(after) > 64 or not after.isascii() or not after.replace("-", "").isalnum()):
            raise BadRequest("'after' is not a cursor this API gave out.", code="invalid_cursor")
        try:
            page = self._store.events_after([web_app_id, UNROUTED], after or None, FEED_PAGE)
        except ValueError:
            raise BadRequest("'after' is not a cursor this API gave out.", code="invalid_cursor") from None
        return {
            "events": [
                {"id": e.key, "topic": self._topics.of(e.audience, e.kind), "kind": e.kind, "payload": e.payload}
                for e in page.events
            ],
            "cursor": page.cursor,
        }

    def media(self, web_app_id: str, sid: str, index_raw: str) -> Media:
        message = self._store.get_message(sid) if len(sid) <= 64 else None
        if message is None or not self._ownership.may_read(web_app_id, message) or not _small_number(index_raw):
            raise NotFound("No such media for this desk.", code="media_not_found")
        url = message.payload.get(f"MediaUrl{int(index_raw)}")
        if not isinstance(url, str) or not url:
            raise NotFound("No such media for this desk.", code="media_not_found")
        return self._gateway.fetch_media(url)

    def _our_side(self, phone: str) -> str:
        page, _ = self._store.history(phone, None, 1, audience=UNROUTED)
        return page[0].our_side if page else self._settings.our_side

    def _desk_json(self, desk: str | None) -> dict[str, str] | None:
        found = self._directory.get(desk) if desk else None
        return found.to_json() if found else None

    def _message(self, m: MessageRecord, statuses: list[StatusRecord]) -> dict[str, Any]:
        status = latest(statuses)
        p = m.payload
        ours = str(p.get("To" if m.direction == "inbound" else "From") or m.our_side)
        # Only reminders have a state: no store read for every other message of the page.
        reminder = self._reminders.state_of(str(p.get("reminderId") or m.sid)) if p.get("reminder") else None
        return {
            "sid": m.sid,
            "direction": "outbound" if m.direction == AUTOMATIC else m.direction,
            "from": m.phone if m.direction == "inbound" else ours,
            "to": ours if m.direction == "inbound" else m.phone,
            "body": m.body,
            "displayBody": p.get("displayBody", m.body),
            "at": iso(m.created_at),
            "status": status.status if status else p.get("Status", p.get("SmsStatus")),
            "errorCode": status.error_code if status else None,
            "errorMessage": status.error_message if status else None,
            "media": p.get("media", []),
            "reminder": reminder or ("sent" if p.get("reminder") == "pending" else p.get("reminder")),
            "reminderId": p.get("reminderId"),
            "sentBy": p.get("sentBy"),
            "automatic": p.get("automatic"),
            **({"line": _line(p)} if m.direction == "event" else {}),
        }


def _line(p: dict[str, Any]) -> dict[str, Any]:
    """What a change of owner says in the thread: from and to which desk, who did it, why, and the note."""
    return {k: p.get(k) for k in ("reason", "from", "to", "by", "note")}


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 50
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}.", code="invalid_limit")
    return int(raw)


def _conversation(c: Conversation) -> dict[str, Any]:
    return {
        "phone": c.phone,
        "lastMessage": {
            "sid": c.last_sid,
            "direction": "outbound" if c.last_direction == AUTOMATIC else c.last_direction,
            "body": c.last_body,
            "displayBody": c.last_body if c.last_display is None else c.last_display,
            "mediaCount": c.last_media,
            "at": iso(c.last_at),
        },
        "unread": c.unread,
        "lastAt": iso(c.last_at),
        "done": c.done,
    }


def _small_number(raw: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 3
