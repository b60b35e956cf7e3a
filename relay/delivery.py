"""Twilio's StatusCallback: record each delivery status once and tell the desk that sent the message."""

from __future__ import annotations

import logging

from relay.clock import Clock, iso
from relay.errors import BadRequest, StoreUnavailable
from relay.inbound import SID
from relay.outbox import Outbox
from relay.reminders import Reminders
from relay.statuses import RANK
from relay.store import Event, StatusRecord, Store, StoreError
from relay.webhooks import WebhookRequest, WebhookValidator

log = logging.getLogger("relay.delivery")

NOBODY = "_nobody"


class Delivery:
    def __init__(
        self, store: Store, outbox: Outbox, validator: WebhookValidator, clock: Clock, reminders: Reminders
    ) -> None:
        self._reminders = reminders
        self._store = store
        self._outbox = outbox
        self._validator = validator
        self._clock = clock

    def receive(self, request: WebhookRequest) -> bool:
        """True when this (MessageSid, MessageStatus) is new. Dedupes on the pair, not the sid alone."""
        self._validator.validate(request)
        params = request.params
        sid = params.get("MessageSid", "")
        status = params.get("MessageStatus", "") or params.get("SmsStatus", "")
        if not SID.match(sid) or status not in RANK:
            raise BadRequest("A status callback needs MessageSid and a known MessageStatus.", code="invalid_webhook")
        now = self._clock.now()
        try:
            message = self._store.get_message(sid)
            audience = message.web_app_id if message else NOBODY
            payload = {
                "MessageSid": sid,
                "MessageStatus": status,
                "ErrorCode": params.get("ErrorCode") or None,
                "ErrorMessage": params.get("ErrorMessage") or None,
                "webAppId": audience,
                "at": iso(now),
            }
            record = StatusRecord(sid, status, payload["ErrorCode"], payload["ErrorMessage"], now)
            event = self._store.add_status(record, Event(audience, "status", payload, now))
        except StoreError:
            raise StoreUnavailable("The message store is unavailable; Twilio should retry.") from None
        if event is None:
            return False
        if audience == NOBODY:
            log.info("status for a message we did not send here: sid=%s status=%s", sid, status)
            self._store.mark_published(event)
        else:
            self._outbox.publish(event)
        reminder = message.payload.get("reminderId") if message else None
        if isinstance(reminder, str):
            try:
                self._reminders.delivery(reminder, status, now)
            except StoreError:
                log.exception("reminder %s not updated for status %s", reminder, status)
        return True
