"""Pictures a desk sends: checked from their bytes, kept per desk, and handed to Twilio as short-lived URLs.

The message records only the upload's id; the signed URL is minted at the moment of the Twilio call (so a
scheduled send works days later) and is never stored or published.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from relay.clock import Clock
from relay.errors import BadRequest, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType
from relay.store import StoreError
from relay.twilio_gateway import Media

if TYPE_CHECKING:
    from relay.store.media import MediaBlobs

MAX_BYTES = 5 * 1024 * 1024
SIGNED_FOR = timedelta(minutes=15)
_ID = re.compile(r"^[0-9a-f]{32}$")
# What Twilio renders as a picture on every carrier, told apart by magic numbers, never by a name or a header.
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"))
_GIF89 = b"GIF89a"


def sniff(content: bytes) -> str | None:
    if content.startswith(_GIF89):
        return "image/gif"
    return next((kind for magic, kind in _SIGNATURES if content.startswith(magic)), None)


@dataclass(frozen=True)
class Upload:
    id: str
    content_type: str

    def to_json(self) -> dict[str, Any]:
        """As a message's media entry: the desk reads it back through the API, never from the blob service."""
        return {"id": self.id, "url": f"/api/media/{self.id}", "contentType": self.content_type}


class Uploads:
    def __init__(self, blobs: MediaBlobs | None, clock: Clock) -> None:
        self._blobs = blobs
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._blobs is not None

    def add(self, desk: str, content: bytes) -> dict[str, Any]:
        blobs = self._require()
        if len(content) > MAX_BYTES:
            raise PayloadTooLarge(
                f"The picture is {len(content):,} bytes; the limit is {MAX_BYTES:,} (5 MB).", code="media_too_large"
            )
        kind = sniff(content)
        if kind is None:
            raise UnsupportedMediaType(
                "Only JPEG, PNG and GIF pictures can be sent; this file is none of them.", code="unsupported_media"
            )
        upload = Upload(uuid.uuid4().hex, kind)
        try:
            blobs.put(_name(desk, upload.id), content, kind)
        except StoreError:
            raise Unavailable("The picture could not be stored; try again.", code="media_unavailable") from None
        return {**upload.to_json(), "size": len(content)}

    def read(self, desk: str, media_id: str) -> Media:
        found = self._require().get(_name(desk, media_id)) if _ID.match(media_id) else None
        if found is None:
            raise NotFound("No such picture for this desk.", code="media_not_found")
        return Media(found.content, found.content_type)

    def resolve(self, desk: str, raw: object) -> list[Upload]:
        """The request's `mediaIds`, each an upload of this desk (another desk's id is simply not found)."""
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
            raise BadRequest("'mediaIds' must be a list of ids from POST /api/media.", code="invalid_media")
        if raw:
            self._require()
        found = []
        for media_id in raw:
            kind = self._content_type(desk, media_id) if _ID.match(media_id) else None
            if kind is None:
                raise BadRequest(f"No uploaded picture {media_id[:40]!r} on this desk.", code="media_not_found")
            found.append(Upload(media_id, kind))
        return found

    def signed_urls(self, desk: str, uploads: list[Upload]) -> list[str]:
        if not uploads:
            return []
        expires = self._clock.now() + SIGNED_FOR
        blobs = self._require()
        return [blobs.signed_url(_name(desk, u.id), expires) for u in uploads]

    def is_ours(self, url: str) -> bool:
        """A URL on our own blob service, by either scheme: such a picture must come as an id, which is checked
        against the desk."""
        if self._blobs is None:
            return False
        return urlsplit(url).netloc.lower() == urlsplit(self._blobs.endpoint).netloc.lower()

    def purge(self, before: datetime) -> int:
        return self._blobs.purge(before) if self._blobs is not None else 0

    def _content_type(self, desk: str, media_id: str) -> str | None:
        try:
            return self._require().content_type(_name(desk, media_id))
        except StoreError:
            raise Unavailable("Uploaded pictures cannot be read now; try again.", code="media_unavailable") from None

    def _require(self) -> MediaBlobs:
        if self._blobs is None:
            raise Unavailable(
                "Sending pictures needs Blob Storage: set MEDIA_STORAGE to a storage connection string.",
                code="media_not_configured",
            )
        return self._blobs

    def close(self) -> None:
        if self._blobs is not None:
            self._blobs.close()


def _name(desk: str, media_id: str) -> str:
    return f"{desk}/{media_id}"
