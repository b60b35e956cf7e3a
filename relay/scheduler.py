"""Sending later: `send_sms` with `sendAt` schedules a message, and the timer sends what is due, exactly once.

Exactly once across instances and crashes: an instance claims an item with a conditional write (`scheduled` to
`sending`), records Twilio's sid on it the moment Twilio accepts the message, then marks it `sent`. A claim older
than CLAIM_TIMEOUT belongs to an instance that died: with a sid recorded the message went; without one, Twilio's
message list (to, from, time window, body) is asked before the item is sent again. Everything a send checks (the
number's country, opt-out, the desk) is checked again at send time, and nothing goes out in quiet hours.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from relay.batches import Batches, owner
from relay.clock import Clock, iso
from relay.directory import DeskDirectory
from relay.errors import BadRequest, Conflict, Forbidden, NotFound, RelayError, TooManyRequests, Unavailable
from relay.notices import Notices
from relay.outbound import Outbound, SendRequest, validate_body
from relay.pacing import Pacer
from relay.quiet import QuietHours, zone
from relay.reminders import Reminders
from relay.settings import Settings
from relay.store import Store
from relay.store.scheduled import Scheduled
from relay.tokens import Staff
from relay.twilio_gateway import SentMessage, TwilioGateway

log = logging.getLogger("relay.scheduler")

MAX_AHEAD = timedelta(days=35)
CLAIM_TIMEOUT = timedelta(seconds=60)  # beyond one Twilio call (8 s), the writes around it and a pacing wait
LIST_MARGIN = timedelta(minutes=2)  # clocks differ: look a little before the claim in Twilio's list
BATCH = 200
# Deliveries in flight at once: each takes a Twilio call and a few writes, longer than a slot at a fast pace, so
# enough run side by side to fill every slot when one takes up to DELIVERY_SECONDS. One at Twilio's default pace.
DELIVERY_SECONDS = 0.25
MAX_IN_FLIGHT = 16
IDEMPOTENCY_TTL = timedelta(hours=24)
KIND = "scheduled"


def parse_send_at(raw: object, now: datetime, min_lead: timedelta) -> datetime:
    if not isinstance(raw, str) or len(raw) > 40:
        raise BadRequest("'sendAt' must be an ISO 8601 time with an offset.", code="invalid_send_at")
    try:
        at = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("'sendAt' must be an ISO 8601 time with an offset.", code="invalid_send_at") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise BadRequest("'sendAt' needs an offset (such as Z or +01:00).", code="invalid_send_at")
    if at < now + min_lead:
        raise BadRequest(f"'sendAt' must be at least {min_lead.total_seconds():g} s ahead.", code="invalid_send_at")
    if at > now + MAX_AHEAD:
        raise BadRequest("'sendAt' may be at most 35 days ahead.", code="invalid_send_at")
    return at


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        outbound: Outbound,
        gateway: TwilioGateway,
        reminders: Reminders,
        directory: DeskDirectory,
        notices: Notices,
        batches: Batches,
        clock: Clock,
    ) -> None:
        self._batches = batches
        self._settings = settings
        self._store = store
        self._outbound = outbound
        self._gateway = gateway
        self._reminders = reminders
        self._directory = directory
        self._notices = notices
        self._clock = clock
        self.quiet = QuietHours(zone(settings.relay_timezone), settings.quiet_hours)
        self._pacer = Pacer(store, settings.send_rate_per_second)
        self._in_flight = max(1, min(MAX_IN_FLIGHT, math.ceil(settings.send_rate_per_second * DELIVERY_SECONDS)))
        self._last_run = float("-inf")
        self._run_lock = threading.Lock()

    # -- the desk's side

    def schedule(self, request: SendRequest, send_at_raw: object) -> dict[str, Any]:
        now = self._clock.now()
        send_at = parse_send_at(send_at_raw, now, timedelta(seconds=self._settings.schedule_min_lead_seconds))
        to, body, media, uploads = self._outbound.check(request, now)
        item_id = "SQ" + secrets.token_hex(16)
        if request.idempotency_key:
            key = f"{request.web_app_id}:{request.idempotency_key}"
            if not self._store.kv_insert("idem-scheduled", key, {"id": item_id}, now + IDEMPOTENCY_TTL, now):
                earlier = self._store.kv_get("idem-scheduled", key, now) or {}
                found = self._store.scheduled.get(str(earlier.get("id", "")))
                if found is None:
                    raise Conflict(
                        "A request with this Idempotency-Key is still in progress.", code="request_in_progress"
                    )
                return self.to_json(found)
        data = {
            "to": to,
            "body": body,
            "media": media,
            "mediaIds": [u.id for u in uploads],  # signed when it is sent, not now: a URL lives 15 minutes
            "confirm": request.confirm is True,
            "by": request.sent_by.to_json() if request.sent_by else None,
            "baseUrl": request.base_url,
        }
        item = self._store.scheduled.add(Scheduled(item_id, request.web_app_id, "scheduled", send_at, now, None, data))
        if item is None:  # a random 128-bit id never collides; say so rather than pretend
            raise Conflict("That scheduled id is taken; try again.", code="request_in_progress")
        if request.confirm is True:
            self._reminders.scheduled(item_id, to, self._settings.our_side, request.web_app_id, now)
        self._tell(item, now)
        return self.to_json(item)

    def of_desk(self, desk: str) -> list[dict[str, Any]]:
        return [self.to_json(i) for i in self._store.scheduled.of_desk(desk)]

    def cancel(self, desk: str, item_id: str) -> dict[str, Any]:
        item = self._mine(desk, item_id)
        now = self._clock.now()
        cancelled = self._change(item, now, state="cancelled")
        if cancelled.data.get("confirm"):
            self._reminders.settle(reminder_of(cancelled), "cancelled", now)
        return self.to_json(cancelled)

    def edit(self, desk: str, item_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        item = self._mine(desk, item_id)
        now = self._clock.now()
        changes: dict[str, Any] = {}
        if "body" in body:
            changes["data"] = {**item.data, "body": validate_body(body.get("body"))}
        if "sendAt" in body:
            lead = timedelta(seconds=self._settings.schedule_min_lead_seconds)
            changes["send_at"] = parse_send_at(body.get("sendAt"), now, lead)
        if not changes:
            raise BadRequest("Change 'body', 'sendAt' or both.", code="invalid_change")
        return self.to_json(self._change(item, now, **changes))

    def _mine(self, desk: str, item_id: str) -> Scheduled:
        item = self._store.scheduled.get(item_id) if 0 < len(item_id) <= 64 and item_id.isalnum() else None
        if item is None or item.desk != desk:
            raise NotFound("No such scheduled message for this desk.", code="scheduled_not_found")
        return item

    def _change(self, item: Scheduled, now: datetime, **changes: Any) -> Scheduled:
        """Only while it waits; a claim (it is being sent) or a send wins over a cancel or an edit."""
        current: Scheduled | None = item
        while current is not None:
            if current.state in ("sending", "sent"):
                raise Conflict("That message has already been sent.", code="already_sent")
            if current.state != "scheduled":
                raise Conflict(f"That message is {current.state}, not waiting to be sent.", code="not_scheduled")
            stored = self._store.scheduled.put(replace(current, **changes), current)
            if stored is not None:
                self._tell(stored, now)
                return stored
            current = self._store.scheduled.get(item.id)
        raise NotFound("No such scheduled message for this desk.", code="scheduled_not_found")

    # -- the timer's side

    def run_if_due(self) -> int:
        """The timer ticks every second; this runs every SCHEDULE_POLL_SECONDS of this process."""
        if not self._run_lock.acquire(blocking=False):
            return 0
        try:
            if time.monotonic() - self._last_run < self._settings.schedule_poll_seconds:
                return 0
            self._last_run = time.monotonic()
            return self.run()
        finally:
            self._run_lock.release()

    def run(self) -> int:
        """Send what is due now; returns how many went out. Batches that moved are told as they are at the end."""
        try:
            return self._send_due()
        finally:
            self._batches.flush(self._clock.now())

    def _send_due(self) -> int:
        """Everything due, BATCH listed at a time; each delivery wins its own slot of the pace, so a few run at once."""
        # A slow pace can make a live claim wait longer than CLAIM_TIMEOUT: never call that stale.
        timeout = max(CLAIM_TIMEOUT, timedelta(seconds=20 / self._settings.send_rate_per_second))
        sent = 0
        seen: set[str] = set()  # one try per item per run: one put back (a cap reached) waits for the next run
        with ThreadPoolExecutor(self._in_flight, thread_name_prefix="scheduled") as pool:
            while not self.quiet.inside(now := self._clock.now()):  # due ones wait for the end of quiet hours
                listed = self._store.scheduled.due(now, now - timeout, BATCH)
                fresh = [item for item in listed if item.id not in seen]
                seen.update(item.id for item in fresh)
                sent += sum(pool.map(self._try, fresh))
                if len(listed) < BATCH or not fresh:
                    break
        return sent

    def _try(self, item: Scheduled) -> int:
        try:
            return self._deliver(item)
        except RelayError as exc:
            log.warning("scheduled %s not sent this time: %s", item.id, exc.message)
            return 0

    def _deliver(self, listed: Scheduled) -> int:
        item = self._store.scheduled.get(listed.id)  # another instance may have taken it since the list was read
        if item is None or item.version != listed.version:
            return 0
        stale = item.state == "sending"
        claim = {**item.data, "claim": secrets.token_hex(8), "attempts": int(item.data.get("attempts", 0)) + 1}
        mine = self._store.scheduled.put(replace(item, state="sending", claimed_at=self._clock.now(), data=claim), item)
        if mine is None:
            return 0  # another instance claimed it first
        # Claim first, then wait for a slot: a lost claim costs no slot, so instances together keep the full pace.
        # The wait is a few slots at most (one per delivery in flight on each instance), well inside the claim timeout.
        self._pacer.wait_turn()
        now = self._clock.now()
        if self.quiet.inside(now):
            self._store.scheduled.put(replace(mine, state="scheduled", claimed_at=None), mine)
            return 0
        if stale:
            recovered = self._recover(item, mine, now)
            if recovered is not None:
                return recovered
        desk = self._directory.get(mine.desk)
        if desk is None or desk.archived:
            self._end(mine, "cancelled", now, "desk_archived")
            return 0
        holder = {"item": mine}

        def accepted(sent: SentMessage) -> None:
            current = holder["item"]
            recorded = self._store.scheduled.put(replace(current, data={**current.data, "sid": sent.sid}), current)
            if recorded is None:
                log.error("scheduled %s sent as %s but its claim was lost", current.id, sent.sid)
                return
            holder["item"] = recorded

        try:
            result = self._outbound.send(self._request(mine, accepted))
        except TooManyRequests:
            self._store.scheduled.put(replace(mine, state="scheduled", claimed_at=None), mine)  # next run
            return 0
        except Unavailable:
            raise  # Twilio may have it: the claim stays, and the list is asked once it is stale
        except (BadRequest, Forbidden, Conflict) as exc:
            state = "opted_out" if exc.code == "opted_out" else "failed"
            self._end(mine, state, now, exc.code)
            return 0
        except RelayError as exc:  # Twilio refused it
            self._end(mine, "failed", now, exc.code)
            return 0
        self._finish(holder["item"], result.sid, now)
        return 1

    def _recover(self, old: Scheduled, mine: Scheduled, now: datetime) -> int | None:
        """A claim that outlived its instance: was the message sent? None means no: send it now."""
        sid = old.data.get("sid")
        if isinstance(sid, str):
            self._finish(mine, sid, now)
            return 1
        since = (old.claimed_at or old.send_at) - LIST_MARGIN
        found = self._gateway.find_sent(str(mine.data["to"]), str(mine.data["body"]), since)
        if found is None:
            return None
        log.info("scheduled %s was sent before a crash as %s; not sending it again", mine.id, found.sid)
        if self._store.get_message(found.sid) is None:
            self._outbound.record(self._request(mine, None), found, now)
        self._finish(mine, found.sid, now)
        return 1

    def _request(self, item: Scheduled, accepted: Any) -> SendRequest:
        by = item.data.get("by")
        confirm = bool(item.data.get("confirm"))
        return SendRequest(
            web_app_id=item.desk,
            to=item.data["to"],
            body=item.data["body"],
            media_urls=item.data.get("media") or None,
            media_ids=item.data.get("mediaIds") or None,
            confirm=confirm,
            base_url=str(item.data.get("baseUrl") or ""),
            sent_by=Staff(str(by["id"]), str(by["name"])) if isinstance(by, dict) else None,
            take_over=True,  # staff chose to send it; if another desk has the patient now, both threads say so
            ignore_quiet_hours=True,  # checked above, for the whole run
            reminder_id=reminder_of(item) if confirm else None,
            batch=str(item.data["batch"]) if item.data.get("batch") else None,
            on_accepted=accepted,
        )

    def _finish(self, item: Scheduled, sid: str, now: datetime) -> None:
        self._settle(item, "sent", now, {"sid": sid})

    def _end(self, item: Scheduled, state: str, now: datetime, reason: str) -> None:
        self._settle(item, state, now, {"error": reason})
        if item.data.get("confirm"):
            self._reminders.settle(reminder_of(item), "cancelled" if state == "cancelled" else state, now)

    def _settle(self, item: Scheduled, state: str, now: datetime, info: dict[str, Any]) -> None:
        current: Scheduled | None = item
        claim = item.data.get("claim")
        while current is not None and current.data.get("claim") == claim and current.state == "sending":
            stored = self._store.scheduled.put(replace(current, state=state, data={**current.data, **info}), current)
            if stored is not None:
                self._tell(stored, now)
                return
            current = self._store.scheduled.get(item.id)
        log.warning("scheduled %s changed hands before it could be marked %s", item.id, state)

    def _tell(self, item: Scheduled, now: datetime) -> None:
        self._notices.tell(
            f"scheduled:{item.id}", f"{item.state}-{item.version}", [item.desk], KIND, self.to_json(item), now
        )
        batch = item.data.get("batch")
        if batch:
            self._batches.changed(owner(item), str(batch), now)

    def to_json(self, item: Scheduled) -> dict[str, Any]:
        d = item.data
        return {
            "id": item.id,
            "status": item.state,
            "sendAt": iso(item.send_at),
            "goesAt": iso(self.quiet.next_allowed(item.send_at)),
            "to": d.get("to"),
            "body": d.get("body"),
            "confirm": bool(d.get("confirm")),
            "by": d.get("by"),
            "sid": d.get("sid"),
            "error": d.get("error"),
            "batch": d.get("batch"),
            "createdAt": iso(item.created_at),
        }


def reminder_of(item: Scheduled) -> str:
    """The reminder an item sends: its own id, or the earlier reminder a "Remind again" sends once more."""
    return str(item.data.get("reminder") or item.id)
