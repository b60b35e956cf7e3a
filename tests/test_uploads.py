"""Pictures from the desk, through the local devhost: stored in Azurite's blob service, fetched by the sandbox the way
Twilio fetches a MediaUrl, and kept from every other desk."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devhost.blobs import DEV_ACCOUNT
from devhost.sandbox.media import tiny_png
from tests.support.devhost import DevhostProcess
from tests.test_conversations_api import api, history, until

DEVHOST_ENV = {"SCHEDULE_MIN_LEAD_SECONDS": "0", "SCHEDULE_POLL_SECONDS": "1", "RETENTION_DAYS": "1"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + secrets.token_bytes(2048) + b"\xff\xd9"


def upload(devhost: DevhostProcess, session: dict[str, Any], content: bytes, kind: str = "image/png") -> httpx.Response:
    return api(devhost, session, "POST", "media", content=content, headers={"Content-Type": kind})


def creates(devhost: DevhostProcess, since: int) -> list[dict[str, Any]]:
    calls = httpx.get(f"{devhost.sandbox_url}/calls", timeout=5).json()[since:]
    return [c for c in calls if c["method"] == "POST" and c["path"].endswith("/Messages.json")]


def calls_now(devhost: DevhostProcess) -> int:
    return len(httpx.get(f"{devhost.sandbox_url}/calls", timeout=5).json())


def on_the_phone(devhost: DevhostProcess, phone: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5).json()
    return found


def picture_bytes(devhost: DevhostProcess, media: dict[str, Any]) -> bytes:
    """What the handset shows: the sandbox's own copy, served from its CDN path."""
    root = devhost.sandbox_url.removesuffix("/sandbox")
    return httpx.get(f"{root}{media['url']}", timeout=5).content


def test_a_picture_reaches_the_phone_byte_for_byte_and_the_thread_shows_it(devhost: DevhostProcess) -> None:
    desk, phone, png = devhost.session("reception"), "+14155550161", tiny_png(40)
    stored = upload(devhost, desk, png, "application/octet-stream")  # the bytes say PNG, whatever the header says
    assert stored.status_code == 201, stored.text
    picture = stored.json()
    assert picture["contentType"] == "image/png" and picture["size"] == len(png)

    sent = api(devhost, desk, "POST", "send_sms", json={"to": phone, "body": "", "mediaIds": [picture["id"]]})
    assert sent.status_code == 201, sent.text

    received = until(
        lambda: [m for m in on_the_phone(devhost, phone) if m["media"] and m["media"][0]["url"][:9] == "/sandbox/"]
    )
    assert received, on_the_phone(devhost, phone)
    assert picture_bytes(devhost, received[-1]["media"][0]) == png
    [message] = [m for m in history(devhost, desk, phone) if m["sid"] == sent.json()["sid"]]
    assert message["media"] == [{"id": picture["id"], "url": f"/api/media/{picture['id']}", "contentType": "image/png"}]
    assert until(
        lambda: (
            api(devhost, desk, "GET", f"conversations/{phone.replace('+', '%2B')}/messages").json()["messages"][-1][
                "status"
            ]
            == "delivered"
        )
    )
    back = api(devhost, desk, "GET", f"media/{picture['id']}")
    assert back.status_code == 200 and back.content == png and back.headers["content-type"] == "image/png"


def test_nothing_in_the_message_is_a_credential(devhost: DevhostProcess) -> None:
    desk, phone = devhost.session("reception"), "+14155550162"
    picture = upload(devhost, desk, JPEG, "image/jpeg").json()
    sent = api(
        devhost, desk, "POST", "send_sms", json={"to": phone, "body": "Parking map", "mediaIds": [picture["id"]]}
    )
    assert sent.status_code == 201, sent.text
    page = api(devhost, desk, "GET", f"conversations/{phone.replace('+', '%2B')}/messages").text
    assert "sig=" not in page and "relay-media" not in page  # no signed blob URL stored or shown


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024), 413, "media_too_large"),
        (b"<!doctype html><script>alert(1)</script>", 415, "unsupported_media"),
        (b"", 415, "unsupported_media"),
    ],
    ids=["over-5-MB", "html-named-png", "empty"],
)
def test_a_file_that_is_not_a_small_picture_is_refused(
    devhost: DevhostProcess, content: bytes, status: int, code: str
) -> None:
    desk = devhost.session("reception")
    refused = upload(devhost, desk, content, "image/png")
    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["code"] == code


def test_another_desks_picture_cannot_be_sent_or_read(devhost: DevhostProcess) -> None:
    mine, theirs, phone = devhost.session("reception"), devhost.session("billing", "Ken"), "+14155550163"
    picture = upload(devhost, mine, tiny_png()).json()
    before = calls_now(devhost)

    by_id = api(devhost, theirs, "POST", "send_sms", json={"to": phone, "body": "x", "mediaIds": [picture["id"]]})
    assert by_id.status_code == 400 and by_id.json()["error"]["code"] == "media_not_found"
    assert api(devhost, theirs, "GET", f"media/{picture['id']}").status_code == 404

    # The blob's own address is refused as a mediaUrl, by either scheme: pictures stored here go by id.
    blob_url = _blob_url(devhost, "reception", picture["id"])
    for url in (blob_url, blob_url.replace("http://", "https://", 1)):
        by_url = api(devhost, theirs, "POST", "send_sms", json={"to": phone, "body": "x", "mediaUrl": [url]})
        assert by_url.status_code == 400 and by_url.json()["error"]["code"] == "invalid_media"
    assert "mediaIds" in by_url.json()["error"]["message"]
    assert httpx.get(blob_url, timeout=5).status_code in (403, 404)  # the container is private
    assert creates(devhost, before) == []


def test_a_scheduled_picture_is_signed_when_it_is_sent(devhost: DevhostProcess) -> None:
    desk, phone, png = devhost.session("reception"), "+14155550164", tiny_png(32)
    picture = upload(devhost, desk, png).json()
    send_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = {"to": phone, "body": "Your x-ray", "mediaIds": [picture["id"]], "sendAt": send_at}
    scheduled = api(devhost, desk, "POST", "send_sms", json=body)
    assert scheduled.status_code == 202, scheduled.text
    got = until(lambda: [m for m in on_the_phone(devhost, phone) if m["body"] == "Your x-ray"], timeout=20)
    assert got and picture_bytes(devhost, got[0]["media"][0]) == png


def _blob_url(devhost: DevhostProcess, desk: str, media_id: str) -> str:
    return f"http://127.0.0.1:{devhost.blob_port}/{DEV_ACCOUNT}/relay-media/{desk}/{media_id}"
