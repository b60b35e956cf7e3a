"""Automatic answers (a reminder's "Thanks, confirmed", the HELP text): stored in the thread and told to the desk.

The answer goes back to Twilio as TwiML (or, polling, through the REST API), so it has no Twilio sid of its own
here; it is stored under one made from the inbound message's sid, so it is saved at most once per message.
Its stored direction is `automatic`, which leaves the conversation's unread count alone; the API shows it as an
outbound message with `"automatic": {"reason"}` and no `sentBy`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from relay.clock import iso
from relay.outbox import Outbox
from relay.store import Event, MessageRecord, Store, StoreError

log = logging.getLogger("relay.automatic")

DIRECTION = "automatic"
PREFIX = "AU"
AFTER = timedelta(microseconds=1)  # just after the message it answers, so the thread keeps their order


def automatic_sid(inbound_sid: str) -> str:
    return PREFIX + inbound_sid[2:]


class AutomaticAnswers:
    def __init__(self, store: Store, outbox: Outbox) -> None:
        self._store = store
        self._outbox = outbox

    def record(
        self,
        inbound_sid: str,
        phone: str,
        our_side: str,
        audience: str,
        reply: str,
        reason: str,
        *,
        handled: bool,
        at: datetime,
    ) -> None:
        """`handled`: the message it answers was kept from the live feed, so the answer is too."""
        sid = automatic_sid(inbound_sid)
        when = at + AFTER
        payload: dict[str, Any] = {
            "MessageSid": sid,
            "From": our_side,
            "To": phone,
            "Body": reply,
            "Status": None,
            "webAppId": audience,
            "sentAt": iso(when),
            "direction": "outbound",
            "media": [],
            "reminder": None,
            "sentBy": None,
            "automatic": {"reason": reason, "inReplyTo": inbound_sid},
        }
        message = MessageRecord(sid, DIRECTION, phone, our_side, audience, reply, when, payload)
        kind = "handled" if handled else "outbound"
        try:
            event = self._store.save_message(message, Event(audience, kind, payload, when))
        except StoreError:
            log.exception("automatic answer to %s not stored", inbound_sid)
            return
        if event is not None:
            self._outbox.publish(event)
