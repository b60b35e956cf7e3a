"""Staff sessions on both backends: one row per sign-in, ended one at a time, counted per desk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.store import Store
from relay.store.staff import StaffSession

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def session(sid: str, desk: str, staff: str, *, hours: float = 12) -> StaffSession:
    return StaffSession(sid, desk, f"n{staff}", staff, T0, T0 + timedelta(hours=hours), T0)


def test_sessions_are_per_sign_in_and_revoked_one_at_a_time(store: Store) -> None:
    store.staff.open(session("s1", "reception", "Maria"))
    store.staff.open(session("s2", "reception", "Ken"))
    store.staff.open(session("s3", "billing", "Ann"))
    assert [s.id for s in store.staff.of_desk("reception", T0)] == ["s1", "s2"]

    store.staff.revoke("reception", "s1")
    found = store.staff.get("reception", "s1")
    assert found is not None and found.revoked and not found.live(T0)
    assert [s.id for s in store.staff.of_desk("reception", T0)] == ["s2"]
    assert store.staff.get("billing", "s1") is None  # a session is looked up under its own desk only
    assert sorted(s.id for s in store.staff.everywhere(T0)) == ["s2", "s3"]


def test_touch_records_presence_and_renewal_and_purge_forgets_expired(store: Store) -> None:
    store.staff.open(session("s1", "reception", "Maria", hours=1))
    store.staff.open(session("s2", "reception", "Ken", hours=48))
    store.staff.touch("reception", "s1", T0 + timedelta(minutes=5), T0 + 3 * HOUR)
    s1 = store.staff.get("reception", "s1")
    assert s1 is not None and (s1.seen_at, s1.expires_at) == (T0 + timedelta(minutes=5), T0 + 3 * HOUR)
    store.staff.touch("reception", "nobody", T0)  # a session that is gone is not an error

    assert [s.id for s in store.staff.of_desk("reception", T0 + 4 * HOUR)] == ["s2"]
    store.staff.purge(T0 + 4 * HOUR)
    assert store.staff.get("reception", "s1") is None
    assert store.staff.get("reception", "s2") is not None
