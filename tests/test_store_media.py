"""The blob side of uploads against Azurite's blob service: private, signed per blob, purged by age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from relay.store.media import MediaBlobs


def test_a_signed_url_reads_one_blob_for_a_while_and_nothing_else(azurite: str) -> None:
    blobs = MediaBlobs(azurite)
    blobs.put("reception/a", b"GIF89a...", "image/gif")
    blobs.put("reception/b", b"GIF89a.b.", "image/gif")
    url = blobs.signed_url("reception/a", datetime.now(UTC) + timedelta(minutes=15))
    got = httpx.get(url, timeout=5)
    assert got.status_code == 200 and got.content == b"GIF89a..." and got.headers["content-type"] == "image/gif"
    assert httpx.get(url.replace("reception/a", "reception/b"), timeout=5).status_code == 403  # signed for a only
    assert httpx.get(url.split("?")[0], timeout=5).status_code in (403, 404)
    expired = blobs.signed_url("reception/a", datetime.now(UTC) - timedelta(seconds=1))
    assert httpx.get(expired, timeout=5).status_code == 403
    assert blobs.content_type("reception/a") == "image/gif" and blobs.content_type("billing/a") is None


def test_retention_deletes_old_uploads_only(azurite: str) -> None:
    blobs = MediaBlobs(azurite)
    blobs.put("billing/old", b"\xff\xd8\xff1", "image/jpeg")
    assert blobs.purge(datetime.now(UTC) - timedelta(days=1)) == 0
    assert blobs.get("billing/old") is not None
    assert blobs.purge(datetime.now(UTC) + timedelta(seconds=5)) >= 1
    assert blobs.get("billing/old") is None
