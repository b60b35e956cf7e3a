"""Search on a busy desk, `python -m bench.search` (also `make bench`, scenario `search`; never in the test suite).

One desk with 10,000 conversations and 200,000 messages on SQLite, and fewer on Azurite (seeding Table Storage
one entity and one batch at a time is the slow part; the section says how many). The rows go straight into the
store's own tables through its schema, its triggers and its word index, as the relay writes them; then the local
host answers `GET /api/conversations?q=` over HTTP (the whole path: the desk's list, names, the index, the
snippets), and the store's `search.find` is timed alone too. Writes the `## Search` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from azure.core.exceptions import AzureError

from bench.procs import REPO
from bench.stats import Summary
from relay.store.base import MessageRecord
from relay.store.search import TABLE as WORDS
from relay.store.sqlite import SqliteStore
from relay.store.tablekit import enc, stamp
from relay.store.tables import CONVERSATIONS, MESSAGES, TableStore, _message_fields, conversation_key
from tests.support.azurite import start_azurite
from tests.support.devhost import DevhostProcess

TITLE = "## Search"
DESK = "reception"
OUR = "+14155550100"
FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Inés", "Jamal", "Kofi", "Lena"]
LAST = ["Núñez", "Smith", "Okafor", "Tanaka", "Kowalski", "Haddad", "Larsen", "Moreau", "Silva", "Cohen"]
COMMON = [
    "hi",
    "thanks",
    "please",
    "appointment",
    "tomorrow",
    "today",
    "friday",
    "monday",
    "time",
    "late",
    "minutes",
    "running",
    "parking",
    "refill",
    "prescription",
    "doctor",
    "nurse",
    "insurance",
    "invoice",
    "address",
    "question",
    "call",
    "back",
    "confirm",
    "cancel",
    "reschedule",
    "yes",
    "no",
]
NEEDLE = "zanzibarite"  # in exactly one message
QUERIES = [
    ("a common word", "appointment"),
    ("two words, the last as typed", "refill presc"),
    ("a word in one message", NEEDLE),
    ("a surname", "nunez"),
    ("a number as typed", "(415) 701-0123"),
    ("part of a number", "701 01"),
    ("no match", "qwertyuiop"),
]


@dataclass
class BackendResult:
    backend: str
    conversations: int
    messages: int
    seed_seconds: float
    http: dict[str, Summary] = field(default_factory=dict)
    store: dict[str, Summary] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)


def phone(i: int) -> str:
    return f"+1415{701 + i // 10000:03d}{i % 10000:04d}"


def body(rng: random.Random) -> str:
    """A short SMS: a few words of a small vocabulary (Zipf-like) and some that are rarer."""
    n = rng.randint(4, 18)
    chosen = [COMMON[min(int(rng.paretovariate(1.2)) - 1, len(COMMON) - 1)] for _ in range(n)]
    chosen += [f"w{rng.randint(0, 20000)}" for _ in range(rng.randint(0, 3))]
    rng.shuffle(chosen)
    return " ".join(chosen).capitalize()


def corpus(conversations: int, messages: int, seed: int = 7) -> list[MessageRecord]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=20)  # well inside RETENTION_DAYS, so the host's purge keeps them
    out = []
    for n in range(messages):
        i = n % conversations
        text = body(rng) + (f" {NEEDLE}" if n == messages // 2 else "")
        direction = "inbound" if rng.random() < 0.5 else "outbound"
        at = start + timedelta(seconds=n * (20 * 86400 / messages))
        out.append(MessageRecord(f"SM{n:032x}", direction, phone(i), OUR, DESK, text, at, {"Body": text}))
    return out


def names(conversations: int) -> list[tuple[str, str]]:
    return [(phone(i), f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}") for i in range(conversations)]


def seed_sqlite(path: Path, conversations: int, messages: int) -> float:
    """Through the store's schema and FTS triggers, in one transaction (the relay's writes, without the HTTP)."""
    SqliteStore(str(path)).close()  # the schema
    rows = corpus(conversations, messages)
    begin = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO messages (sid, direction, phone, our_side, web_app_id, body, created_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(m.sid, m.direction, m.phone, m.our_side, m.web_app_id, m.body, m.created_at.timestamp(), "{}") for m in rows],
    )
    last = {m.phone: m for m in rows}
    conn.executemany(
        "INSERT INTO conversations (web_app_id, phone, our_side, last_sid, last_body, last_direction, last_at, unread)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        [(DESK, m.phone, OUR, m.sid, m.body, m.direction, m.created_at.timestamp()) for m in last.values()],
    )
    conn.executemany(
        "INSERT INTO contacts VALUES (?, ?, NULL, ?)", [(p, n, time.time()) for p, n in names(conversations)]
    )
    conn.execute("COMMIT")
    conn.close()
    return time.monotonic() - begin


def seed_tables(connection: str, conversations: int, messages: int) -> float:
    """The entities the relay writes for each message that search reads: the message, its words (the store's
    own index code), the desk's conversation summaries and the address book; 8 writers at once."""
    store = TableStore(connection, timeout_seconds=120)  # batches of 100 queue behind each other in Azurite
    rows = corpus(conversations, messages)
    begin = time.monotonic()

    def write(m: MessageRecord) -> None:
        entity = {"PartitionKey": enc(m.sid), "RowKey": "m", **_message_fields(m)}
        patiently(lambda: store.table(MESSAGES).upsert_entity(entity))

    words = [row for m in rows for row in store.words.rows(m)]  # one desk: one partition, batches of 100

    def index(start: int) -> None:
        patiently(lambda: store.table(WORDS).submit_transaction([("upsert", e) for e in words[start : start + 100]]))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, rows))
        print(f"bench.search: {len(rows):,} messages in {time.monotonic() - begin:.0f} s", flush=True)
        list(pool.map(index, range(0, len(words), 100)))
        print(f"bench.search: {len(words):,} word rows in {time.monotonic() - begin:.0f} s", flush=True)
    last = list({m.phone: m for m in rows}.values())
    summaries = [
        {
            "PartitionKey": enc(DESK),
            "RowKey": conversation_key(m.phone),
            "web_app_id": DESK,
            "phone": m.phone,
            "our_side": OUR,
            "last_sid": m.sid,
            "last_body": m.body,
            "last_direction": m.direction,
            "last_at": stamp(m.created_at),
            "unread": 0,
        }
        for m in last
    ]
    contacts = [
        {
            "PartitionKey": "c",
            "RowKey": enc(p),
            "phone": p,
            "name": n,
            "note": "",
            "updated_at": stamp(datetime.now(UTC)),
        }
        for p, n in names(conversations)
    ]
    for table, entities in ((CONVERSATIONS, summaries), ("contacts", contacts)):
        for start in range(0, len(entities), 100):
            store.table(table).submit_transaction([("upsert", e) for e in entities[start : start + 100]])
    store.close()
    return time.monotonic() - begin


def patiently(write: Callable[[], object]) -> None:
    """Azurite under this load now and then resets a kept-alive connection; the writes are upserts, so again."""
    for attempt in range(5):
        try:
            write()
            return
        except AzureError:
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))


def measure(result: BackendResult, host: DevhostProcess, store_of: SqliteStore | TableStore, rounds: int) -> None:
    token = host.session(DESK, "Bench")["token"]
    phones = [phone(i) for i in range(result.conversations)]
    with httpx.Client(base_url=host.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        client.get("/api/conversations", params={"q": "warm up"})
        for label, q in QUERIES:
            took = []
            for _ in range(rounds):
                begin = time.perf_counter()
                r = client.get("/api/conversations", params={"q": q})
                took.append(time.perf_counter() - begin)
                r.raise_for_status()
            result.http[label] = Summary.of(took)
            result.results[label] = len(r.json()["conversations"])
            took = []
            for _ in range(rounds):
                begin = time.perf_counter()
                store_of.search.find(q, [DESK], phones, 100)
                took.append(time.perf_counter() - begin)
            result.store[label] = Summary.of(took)


def run_backend(backend: str, conversations: int, messages: int, rounds: int, workdir: Path) -> BackendResult:
    data = workdir / backend
    data.mkdir()
    key = "bench-" + "k" * 40
    if backend == "sqlite":
        seconds = seed_sqlite(data / "relay.sqlite3", conversations, messages)
        result = BackendResult(backend, conversations, messages, seconds)
        with DevhostProcess(None, data, access_code=secrets.token_urlsafe(12), signing_key=key) as host:
            store = SqliteStore(str(data / "relay.sqlite3"))
            try:
                measure(result, host, store, rounds)
            finally:
                store.close()
        return result
    with start_azurite() as connection:
        seconds = seed_tables(connection, conversations, messages)
        result = BackendResult(backend, conversations, messages, seconds)
        env = {"RELAY_STORE": connection}
        with DevhostProcess(
            None, data, access_code=secrets.token_urlsafe(12), signing_key=key, extra_env=env, ready_timeout=60
        ) as host:
            store = TableStore(connection)
            try:
                measure(result, host, store, rounds)
            finally:
                store.close()
    return result


def render(results: list[BackendResult], rounds: int) -> str:
    out = [TITLE, ""]
    out.append(
        "Generated by `python -m bench.search` (also `make bench`): `GET /api/conversations?q=` through the local "
        f"host over HTTP, {rounds} times per query after one warm-up, on one desk; and the store's "
        "`search.find` alone, in process. Milliseconds, p50 / p99."
    )
    for r in results:
        out += ["", f"### {r.backend}: {r.conversations:,} conversations, {r.messages:,} messages", ""]
        out.append(f"Seeded in {r.seed_seconds:.0f} s.")
        if r.backend == "tables":
            out.append(
                "Fewer rows than on SQLite: seeding Azurite entity by entity and batch by batch takes about 3 "
                "minutes per 20,000 messages here (with their 115,000 word rows). A query's cost on Table Storage "
                "is the rows it reads (docs/scale.md), which SCAN_LIMIT bounds per word and desk."
            )
        out += ["", "| query | results | HTTP p50 | HTTP p99 | `find` p50 | `find` p99 |", "|---|---|---|---|---|---|"]
        for label, q in QUERIES:
            h, s = r.http[label], r.store[label]
            out.append(
                f"| {label} (`{q}`) | {r.results[label]} | {h.p50:.1f} | {h.p99:.1f} | {s.p50:.1f} | {s.p99:.1f} |"
            )
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> list[BackendResult]:
    with tempfile.TemporaryDirectory(prefix="relay-search-") as tmp:
        results = []
        for backend in args.backends.split(","):
            sizes = (
                (args.conversations, args.messages)
                if backend == "sqlite"
                else (args.table_conversations, args.table_messages)
            )
            print(f"bench.search: {backend}, {sizes[0]:,} conversations, {sizes[1]:,} messages…", flush=True)
            results.append(run_backend(backend, *sizes, args.rounds, Path(tmp)))
            print(json.dumps({k: v.p50 for k, v in results[-1].http.items()}), flush=True)
        return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="sqlite,tables")
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--table-conversations", type=int, default=1_000)
    p.add_argument("--table-messages", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    section = render(run(args), args.rounds)
    from bench.report import with_section

    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else "# Benchmarks\n"
    args.output.write_text(with_section(previous, TITLE, section), encoding="utf-8")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
