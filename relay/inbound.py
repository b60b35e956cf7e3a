"""The inbound pipeline, shared by the webhook and the poller: validate, store once, route, publish."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from twilio.twiml.messaging_response import MessagingResponse

from relay.automatic import AutomaticAnswers
from relay.clock import Clock, iso
from relay.errors import BadRequest, StoreUnavailable
from relay.keywords import Decision, KeywordMessage, Keywords
from relay.notices import Notices
from relay.outbox import Outbox
from relay.phones import mask
from relay.reminders import Reminders
from relay.routing import Router
from relay.store import Event, MessageRecord, Store, StoreError
from relay.webhooks import WebhookRequest, WebhookValidator

log = logging.getLogger("relay.inbound")

SID = re.compile(r"^[A-Z]{2}[0-9a-zA-Z]{32}$")
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@dataclass(frozen=True)
class InboundResult:
    sid: str
    audience: str
    duplicate: bool
    reply: str | None = None  # a keyword handler's answer; the poller sends it, the webhook returns it as TwiML

    @property
    def twiml(self) -> str:
        if self.reply is None:
            return EMPTY_TWIML
        response = MessagingResponse()
        response.message(self.reply)
        return str(response)


def keyword(body: str) -> str:
    return body.strip().upper()


class Inbound:
    def __init__(
        self,
        store: Store,
        router: Router,
        outbox: Outbox,
        validator: WebhookValidator,
        clock: Clock,
        ttl: timedelta,
        keywords: Keywords | None = None,
        reminders: Reminders | None = None,
        automatic: AutomaticAnswers | None = None,
        notices: Notices | None = None,
    ) -> None:
        self._notices = notices
        self._store = store
        self._router = router
        self._outbox = outbox
        self._validator = validator
        self._clock = clock
        self._ttl = ttl
        self._keywords = keywords
        self._reminders = reminders
        self._automatic = automatic

    def receive(self, request: WebhookRequest) -> InboundResult:
        self._validator.validate(request)
        return self.ingest(request.params)

    def ingest(self, params: Mapping[str, str]) -> InboundResult:
        """Durable write first; a failed publish leaves the event in the outbox and still succeeds."""
        sid = params.get("MessageSid", "")
        phone = params.get("From", "")
        if not SID.match(sid) or not phone:
            raise BadRequest("A Twilio message webhook needs MessageSid and From.", code="invalid_webhook")
        now = self._clock.now()
        body = params.get("Body", "")
        our_sides = [params.get("MessagingServiceSid", ""), params.get("To", "")]
        our_side = next((s for s in our_sides if s), "")
        try:
            opt, changed = self._record_opt_out(phone, body, params.get("OptOutType", ""), now)
            resolution = self._router.resolve(phone, our_sides, body)
            view = KeywordMessage(params, our_side, phone, resolution.audience, now)
            decision = self._keywords.decide(view) if self._keywords else None
            payload: dict[str, object] = dict(params)
            payload.update(
                webAppId=resolution.audience,
                receivedAt=iso(now),
                displayBody=resolution.display_body,
                media=media_entries(sid, params),
            )
            if decision:
                payload.update(handledBy=decision.name, autoReply=decision.outcome.reply)
            kind = "handled" if decision and decision.outcome.handled else "inbound"
            message = MessageRecord(
                sid=sid,
                direction="inbound",
                phone=phone,
                our_side=our_side,
                web_app_id=resolution.audience,
                body=body,
                created_at=now,
                payload=payload,
            )
            event = self._store.save_message(message, Event(resolution.audience, kind, payload, now))
            if event is None:
                log.info("duplicate webhook ignored: sid=%s", sid)
                return InboundResult(sid, resolution.audience, duplicate=True)
            self._router.settle(resolution, phone, our_side, now)
        except StoreError as exc:
            log.error("inbound not stored: sid=%s from=%s reason=%s", sid, mask(phone), exc)
            raise StoreUnavailable("The message store is unavailable; Twilio should retry.") from None
        published = self._outbox.publish(event)  # before the log line, which would only delay the desk
        log.info(
            "inbound stored: sid=%s from=%s audience=%s published=%s",
            sid,
            mask(phone),
            resolution.audience,
            "yes" if published else "deferred",
        )
        if opt is not None and changed:
            self._tell_opt_out(phone, sid, opt, resolution.audience, now)
        if opt is True and self._reminders is not None:
            self._settle_opt_out(phone, sid, now)
        if decision is None:
            return InboundResult(sid, resolution.audience, duplicate=False)
        self._apply(decision, sid, now)
        reply = decision.outcome.reply
        if reply is not None and self._automatic is not None:
            handled, audience = decision.outcome.handled, resolution.audience
            self._automatic.record(sid, phone, our_side, audience, reply, decision.name, handled=handled, at=now)
        return InboundResult(sid, resolution.audience, duplicate=False, reply=reply)

    def _tell_opt_out(self, phone: str, sid: str, opted_out: bool, audience: str, now: datetime) -> None:
        """The desk's composer closes (or opens again) at once, not at the next failed send."""
        if self._notices is None:
            return
        payload = {"phone": phone, "optedOut": opted_out, "at": iso(now)}
        self._notices.tell(f"optout:{phone}", sid, [audience], "optout", payload, now)

    def _settle_opt_out(self, phone: str, sid: str, now: datetime) -> None:
        assert self._reminders is not None
        try:
            self._reminders.opted_out(phone, now)
        except StoreError as exc:
            log.error("reminders of an opted-out number not updated: sid=%s reason=%s", sid, exc)

    def _apply(self, decision: Decision, sid: str, now: datetime) -> None:
        """Only for a new message, so a redelivery never answers twice; the message itself is already safe."""
        assert self._keywords is not None
        try:
            self._keywords.apply(decision, now)
        except StoreError as exc:
            log.error("keyword %s state not saved: sid=%s reason=%s", decision.name, sid, exc)

    def _record_opt_out(self, phone: str, body: str, opt_out_type: str, now: datetime) -> tuple[bool | None, bool]:
        """True for an opt-out, False for an opt-in, None for any other message; and whether that changed the
        number's standing (a "yes" from a number that never opted out changes nothing)."""
        word = keyword(body)
        kind = opt_out_type.upper()
        out = kind == "STOP" or word in OPT_OUT_WORDS
        if not out and not (kind == "START" or word in OPT_IN_WORDS):
            return None, False
        was = self._store.kv_get("optout", phone, now) is not None
        if out:
            self._store.kv_put("optout", phone, {"keyword": word or kind}, None)
        else:
            self._store.kv_delete("optout", phone)
        return out, was != out


def media_entries(sid: str, params: Mapping[str, str]) -> list[dict[str, str]]:
    count = params.get("NumMedia", "0")
    n = int(count) if count.isascii() and count.isdigit() and len(count) <= 2 else 0
    return [
        {"url": f"/api/media/{sid}/{i}", "contentType": params.get(f"MediaContentType{i}", "")}
        for i in range(min(n, 10))
        if params.get(f"MediaUrl{i}")
    ]
