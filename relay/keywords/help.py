"""`help`: answers HELP or INFO with HELP_TEXT. Enable it only where Twilio's Advanced Opt-Out does not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.keywords import HandlerContext, KeywordHandler, KeywordMessage, Outcome

HELP_WORDS = frozenset({"HELP", "INFO"})


def create(context: HandlerContext) -> KeywordHandler:
    text = context.settings.help_text

    def help_(message: KeywordMessage, state: Mapping[str, Any]) -> Outcome | None:
        return Outcome(reply=text) if message.word in HELP_WORDS else None

    return help_
