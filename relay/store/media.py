"""Pictures the desks upload, in Azure Blob Storage: Twilio must fetch them by URL, so no local folder will do.

One container; each blob is named `<desk>/<id>`, so a desk's reads are a name it can only build for itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContentSettings, generate_blob_sas

from relay.store.base import StoreError

CONTAINER = "relay-media"


@dataclass(frozen=True)
class StoredBlob:
    content: bytes
    content_type: str


class MediaBlobs:
    """The blob service behind uploads; signs read-only URLs with the account key of its connection string."""

    def __init__(self, connection_string: str, timeout: float = 3.0) -> None:
        # One try within a bounded time: the desk is waiting, and a retry is its own click (the SDK's default
        # retries with backoff kept an upload to a dead service waiting ~16 s for its 503).
        self._service = BlobServiceClient.from_connection_string(
            connection_string, connection_timeout=timeout, read_timeout=timeout, retry_total=0
        )
        self._container = self._service.get_container_client(CONTAINER)
        self._ready = False

    @property
    def endpoint(self) -> str:
        """scheme://host[:port] of the blob service, which the relay trusts for its own media URLs."""
        parts = urlsplit(self._service.url)
        return f"{parts.scheme}://{parts.netloc}"

    def put(self, name: str, content: bytes, content_type: str) -> None:
        try:
            self._ensure_container()
            self._container.upload_blob(
                name, content, overwrite=False, content_settings=ContentSettings(content_type=content_type)
            )
        except AzureError as exc:
            raise StoreError(f"blob upload failed: {type(exc).__name__}") from None

    def get(self, name: str) -> StoredBlob | None:
        try:
            downloader = self._container.download_blob(name)
            content = downloader.readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StoreError(f"blob read failed: {type(exc).__name__}") from None
        return StoredBlob(content, downloader.properties.content_settings.content_type or "application/octet-stream")

    def content_type(self, name: str) -> str | None:
        """The stored type of a blob, or None when there is no such blob."""
        try:
            properties = self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StoreError(f"blob lookup failed: {type(exc).__name__}") from None
        return str(properties.content_settings.content_type or "application/octet-stream")

    def signed_url(self, name: str, expires_at: datetime) -> str:
        """A read-only URL for this one blob until `expires_at`: what Twilio fetches, and nothing else can do."""
        credential = self._service.credential
        sas = generate_blob_sas(
            account_name=self._service.account_name or "",
            container_name=CONTAINER,
            blob_name=name,
            account_key=getattr(credential, "account_key", None),
            permission=BlobSasPermissions(read=True),
            expiry=expires_at,
        )
        return f"{self._container.get_blob_client(name).url}?{sas}"

    def purge(self, before: datetime) -> int:
        """Delete uploads last written before `before`; retention applies to pictures as to messages."""
        removed = 0
        try:
            if not self._container.exists():
                return 0
            for blob in self._container.list_blobs():
                if blob.last_modified is not None and blob.last_modified < before:
                    self._container.delete_blob(blob.name)
                    removed += 1
        except AzureError as exc:
            raise StoreError(f"blob purge failed: {type(exc).__name__}") from None
        return removed

    def _ensure_container(self) -> None:
        if self._ready:
            return
        with contextlib.suppress(ResourceExistsError):  # another instance made it first
            self._container.create_container()
        self._ready = True

    def close(self) -> None:
        self._service.close()
