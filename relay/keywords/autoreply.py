"""`autoreply`: when a text lands unrouted and no desk is signed in, answer once per conversation per TTL.

"Signed in" means a desk session token is still live: every grant or renewal stores a `presence` entry that
expires with the token (see relay/sessions.py), so no entry means nobody can be listening.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.clock import iso
from relay.keywords import HandlerContext, KeywordHandler, KeywordMessage, Outcome
from relay.store import UNROUTED

PRESENCE = ("presence", "desks")


def create(context: HandlerContext) -> KeywordHandler:
    store, text = context.store, context.settings.autoreply_text

    def autoreply(message: KeywordMessage, state: Mapping[str, Any]) -> Outcome | None:
        if message.audience != UNROUTED or state.get("repliedAt"):
            return None
        if store.kv_get(*PRESENCE, message.at) is not None:
            return None
        # Not handled: the text still waits in the unrouted list for a desk to claim.
        return Outcome(reply=text, state={"repliedAt": iso(message.at)}, handled=False)

    return autoreply
