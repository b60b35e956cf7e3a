"""The SMS stopwatch: GO starts it, HALT stops it, TIME tells the time; each sender has their own.

The classic version used START and STOP, but those are Twilio's opt-in and opt-out words: a STOP would
unsubscribe the sender, so this one listens for GO and HALT instead. Enable with KEYWORD_HANDLERS=stopwatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.keywords import HandlerContext, KeywordHandler, KeywordMessage, Outcome


def _seconds(value: float) -> str:
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}:{seconds:02d}"


def create(context: HandlerContext) -> KeywordHandler:
    def stopwatch(message: KeywordMessage, state: Mapping[str, Any]) -> Outcome | None:
        now = message.at.timestamp()
        started = state.get("startedAt")
        if message.word == "GO":
            return Outcome(reply="Stopwatch started. Text HALT to stop, TIME for the time.", state={"startedAt": now})
        if message.word == "HALT":
            if started is None:
                return Outcome(reply="The stopwatch is not running. Text GO to start it.")
            elapsed = now - float(started)
            return Outcome(reply=f"Stopped at {_seconds(elapsed)}.", state={"elapsed": elapsed})
        if message.word == "TIME":
            if started is not None:
                return Outcome(reply=f"Running: {_seconds(now - float(started))}.")
            if "elapsed" in state:
                return Outcome(reply=f"Stopped at {_seconds(float(state['elapsed']))}.")
            return Outcome(reply="The stopwatch is not running. Text GO to start it.")
        return None

    return stopwatch
