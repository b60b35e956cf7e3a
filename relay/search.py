"""Finding a conversation: by the patient's name, their number however it is typed, or the words of a message,
among what the session's desk may read, and in the unrouted list by what that list shows (name, number, the
last message).

Results are ranked: the very number first, then names, then part of a number, then messages in the store's
order (relevance on SQLite, newest first on Table Storage); each says what matched, with the matched words as
offsets into a short plain-text snippet (UTF-16 code units, as JavaScript strings count), never as markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.clock import iso
from relay.conversations import Conversations
from relay.directory import DeskDirectory
from relay.errors import BadRequest
from relay.ownership import Ownership, Visibility
from relay.phones import as_typed
from relay.settings import Settings
from relay.store import UNROUTED, Store
from relay.store.search import MAX_WORDS, TextHit, fold, words

MAX_QUERY = 200
MAX_RESULTS = 50
SNIPPET = 120  # characters of a message shown around its first match
LEAD = 30  # of them before that match
UNROUTED_ORDER = 2 * MAX_RESULTS  # an unrouted last message ranks after every stored hit
_NUMBERISH = re.compile(r"[+\d\s().\-]+")
_WORD = re.compile(r"\w+")

# The order of kinds of match, best first.
EXACT_NUMBER, NAME, PART_OF_NUMBER, MESSAGE = range(4)


@dataclass(frozen=True)
class _Found:
    kind: int
    order: int  # within the kind: the store's rank for messages
    match: dict[str, Any]


class Search:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        conversations: Conversations,
        ownership: Ownership,
        directory: DeskDirectory,
    ) -> None:
        self._settings = settings
        self._store = store
        self._conversations = conversations
        self._ownership = ownership
        self._directory = directory

    def conversations(self, desk: str, raw: str) -> list[dict[str, Any]]:
        """The list's conversation JSON, plus `unrouted` and `match`, best first."""
        query = raw.strip()
        if len(query) > MAX_QUERY or not query.isprintable():
            raise BadRequest(f"'q' must be printable text of at most {MAX_QUERY} characters.", code="invalid_query")
        mine = {c["phone"]: c for c in self._conversations.of_desk(desk)}
        unrouted = {c["phone"]: c for c in self._conversations.unrouted() if c["phone"] not in mine}
        listed = {**unrouted, **mine}
        best: dict[str, _Found] = {}

        def offer(phone: str, found: _Found | None) -> None:
            if found is not None and (
                phone not in best or (found.kind, found.order) < (best[phone].kind, best[phone].order)
            ):
                best[phone] = found

        number = _number_match(query, self._settings.allowed_countries)
        terms = words(query)[:MAX_WORDS]
        for phone, c in listed.items():
            offer(phone, number(phone) if number else None)
            offer(phone, _name_match(terms, (c.get("contact") or {}).get("name")))
        for phone, c in unrouted.items():
            last = c["lastMessage"]
            if _matches(terms, last["body"]):
                offer(phone, _message_match(terms, last["sid"], last["body"], last["at"], UNROUTED_ORDER))
        for order, hit in enumerate(self._visible_hits(desk, query, mine)):
            offer(hit.phone, _message_match(terms, hit.sid, hit.body, iso(hit.created_at), order))
        ranked = sorted(best.items(), key=lambda kv: (kv[1].kind, kv[1].order, _negated(listed[kv[0]]["lastAt"])))
        return [{**listed[p], "unrouted": p in unrouted, "match": f.match} for p, f in ranked[:MAX_RESULTS]]

    def _visible_hits(self, desk: str, query: str, mine: dict[str, Any]) -> list[TextHit]:
        """Message hits in the desk's conversations that the desk may read: its own, and the rest of a phone's
        history as far as its ownership lets it (a transferred conversation's earlier messages; not what came
        after a desk handed one on)."""
        if not mine or not words(query):
            return []
        audiences = [d.id for d in self._directory.all()] + [UNROUTED, desk]
        hits = self._store.search.find(query, audiences, list(mine), MAX_RESULTS * 2)
        seen: dict[str, Visibility] = {}
        visible = []
        for hit in hits:
            if hit.web_app_id != desk:
                window = seen.get(hit.phone) or seen.setdefault(hit.phone, self._ownership.visibility(desk, hit.phone))
                if not window.allowed or (window.until is not None and hit.created_at > window.until):
                    continue
            visible.append(hit)
        return visible


def _number_match(query: str, regions: frozenset[str]) -> Callable[[str], _Found | None] | None:
    """A matcher for a query that looks like a number: the number itself, or a run of its digits."""
    digits = "".join(c for c in query if c.isascii() and c.isdigit())
    if not _NUMBERISH.fullmatch(query) or len(digits) < 3:
        return None
    exact = as_typed(query, regions)

    def match(phone: str) -> _Found | None:
        if phone == exact:
            return _Found(EXACT_NUMBER, 0, {"in": "number", "text": phone, "marks": [[1, len(phone)]]})
        at = phone.find(digits)
        if at < 0:
            return None
        return _Found(PART_OF_NUMBER, 0, {"in": "number", "text": phone, "marks": [[at, at + len(digits)]]})

    return match


def _name_match(terms: list[str], name: str | None) -> _Found | None:
    if not name or not terms or not _matches(terms, name, anywhere=True):
        return None
    return _Found(NAME, 0, {"in": "name", "text": name, "marks": _marks(name, terms, anywhere=True)})


def _message_match(terms: list[str], sid: str, body: str, at: str, order: int) -> _Found:
    text, marks = _snippet(body, terms)
    return _Found(MESSAGE, order, {"in": "message", "sid": sid, "text": text, "marks": marks, "at": at})


def _matches(terms: list[str], text: str, *, anywhere: bool = False) -> bool:
    """Every term is a word of `text`, the last may be a word's start (any term, for names)."""
    have = words(text)
    last = len(terms) - 1
    return bool(terms) and all(
        any(w == t or ((anywhere or i == last) and w.startswith(t)) for w in have) for i, t in enumerate(terms)
    )


def _marks(text: str, terms: list[str], *, anywhere: bool = False) -> list[list[int]]:
    """Where the terms' words are in `text`, as [start, end) in UTF-16 code units."""
    exact, starts = set(terms), terms if anywhere else terms[-1:]
    spans = []
    for m in _WORD.finditer(text):
        w = fold(m.group())
        if w in exact or any(w.startswith(t) for t in starts):
            spans.append([_utf16(text, m.start()), _utf16(text, m.end())])
    return spans


def _snippet(body: str, terms: list[str]) -> tuple[str, list[list[int]]]:
    """Up to SNIPPET characters of `body` around its first match, with "…" where it was cut."""
    first = next((m.start() for m in _WORD.finditer(body) if _marks(m.group(), terms)), 0)
    space = body.rfind(" ", max(0, first - 2 * LEAD), first - LEAD) + 1  # start at a word when one is near
    start = 0 if first <= LEAD else space or first - LEAD
    end = min(len(body), start + SNIPPET)
    text = ("…" if start else "") + body[start:end] + ("…" if end < len(body) else "")
    return text, _marks(text, terms)


def _utf16(text: str, index: int) -> int:
    return len(text[:index].encode("utf-16-le")) // 2


def _negated(at: str) -> str:
    """Newest first within a rank: ISO times sort as text, so invert each digit."""
    return at.translate(str.maketrans("0123456789", "9876543210"))
