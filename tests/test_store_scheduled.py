"""Scheduled items on both backends: due ones found, stale claims found again, and one claim wins."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from relay.store import Store
from relay.store.scheduled import Scheduled

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def item(item_id: str, at: datetime, desk: str = "reception", state: str = "scheduled") -> Scheduled:
    return Scheduled(item_id, desk, state, at, T0 - timedelta(hours=1), None, {"to": "+15550001111", "body": "hi"})


def test_added_once_listed_by_desk_and_due(store: Store) -> None:
    first = store.scheduled.add(item("SQa", T0))
    assert first is not None and first.version
    assert store.scheduled.add(item("SQa", T0)) is None
    store.scheduled.add(item("SQb", T0 + timedelta(minutes=5)))
    store.scheduled.add(item("SQc", T0 - timedelta(minutes=5), desk="billing"))
    store.scheduled.add(item("SQd", T0 - timedelta(minutes=9), state="cancelled"))
    assert [i.id for i in store.scheduled.of_desk("reception")] == ["SQa", "SQb"]
    assert [i.id for i in store.scheduled.due(T0, T0 - timedelta(minutes=1), 10)] == ["SQc", "SQa"]
    got = store.scheduled.get("SQa")
    assert got is not None and (got.send_at, got.data, got.claimed_at) == (
        T0,
        {"to": "+15550001111", "body": "hi"},
        None,
    )
    assert store.scheduled.get("SQzz") is None


def test_a_claim_is_found_again_only_once_stale(store: Store) -> None:
    base = store.scheduled.add(item("SQa", T0))
    assert base is not None
    claimed = store.scheduled.put(replace(base, state="sending", claimed_at=T0), base)
    assert claimed is not None and claimed.claimed_at == T0
    assert store.scheduled.put(replace(base, state="cancelled"), base) is None  # the claim changed the version
    assert store.scheduled.due(T0 + timedelta(seconds=30), T0, 10) == []
    [stale] = store.scheduled.due(T0 + timedelta(minutes=2), T0 + timedelta(minutes=1), 10)
    assert stale.state == "sending"
    assert [i.id for i in store.scheduled.of_desk("reception")] == ["SQa"]
    sent = store.scheduled.put(replace(stale, state="sent", data={**stale.data, "sid": "SMx"}), stale)
    assert sent is not None and store.scheduled.of_desk("reception") == []


def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    base = store.scheduled.add(item("SQa", T0))
    assert base is not None
    barrier = threading.Barrier(6, timeout=10)

    def claim(n: int) -> Scheduled | None:
        barrier.wait()
        return store.scheduled.put(replace(base, state="sending", claimed_at=T0, data={"claim": n}), base)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(claim, range(6), timeout=30))
    assert sum(r is not None for r in results) == 1


def test_a_batch_lists_every_item_of_it_whatever_its_state(store: Store) -> None:
    def of(item_id: str, batch: str | None, state: str = "scheduled") -> Scheduled:
        base = item(item_id, T0, state=state)
        return replace(base, data={**base.data, "batch": batch} if batch else base.data)

    for added in (of("SQb", "Bone"), of("SQa", "Bone", "sent"), of("SQc", "Btwo"), of("SQd", None)):
        store.scheduled.add(added)
    listed = store.scheduled.of_batch("Bone")
    assert [(i.id, i.state) for i in listed] == [("SQa", "sent"), ("SQb", "scheduled")]
    sent = store.scheduled.get("SQb")
    assert sent is not None and store.scheduled.put(replace(sent, state="sent"), sent) is not None
    assert [i.state for i in store.scheduled.of_batch("Bone")] == ["sent", "sent"]
    assert store.scheduled.of_batch("Bnone") == []
