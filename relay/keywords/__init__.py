"""Keyword conversations: small plug-ins that may answer an inbound text before (or instead of) a desk.

A handler is built once per process by `create(context)` and then called for each new inbound message with
that conversation's state. It returns None ("not mine") or an Outcome. The first handler in KEYWORD_HANDLERS
order that returns an Outcome wins. See docs/keywords.md.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from relay.clock import Clock
from relay.errors import SettingsError
from relay.outbox import Outbox
from relay.settings import Settings
from relay.store import Store, StoreError

log = logging.getLogger("relay.keywords")

# Twilio answers these itself (opt-out and opt-in); no handler may ever see them.
RESERVED_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "START", "YES", "UNSTOP"}
)
STATE_NAMESPACE = "keyword-state"
CORE = "confirm"  # reminders' answers are core now (relay.reminders); the old name is still accepted
BUILTINS = {
    "help": "relay.keywords.help",
    "autoreply": "relay.keywords.autoreply",
    "stopwatch": "examples.stopwatch",
}


@dataclass(frozen=True)
class KeywordMessage:
    """What a handler sees of an inbound text."""

    params: Mapping[str, str]  # the webhook form (or its polled equivalent)
    our_side: str  # the Messaging Service SID, else our number
    phone: str  # the sender, E.164
    audience: str  # the desk it is routed to, or UNROUTED
    at: datetime  # the relay's clock, so tests can move time

    @property
    def word(self) -> str:
        """The body as a keyword: trimmed and upper-cased, as Twilio matches its own keywords."""
        return self.params.get("Body", "").strip().upper()


@dataclass(frozen=True)
class Outcome:
    """A handler's answer. `state` replaces the conversation's state ({} clears it; None keeps it).

    `handled=True` keeps the message from the desks' live feed (it is still stored, and published on the
    `handled` topic); False passes it on as a normal inbound message. `after` runs once the message is known
    to be new (never for a redelivery), for side effects beyond the state."""

    reply: str | None = None
    state: dict[str, Any] | None = None
    handled: bool = True
    after: Callable[[], None] | None = None


class KeywordHandler(Protocol):
    def __call__(self, message: KeywordMessage, state: Mapping[str, Any]) -> Outcome | None: ...


@dataclass(frozen=True)
class HandlerContext:
    """What `create(context)` gets: enough to keep state, publish events and read settings."""

    settings: Settings
    store: Store
    outbox: Outbox
    clock: Clock


@dataclass(frozen=True)
class Decision:
    name: str
    outcome: Outcome
    key: str
    state: Mapping[str, Any]


class _StoredState(Mapping[str, Any]):
    """A conversation's state, read from the store only when a handler looks at it: most texts are no keyword,
    and on Table Storage every read is a billed round trip on the webhook's path."""

    def __init__(self, store: Store, key: str, at: datetime) -> None:
        self._store, self._key, self._at = store, key, at
        self._value: dict[str, Any] | None = None

    def _loaded(self) -> dict[str, Any]:
        if self._value is None:
            self._value = self._store.kv_get(STATE_NAMESPACE, self._key, self._at) or {}
        return self._value

    def __getitem__(self, name: str) -> Any:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


class Keywords:
    """The enabled handlers in precedence order, with per-conversation state in the store's KV."""

    def __init__(self, handlers: list[tuple[str, KeywordHandler]], store: Store, ttl: timedelta) -> None:
        self._handlers = handlers
        self._store = store
        self._ttl = ttl

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._handlers]

    def decide(self, message: KeywordMessage) -> Decision | None:
        """Side-effect free, so it may run before the message is known to be new."""
        if message.word in RESERVED_WORDS or message.params.get("OptOutType"):
            return None  # Twilio (Advanced Opt-Out included) has already answered these
        pair = f"{message.params.get('To', message.our_side)}|{message.phone}"
        for name, handler in self._handlers:
            key = f"{name}|{pair}"
            state = _StoredState(self._store, key, message.at)
            try:
                outcome = handler(message, state)
            except StoreError:
                raise  # the store, not the handler: the webhook answers 503 and Twilio retries, as before
            except Exception:
                log.exception("keyword handler %s failed; passing the message on", name)
                continue
            if outcome is not None:
                return Decision(name, outcome, key, state)
        return None

    def apply(self, decision: Decision, at: datetime) -> None:
        """Save the state (its expiry slides with each message the handler acts on), then the side effects."""
        state = decision.outcome.state if decision.outcome.state is not None else dict(decision.state)
        if state:
            self._store.kv_put(STATE_NAMESPACE, decision.key, state, at + self._ttl)
        else:
            self._store.kv_delete(STATE_NAMESPACE, decision.key)
        if decision.outcome.after is not None:
            decision.outcome.after()


def load(
    names: tuple[str, ...], context: HandlerContext, core: tuple[tuple[str, KeywordHandler], ...] = ()
) -> Keywords:
    """Built-in names, or a dotted module path with a `create(context)`; unknown names fail at start-up.

    `core` handlers come first whatever the setting says."""
    handlers: list[tuple[str, KeywordHandler]] = list(core)
    for name in (n for n in names if n != CORE):
        module_name = BUILTINS.get(name, name if "." in name else "")
        try:
            module = importlib.import_module(module_name) if module_name else None
        except ModuleNotFoundError as exc:
            if not exc.name or not module_name.startswith(exc.name):
                raise  # the module exists but a dependency of it is missing: say so
            module = None
        create = getattr(module, "create", None)
        if not callable(create):
            known = ", ".join(sorted([*BUILTINS, CORE]))
            raise SettingsError("KEYWORD_HANDLERS", f"unknown handler '{name}' (built in: {known}, or a module path)")
        handlers.append((name, create(context)))
    ttl = timedelta(hours=context.settings.conversation_ttl_hours)
    return Keywords(handlers, context.store, ttl)
