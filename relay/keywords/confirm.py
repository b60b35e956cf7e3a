"""`confirm`: answers to a reminder sent with "confirm": true. YES is Twilio's opt-in word, so C, Y or CONFIRM."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from relay.clock import iso
from relay.keywords import HandlerContext, KeywordHandler, KeywordMessage, Outcome
from relay.store import Event, StatusRecord

CONFIRM_WORDS = frozenset({"C", "Y", "CONFIRM"})
DECLINE_WORDS = frozenset({"N", "NO"})
CONFIRMED_REPLY = "Thanks, your appointment is confirmed"


def create(context: HandlerContext) -> KeywordHandler:
    store, outbox = context.store, context.outbox
    keep = timedelta(days=context.settings.retention_days)

    def settle(key: str, sid: str, web_app_id: str, state: str, message: KeywordMessage) -> Callable[[], None]:
        def after() -> None:
            answer_sid = message.params.get("MessageSid")
            payload = {"MessageSid": sid, "state": state, "answerSid": answer_sid, "at": iso(message.at)}
            store.kv_put("reminder-state", sid, {"state": state}, message.at + keep)
            store.kv_delete("reminder", key)
            # The store records events only with a message or a status; the answer is a status of the reminder.
            record = StatusRecord(sid, f"reminder-{state}", None, None, message.at)
            event = store.add_status(record, Event(web_app_id, "reminder", payload, message.at))
            if event is not None:
                outbox.publish(event)

        return after

    def confirm(message: KeywordMessage, state: Mapping[str, Any]) -> Outcome | None:
        if message.word not in CONFIRM_WORDS | DECLINE_WORDS:
            return None
        key = f"{message.our_side}|{message.phone}"
        pending = store.kv_get("reminder", key, message.at)
        if not pending:
            return None
        answer = "confirmed" if message.word in CONFIRM_WORDS else "declined"
        after = settle(key, str(pending["sid"]), str(pending["webAppId"]), answer, message)
        reply = CONFIRMED_REPLY if answer == "confirmed" else None
        # Not handled: the answer still shows in the desk's conversation, next to the reminder it settles.
        return Outcome(reply=reply, handled=False, after=after)

    return confirm
