"""Table Storage plumbing shared by the store's concept modules: key encoding, time stamps, errors, retries.

The concept modules hold both backends, so they and this module import no Azure SDK at the top: the helpers
below import it when they are called, by which time relay.store.tables (the Table store) has loaded it. A SQLite
deployment's cold start so never pays for azure.core and azure.data.tables (about 70 ms).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from relay.store.base import StoreError

if TYPE_CHECKING:
    from azure.core.exceptions import HttpResponseError
    from azure.data.tables import TableClient

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STAMP_WIDTH = 20
MAX_STAMP = 10**STAMP_WIDTH - 1
RETRIES = 50  # optimistic-concurrency attempts; each lost race means another writer made progress
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SECRETS = re.compile(r"(?i)\b(sig|accountkey|sharedaccesssignature)=[^&;\s'\"]+")


def enc(value: str) -> str:
    """Key-safe and unambiguous: keys forbid / \\ # ? and control characters. '~XX' escapes bytes, '~' alone is ''."""
    if not value:
        return "~"
    return "".join(c if c in _SAFE else "".join(f"~{b:02X}" for b in c.encode()) for c in value)


def _us(at: datetime) -> int:
    aware = at if at.tzinfo is not None else at.astimezone()  # naive means local time, as datetime.timestamp()
    return (aware - EPOCH) // timedelta(microseconds=1)


def stamp(at: datetime) -> str:
    """Fixed-width microseconds, so string order is time order (filters compare strings; Int64 needs ceremony)."""
    return f"{min(max(_us(at), 0), MAX_STAMP):0{STAMP_WIDTH}d}"


def from_stamp(value: str) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def status_of(exc: HttpResponseError, *codes: int) -> bool:
    return exc.status_code in codes


def etag(entity: dict[str, Any]) -> str:
    metadata: dict[str, Any] = getattr(entity, "metadata", {})
    return str(metadata["etag"])


def create(table: TableClient, row: dict[str, Any]) -> str | None:
    """Insert a row that must be new: its etag, or None when the key is taken."""
    from azure.core.exceptions import ResourceExistsError

    try:
        return str(table.create_entity(row)["etag"])
    except ResourceExistsError:
        return None


def put_whole(table: TableClient, row: dict[str, Any]) -> None:
    """Insert or replace the row, so a column left out is gone rather than kept from before."""
    from azure.data.tables import UpdateMode

    table.upsert_entity(row, mode=UpdateMode.REPLACE)


def merge_if_there(table: TableClient, row: dict[str, Any]) -> None:
    """Change the columns given, keep the rest; a row that is gone stays gone (nothing is created)."""
    from azure.core.exceptions import ResourceNotFoundError

    with suppress(ResourceNotFoundError):
        table.update_entity(row)  # the SDK's default mode merges


def delete_if_there(table: TableClient, partition: str, row: str) -> bool:
    """Whether the row was there to delete. The SDK's delete answers alike either way, so it is read first."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        table.get_entity(partition, row, select=["RowKey"])
    except ResourceNotFoundError:
        return False
    table.delete_entity(partition, row)
    return True


def replace_unchanged(table: TableClient, row: dict[str, Any], version: str) -> str | None:
    """Compare-and-set on the etag: the new etag, or None when the row changed (412) or went (404)."""
    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError
    from azure.data.tables import UpdateMode

    try:
        meta = table.update_entity(
            row, mode=UpdateMode.REPLACE, etag=version, match_condition=MatchConditions.IfNotModified
        )
    except HttpResponseError as exc:
        if status_of(exc, 404, 412):
            return None
        raise
    return str(meta["etag"])


def backoff() -> None:
    """A short random pause after a lost optimistic-concurrency race."""
    time.sleep(random.uniform(0.0, 0.02))


@contextmanager
def guard(operation: str) -> Iterator[None]:
    """Any transport or service failure becomes a StoreError, with credentials scrubbed from the message."""
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as exc:
        text = str(exc)
        detail = _SECRETS.sub(r"\1=***", text.splitlines()[0] if text else "")[:300]
        raise StoreError(f"Table Storage {operation} failed: {type(exc).__name__}: {detail}") from None
