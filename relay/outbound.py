"""Sending: every check before Twilio is called, one Twilio call per request, and a record of the route."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from relay.clock import Clock, iso
from relay.errors import BadRequest, Conflict, OwnedElsewhere, RelayError, TooManyRequests
from relay.outbox import Outbox
from relay.ownership import JUST_BEFORE, UNREAD, Ownership, Unread
from relay.phones import mask, normalise, require_allowed_region, require_allowed_type
from relay.quiet import QuietHours, zone
from relay.reminders import Reminders
from relay.settings import Settings
from relay.store import Event, MessageRecord, Store, StoreError
from relay.store.owners import Owner
from relay.tokens import Staff
from relay.twilio_gateway import SentMessage, TwilioGateway
from relay.uploads import Upload, Uploads

log = logging.getLogger("relay.outbound")

MAX_BODY = 1600
MAX_MEDIA = 10
IDEMPOTENCY_TTL = timedelta(hours=24)
NEW_RECIPIENT_WINDOW = timedelta(hours=1)
ALL_DESKS = "*"


@dataclass(frozen=True)
class Limit:
    """At most `most` hits of (namespace, key) within `window`; past it, a 429 with `refusal` and `code`."""

    namespace: str
    key: str
    window: timedelta
    most: int
    refusal: str
    code: str | None = None


@dataclass(frozen=True)
class SendRequest:
    web_app_id: str
    to: object
    body: object
    media_urls: object = None
    media_ids: object = None  # pictures uploaded to POST /api/media by this desk
    confirm: object = False
    idempotency_key: str | None = None
    base_url: str = ""
    sent_by: Staff | None = None
    take_over: object = False
    ignore_quiet_hours: object = False
    reminder_id: str | None = None  # a scheduled reminder keeps its item's id; else the message's sid
    batch: str | None = None  # from an imported list: exempt from the per-minute limit, never from the daily cap
    on_accepted: Callable[[SentMessage], None] | None = None  # right after Twilio accepted it, before anything else


@dataclass(frozen=True)
class SendResult:
    sid: str
    status: str
    to: str
    from_: str | None

    def to_json(self) -> dict[str, Any]:
        return {"sid": self.sid, "status": self.status, "to": self.to, "from": self.from_}


def validate_body(body: object, *, with_media: bool = False) -> str:
    """A picture may go without a caption; a text must say something."""
    if with_media and body in (None, ""):
        return ""
    if not isinstance(body, str) or not body.strip():
        raise BadRequest("'body' must be a non-empty string.", code="invalid_body")
    if len(body) > MAX_BODY:
        raise BadRequest(f"'body' is {len(body)} characters; the limit is {MAX_BODY}.", code="invalid_body")
    return body


def validate_media(media: object) -> list[str]:
    if media is None:
        return []
    if not isinstance(media, list) or len(media) > MAX_MEDIA:
        raise BadRequest(f"'mediaUrl' must be a list of at most {MAX_MEDIA} https URLs.", code="invalid_media")
    for url in media:
        if not isinstance(url, str) or len(url) > 2000 or not _https_url(url):
            raise BadRequest("'mediaUrl' entries must be https URLs.", code="invalid_media")
    return list(media)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_NETLOC = re.compile(r"[A-Za-z0-9.:\[\]-]+")  # docs/openapi.yaml's mediaUrl pattern says the same


def _https_url(url: str) -> bool:
    """An https URL on a well-formed host, as Twilio requires (21620 otherwise): `https://` alone, a space or an
    underscore in the host would reach Twilio only to be refused."""
    if not url.isascii() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    host = parts.hostname or ""
    if parts.scheme != "https" or not host or not _NETLOC.fullmatch(parts.netloc):  # no user@, no %zone
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return all(_HOST_LABEL.match(label) for label in host.removesuffix(".").split("."))
    return True


class Outbound:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        gateway: TwilioGateway,
        outbox: Outbox,
        clock: Clock,
        ownership: Ownership,
        reminders: Reminders,
        uploads: Uploads,
    ) -> None:
        self._reminders = reminders
        self._uploads = uploads
        self._quiet = QuietHours(zone(settings.relay_timezone), settings.quiet_hours)
        self._settings = settings
        self._store = store
        self._gateway = gateway
        self._outbox = outbox
        self._clock = clock
        self._ownership = ownership

    def check(self, request: SendRequest, now: datetime) -> tuple[str, str, list[str], list[Upload]]:
        """The request's own rules (the number, its country, opt-out, the fields): now, or again at send time."""
        to = normalise(request.to)
        if to == self._settings.twilio_from_number:
            # Twilio refuses it (21266); refusing it here keeps an invalid request from reaching Twilio at all.
            raise BadRequest("'to' is the relay's own number.", code="invalid_number")
        media = validate_media(request.media_urls)
        if any(self._uploads.is_ours(url) for url in media):
            raise BadRequest("A picture uploaded here goes in 'mediaIds', not 'mediaUrl'.", code="invalid_media")
        uploads = self._uploads.resolve(request.web_app_id, request.media_ids)
        if len(media) + len(uploads) > MAX_MEDIA:
            raise BadRequest(f"At most {MAX_MEDIA} pictures in one message.", code="invalid_media")
        body = validate_body(request.body, with_media=bool(media or uploads))
        for name, value in (("confirm", request.confirm), ("takeOver", request.take_over)):
            if not isinstance(value, bool):
                raise BadRequest(f"'{name}' must be true or false.", code=f"invalid_{_snake(name)}")
        if not isinstance(request.ignore_quiet_hours, bool):
            raise BadRequest("'ignoreQuietHours' must be true or false.", code="invalid_ignore_quiet_hours")
        require_allowed_region(to, self._settings.allowed_countries)
        require_allowed_type(to, self._settings.allowed_number_types)
        if self._store.kv_get("optout", to, now) is not None:
            raise Conflict("This number has opted out (replied STOP); it must text START first.", code="opted_out")
        return to, body, media, uploads

    def send(self, request: SendRequest) -> SendResult:
        now = self._clock.now()
        to, body, media, uploads = self.check(request, now)
        self._quiet.check_now(now, request.ignore_quiet_hours is True)
        row = self._ownership.current(to, [self._settings.our_side])
        owner = self._ownership.live_owner(row)
        if owner is not None and owner != request.web_app_id and not request.take_over:
            desk = self._ownership.desk_json(owner)
            raise OwnedElsewhere(
                f"This patient's conversation is with {desk['name']}. Take it over to answer from your desk "
                f"(both desks will see that it moved), or ask {desk['name']} to transfer it.",
                owner=desk,
            )
        idem_key = f"{request.web_app_id}:{request.idempotency_key}" if request.idempotency_key else None
        if idem_key:
            earlier = self._claim_idempotency(idem_key, now)
            if earlier is not None:
                return earlier
        callback = f"{request.base_url}/api/sms_status" if request.base_url else None
        try:
            self._take_places(request.web_app_id, to, now, batch=request.batch is not None)
            signed = self._uploads.signed_urls(request.web_app_id, uploads)  # minted now, stored nowhere
            sent = self._gateway.send(to, body, media + signed, callback)
        except Exception:
            # The key was not used: a retry (after Retry-After, say) must be able to send.
            if idem_key:
                self._store.kv_delete("idem", idem_key)
            raise
        log.info("sent: sid=%s to=%s", sent.sid, mask(to))
        if request.on_accepted is not None:
            try:
                request.on_accepted(sent)
            except Exception:  # Twilio has accepted it: recording it below must still happen
                log.exception("after-accept step failed: sid=%s", sent.sid)
        return self.record(request, sent, now, idem_key, owner, uploads, seen=row)

    def record(
        self,
        request: SendRequest,
        sent: SentMessage,
        now: datetime,
        idem_key: str | None = None,
        owner: str | None = None,
        uploads: list[Upload] | None = None,
        *,
        seen: Owner | Unread | None = UNREAD,
    ) -> SendResult:
        """What follows Twilio's acceptance; also for a message found in Twilio's list after a crash."""
        result = SendResult(sent.sid, sent.status, sent.to, sent.from_)
        media = validate_media(request.media_urls)
        if uploads is None:
            uploads = self._uploads.resolve(request.web_app_id, request.media_ids)
        body = validate_body(request.body, with_media=bool(media or uploads))
        entries = [{"url": url, "contentType": ""} for url in media] + [u.to_json() for u in uploads]
        self._after_send(request, result, sent.messaging_service_sid, body, entries, now, idem_key, owner, seen)
        return result

    def _claim_idempotency(self, idem_key: str, now: datetime) -> SendResult | None:
        if self._store.kv_insert("idem", idem_key, {"state": "pending"}, now + IDEMPOTENCY_TTL, now):
            return None
        earlier = self._store.kv_get("idem", idem_key, now) or {}
        if earlier.get("state") != "done":
            raise Conflict("A request with this Idempotency-Key is still in progress.", code="request_in_progress")
        return SendResult(earlier["sid"], earlier["status"], earlier["to"], earlier.get("from"))

    def _take_places(self, web_app_id: str, to: str, now: datetime, *, batch: bool) -> None:
        """A place under each limit, or 429 and none. A batch is already paced (SEND_RATE_PER_SECOND) and was
        asked for once, so only the daily cap holds it; SMS pumping texts many numbers once each, so numbers never
        texted before have their own caps, per desk and in all."""
        per_minute, per_day = self._settings.send_limit_per_minute, self._settings.send_limit_per_day
        minute = Limit(
            "send",
            web_app_id,
            timedelta(minutes=1),
            per_minute,
            f"This desk has sent {per_minute} messages in the last minute.",
        )
        day = Limit(
            "send", web_app_id, timedelta(days=1), per_day, f"This desk has sent {per_day} messages in the last day."
        )
        limits = [day] if batch else [minute, day]
        new_number = self._store.kv_get("recipient", to, now) is None
        if new_number:
            desk = self._settings.new_recipient_limit_per_hour
            everyone = self._settings.new_recipient_limit_per_hour_all_desks
            limits += [
                Limit(
                    "new-recipient",
                    web_app_id,
                    NEW_RECIPIENT_WINDOW,
                    desk,
                    f"This desk has texted {desk} new numbers in the last hour.",
                    "new_recipient_limit",
                ),
                Limit(
                    "new-recipient",
                    ALL_DESKS,
                    NEW_RECIPIENT_WINDOW,
                    everyone,
                    f"The desks have texted {everyone} new numbers in the last hour.",
                    "new_recipient_limit",
                ),
            ]
        taken: dict[tuple[str, str], str] = {}
        try:
            for limit in limits:
                self._take(limit, now, taken)
        except TooManyRequests:
            for (namespace, key), hit in taken.items():
                self._store.drop_hit(namespace, key, hit)
            raise
        if new_number:
            self._store.kv_put("recipient", to, {}, now + timedelta(days=self._settings.retention_days))

    def _take(self, limit: Limit, now: datetime, taken: dict[tuple[str, str], str]) -> None:
        """The hit is written first and then counted with everyone's, so sends side by side, in this process or on
        other instances, never pass a cap together; when they race, both may be refused, and one retries."""
        place = (limit.namespace, limit.key)
        if place not in taken:
            taken[place] = self._store.record_hit(limit.namespace, limit.key, now)
        count, oldest = self._store.count_hits(limit.namespace, limit.key, now - limit.window)
        if count > limit.most:  # this send's own hit is one of them
            retry = int(((oldest or now) + limit.window - now).total_seconds()) + 1
            raise TooManyRequests(limit.refusal, retry_after=retry, code=limit.code)

    def _after_send(
        self,
        request: SendRequest,
        result: SendResult,
        service_sid: str | None,
        body: str,
        media: list[dict[str, str]],
        now: datetime,
        idem_key: str | None,
        owner: str | None,
        seen: Owner | Unread | None,
    ) -> None:
        """Twilio has accepted the message: from here on nothing may turn into an error for the caller."""
        our_side = service_sid or result.from_ or self._settings.our_side
        payload: dict[str, Any] = {
            "MessageSid": result.sid,
            "From": result.from_,
            "To": result.to,
            "Body": body,
            "Status": result.status,
            "webAppId": request.web_app_id,
            "sentAt": iso(now),
            "direction": "outbound",
            "media": media,
            "reminder": "sent" if request.confirm else None,
            "reminderId": (request.reminder_id or result.sid) if request.confirm else None,
            "sentBy": request.sent_by.to_json() if request.sent_by else None,
        }
        message = MessageRecord(result.sid, "outbound", result.to, our_side, request.web_app_id, body, now, payload)
        try:
            self._own(request, self._settings.our_side, owner, now, seen)
            event = self._store.save_message(message, Event(request.web_app_id, "outbound", payload, now))
            if request.confirm:
                reminder = request.reminder_id or result.sid
                self._reminders.sent(reminder, result.sid, result.to, our_side, request.web_app_id, now)
            if idem_key:
                self._store.kv_put("idem", idem_key, {"state": "done", **result.to_json()}, now + IDEMPOTENCY_TTL)
        except StoreError:
            log.exception("sent message not recorded: sid=%s", result.sid)
            return
        if event is not None:
            self._outbox.publish(event)

    def _own(
        self, request: SendRequest, our_side: str, owner: str | None, now: datetime, seen: Owner | Unread | None
    ) -> None:
        """The sender's desk owns the conversation from now on; taking it from another desk says so in both threads."""
        desk = request.web_app_id
        if owner is not None and owner != desk:
            self._ownership.hand_over(
                normalise(request.to), our_side, desk, now - JUST_BEFORE, reason="takeover", by=request.sent_by
            )
            return
        try:
            self._ownership.take(normalise(request.to), our_side, desk, now, seen=seen)
        except RelayError as exc:
            log.warning("ownership not recorded after a send: %s", exc.message)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
