"""The desks a relay serves: seeded from RELAY_DESKS, changed by an operator, read on every routed message.

Reads come from an in-process cache, because desks change a few times a year and are read on every webhook.
While the change feed is live (relay/desk_changes.py) the cache is kept until a change is announced, at most
TRUST_SECONDS; otherwise a change made on another instance is seen within CACHE_SECONDS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from relay.desk_changes import DeskChanges
from relay.desks import Desk, DeskRuleError, DeskSpec, check_alias, check_desk_id, clean_name, desk_id, generate_alias
from relay.errors import BadRequest, Conflict, NotFound
from relay.store import Store

CACHE_SECONDS = 2.0
TRUST_SECONDS = 300.0  # bounds an announcement lost with an instance that stopped before its next connect
T = TypeVar("T")
ALIASES = "desk-alias"


class DeskDirectory:
    def __init__(self, store: Store, specs: tuple[DeskSpec, ...], changes: DeskChanges | None = None) -> None:
        self._store = store
        self._specs = specs
        self._changes = changes
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[int, int] | None, list[Desk]] | None = None  # read at, feed epoch, desks

    def seed(self, now: datetime) -> None:
        """Create configured desks the store does not have yet; what an operator changed since stays changed."""
        known = {d.id for d in self._store.desks.all()}
        for spec in self._specs:
            if spec.id not in known:
                self._create(spec.name, spec.alias, now)
        self._forget()  # not announced: the broker is not connected yet, and this instance's probe tells the others

    def all(self) -> list[Desk]:
        """Archived ones too, in creation order."""
        epoch = self._changes.epoch() if self._changes else None  # before the read: a change during it counts
        with self._lock:
            cached = self._cached
        if cached is not None:
            age = time.monotonic() - cached[0]
            if epoch is not None and cached[1] is not None:  # read and asked on a live feed: until it moves on
                fresh = cached[1] == epoch and age < TRUST_SECONDS
            else:
                fresh = age < CACHE_SECONDS
            if fresh:
                return cached[2]
        desks = self._store.desks.all()
        with self._lock:
            self._cached = (time.monotonic(), epoch, desks)
        return desks

    def live(self) -> list[Desk]:
        return [d for d in self.all() if not d.archived]

    def get(self, desk: str) -> Desk | None:
        return next((d for d in self.all() if d.id == desk), None)

    def live_desk(self, desk: str) -> Desk:
        """The live desk with this id; 404 desk_not_found or 409 desk_archived otherwise."""
        found = self.get(desk) if isinstance(desk, str) else None
        if found is None:
            raise NotFound("There is no desk with that id.", code="desk_not_found")
        if found.archived:
            raise Conflict(f"The desk {found.name} has been archived.", code="desk_archived")
        return found

    def default(self) -> Desk:
        """The first configured desk that is live, else the first live desk."""
        live = self.live()
        for spec in self._specs:
            match = next((d for d in live if d.id == spec.id), None)
            if match:
                return match
        if not live:
            raise NotFound("No desk is open; an operator must add one.", code="desk_not_found")
        return live[0]

    def by_alias(self, alias: str) -> Desk | None:
        code = alias.upper()
        return next((d for d in self.live() if d.alias == code), None)

    def name_of(self, desk: str) -> str:
        found = self.get(desk)
        return found.name if found else desk

    # -- operator changes

    def add(self, name: object, alias: object, now: datetime) -> Desk:
        clean = _rule(lambda: clean_name(name, what="The desk name", code="invalid_desk_name"))
        wanted = _rule(lambda: check_alias(alias)) if alias not in (None, "") else None
        _rule(lambda: check_desk_id(desk_id(clean)))
        desk = self._create(clean, wanted, now)
        self._changed()
        return desk

    def rename(self, desk: str, name: object, alias: object, now: datetime) -> Desk:
        current = self.live_desk(desk)
        clean = (
            _rule(lambda: clean_name(name, what="The desk name", code="invalid_desk_name"))
            if name is not None
            else None
        )
        wanted = _rule(lambda: check_alias(alias)) if alias is not None else None
        if wanted and wanted != current.alias:
            self._take_alias(wanted, current.id, now)
            self._store.kv_delete(ALIASES, current.alias)
        changed = Desk(current.id, clean or current.name, wanted or current.alias)
        self._store.desks.update(changed)
        self._changed()
        return changed

    def archive(self, desk: str) -> Desk:
        current = self.live_desk(desk)
        archived = Desk(current.id, current.name, current.alias, archived=True)
        self._store.desks.update(archived)
        self._store.kv_delete(ALIASES, current.alias)
        self._changed()
        return archived

    def _create(self, name: str, alias: str | None, now: datetime) -> Desk:
        new_id = desk_id(name)
        if self._store.desks.get(new_id) is not None:
            raise Conflict("A desk with that id exists or existed; ids are never reused.", code="desk_exists")
        code = alias or self._free_alias(name)
        self._take_alias(code, new_id, now)
        desk = Desk(new_id, name, code)
        if not self._store.desks.add(desk):
            self._store.kv_delete(ALIASES, code)
            raise Conflict("A desk with that id exists or existed; ids are never reused.", code="desk_exists")
        return desk

    def _free_alias(self, name: str) -> str:
        taken = {d.alias for d in self._store.desks.all() if not d.archived}
        return generate_alias(taken, name)

    def _take_alias(self, code: str, owner: str, now: datetime) -> None:
        """A conditional insert, so two operators cannot give one alias to two desks."""
        if not self._store.kv_insert(ALIASES, code, {"desk": owner}, None, now):
            held = self._store.kv_get(ALIASES, code, now) or {}
            if held.get("desk") != owner:
                raise Conflict(f"The alias #{code} belongs to another desk.", code="alias_taken")

    def _forget(self) -> None:
        with self._lock:
            self._cached = None

    def _changed(self) -> None:
        self._forget()
        if self._changes:
            self._changes.announce()


def _rule(check: Callable[[], T]) -> T:
    """Run a desk rule; a broken rule becomes a 400 with the rule's own code and words."""
    try:
        return check()
    except DeskRuleError as exc:
        raise BadRequest(str(exc), code=exc.code) from None
