"""Saved texts on both backends: per desk, replaced whole, listed by name, removed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.store import Store
from relay.store.templates import Template

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_put_list_replace_delete_per_desk(store: Store) -> None:
    assert store.templates.put(Template("reception", "tomorrow", "Tomorrow", "Hi {name}, {date} at {time}", T0))
    assert store.templates.put(Template("reception", "Recall-1", "annual recall", "Time for your check-up", T0))
    assert store.templates.put(Template("billing", "tomorrow", "Invoice", "Your invoice {name}", T0))
    later = T0 + timedelta(hours=1)
    assert store.templates.put(Template("reception", "tomorrow", "Tomorrow", "Hello {name}", later)) is False
    assert [t.id for t in store.templates.of_desk("reception")] == ["Recall-1", "tomorrow"]  # by name, any case
    assert store.templates.get("reception", "tomorrow") == Template(
        "reception", "tomorrow", "Tomorrow", "Hello {name}", later
    )
    assert store.templates.get("billing", "tomorrow") == Template(
        "billing", "tomorrow", "Invoice", "Your invoice {name}", T0
    )
    assert store.templates.get("reception", "nope") is None
    assert store.templates.delete("reception", "tomorrow") is True
    assert store.templates.delete("reception", "tomorrow") is False
    assert [t.id for t in store.templates.of_desk("reception")] == ["Recall-1"]
    assert [t.id for t in store.templates.of_desk("billing")] == ["tomorrow"]
    assert store.templates.of_desk("nurse") == []
