"""Message search on both backends: every word must match (the last may be a word's start), case and accents
aside; only the phones and desks asked for; one hit per conversation, best first; kept in step on insert and
purge, duplicates included."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relay.store import Event, MessageRecord, Store
from relay.store.search import WAITING, fold, words
from relay.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
OUR = "+15559990000"
ANA, BEN, CLEO = "+14155550101", "+14155550102", "+14155550103"


def save(store: Store, sid: str, phone: str, body: str, minutes: int, desk: str = "reception", **kw: str) -> None:
    direction = kw.get("direction", "inbound")
    record = MessageRecord(sid, direction, phone, OUR, desk, body, T0 + timedelta(minutes=minutes), {"Body": body})
    store.save_message(record, Event(desk, direction, {"sid": sid}, record.created_at))


def sids(store: Store, query: str, phones: list[str], audiences: tuple[str, ...] = ("reception",)) -> list[str]:
    return [h.sid for h in store.search.find(query, audiences, phones, 20)]


def test_words_fold_case_and_accents() -> None:
    assert words("Ana NÚÑEZ, ana-núñez: 10:30!") == ["ana", "nunez", "10", "30"]
    assert fold("Zoë Straße") == "zoe straße"


def test_every_word_must_match_and_the_last_may_be_a_start(store: Store) -> None:
    save(store, "SM1", ANA, "Can I move my appointment to Friday?", 1)
    save(store, "SM2", BEN, "Is the parking lot open on Friday", 2)
    save(store, "SM3", CLEO, "Café Núñez says hello from the Hauptstraße", 3, direction="outbound")
    everyone = [ANA, BEN, CLEO]
    assert sorted(sids(store, "friday", everyone)) == ["SM1", "SM2"]
    assert sids(store, "appointment friday", everyone) == ["SM1"]
    assert sids(store, "FRIDAY appoint", everyone) == ["SM1"]  # the last word as a start
    assert sids(store, "appoint friday", everyone) == []  # only the last word may be partial
    assert sids(store, "cafe nunez", everyone) == ["SM3"]  # accents and case aside, outbound too
    assert sids(store, "HAUPTSTRASSE", everyone) == []  # ß is not ss, on both backends alike
    assert sids(store, "hauptstraße", everyone) == ["SM3"]
    assert sids(store, "parking", [ANA, CLEO]) == []  # not one of the phones asked for
    assert sids(store, "parking", everyone, audiences=("billing",)) == []  # stored for another desk
    assert sids(store, "!!! ...", everyone) == []  # no word at all


def test_the_body_is_what_the_desk_reads_without_the_alias(store: Store) -> None:
    record = MessageRecord(
        "SM9",
        "inbound",
        ANA,
        OUR,
        "reception",
        "#R need a refill",
        T0,
        {"Body": "#R need a refill", "displayBody": "need a refill"},
    )
    store.save_message(record, Event("reception", "inbound", {"sid": "SM9"}, T0))
    assert [h.body for h in store.search.find("refill", ["reception"], [ANA], 5)] == ["need a refill"]


def test_one_hit_per_conversation_best_first_with_the_body(store: Store) -> None:
    save(store, "SM1", ANA, "refill please", 1)
    save(store, "SM2", ANA, "about the refill again", 5)
    save(store, "SM3", BEN, "refill", 3)
    hits = store.search.find("refill", ["reception"], [ANA, BEN], 20)
    assert sorted(h.phone for h in hits) == [ANA, BEN]
    ana = next(h for h in hits if h.phone == ANA)
    assert (ana.body, ana.created_at, ana.web_app_id) in {
        ("refill please", T0 + timedelta(minutes=1), "reception"),
        ("about the refill again", T0 + timedelta(minutes=5), "reception"),
    }
    assert [h.rank for h in hits] == sorted(h.rank for h in hits)
    assert len(store.search.find("refill", ["reception"], [ANA, BEN], 1)) == 1


def test_duplicates_lines_and_purge_keep_the_index_in_step(store: Store) -> None:
    save(store, "SM1", ANA, "old message about insurance", 1)
    save(store, "SM1", ANA, "old message about insurance", 1)  # a redelivered webhook
    save(store, "EV1", BEN, "insurance line in the thread", 2, direction="event")
    save(store, "SM2", CLEO, "new message about insurance", 60 * 24 * 40)
    everyone = [ANA, BEN, CLEO]
    assert sorted(sids(store, "insurance", everyone)) == ["SM1", "SM2"]  # once each; lines are not searched
    assert store.purge(T0 + timedelta(days=30)) == 2  # SM1 and the line
    assert sids(store, "insurance", everyone) == ["SM2"]
    assert sids(store, "old", everyone) == []
    save(store, "SM3", ANA, "insurance again", 60 * 24 * 41)
    assert sorted(sids(store, "insurance", everyone)) == ["SM2", "SM3"]


def test_sqlite_indexes_messages_stored_before_search_existed(tmp_path: Path) -> None:
    path = str(tmp_path / "relay.db")
    old = SqliteStore(path)
    save(old, "SM9", CLEO, "stored first", 0)  # sids out of rowid order: the index must follow the rowids
    save(old, "SM1", ANA, "stored before the upgrade", 1)
    old.close()
    with sqlite3.connect(path) as conn:  # the database as an older release left it
        conn.executescript(
            "DROP TRIGGER IF EXISTS messages_search_add; DROP TRIGGER messages_search_drop;"
            "DROP TRIGGER message_search_add;"
            "DROP TABLE message_fts; DROP TABLE message_search;"
        )
    upgraded = SqliteStore(path)
    try:
        with sqlite3.connect(path) as conn:  # indexed when it opened, with nothing left for each search to redo
            assert conn.execute(WAITING).fetchone()[0] == 0
        assert sids(upgraded, "upgrade", [ANA]) == ["SM1"]
        save(upgraded, "SM2", BEN, "after the upgrade", 2)
        assert sorted(sids(upgraded, "upgrade", [ANA, BEN])) == ["SM1", "SM2"]
    finally:
        upgraded.close()


def test_sqlite_finds_at_once_what_another_process_stored_and_indexes_it_without_a_search(tmp_path: Path) -> None:
    """Indexing runs beside the writers, INDEX_SECONDS behind: a search must not wait for it, on any process."""
    path = str(tmp_path / "relay.db")
    writer, reader = SqliteStore(path), SqliteStore(path)  # two workers on one file
    try:
        save(writer, "SM1", ANA, "parking at the north entrance", 1)
        assert sids(reader, "parking", [ANA]) == ["SM1"]  # before the writer's indexer has run
        save(writer, "SM2", BEN, "parking again", 2)
        with sqlite3.connect(path) as conn:
            indexed = 0
            for _ in range(50):  # the writer's indexer, with no search to ask for it
                indexed = conn.execute("SELECT count(*) FROM message_search").fetchone()[0]
                if indexed == 2:
                    break
                time.sleep(0.05)
        assert indexed == 2
    finally:
        writer.close()
        reader.close()
