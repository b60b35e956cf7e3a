"""Who gets a reply: a desk alias typed first (`#B ...`), else the conversation's owner desk, else unrouted.

Ownership does not expire: a reply next week still reaches the desk that texted. An alias moves ownership.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from relay.directory import DeskDirectory
from relay.ownership import JUST_BEFORE, Ownership
from relay.store import UNROUTED
from relay.store.owners import Owner

ALIAS_PREFIX = re.compile(r"^\s*#([A-Za-z0-9]{1,4})(?=$|[\s:,.;!?-])[\s:,.;!?-]*")


@dataclass(frozen=True)
class Resolution:
    audience: str  # a desk id, or UNROUTED
    display_body: str
    by_alias: bool
    owner: Owner | None  # the conversation's row as it was before this message
    alias: str = ""


class Router:
    def __init__(self, ownership: Ownership, directory: DeskDirectory) -> None:
        self._ownership = ownership
        self._directory = directory

    def resolve(self, phone: str, our_sides: list[str], body: str) -> Resolution:
        owner = self._ownership.current(phone, our_sides)
        match = ALIAS_PREFIX.match(body)
        desk = self._directory.by_alias(match.group(1)) if match else None
        if match and desk is not None:
            return Resolution(desk.id, body[match.end() :], True, owner, match.group(1).upper())
        return Resolution(self._ownership.live_owner(owner) or UNROUTED, body, False, owner)

    def settle(self, resolution: Resolution, phone: str, our_side: str, at: datetime) -> None:
        """After a new message is stored: an alias moves ownership (both desks see a line), a reply reopens."""
        owner = resolution.owner
        if resolution.by_alias and self._ownership.live_owner(owner) != resolution.audience:
            self._ownership.hand_over(
                phone, owner.our_side if owner else our_side, resolution.audience, at - JUST_BEFORE, reason="alias"
            )
        elif owner is not None and resolution.audience != UNROUTED:
            self._ownership.reopen(owner)
