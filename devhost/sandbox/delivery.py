"""Outbound message lifecycle: sender choice, status progression and signed status callbacks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import mimetypes
import random
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import SandboxConfig
from .numbers import segment_count
from .state import Media, Message, SandboxState, new_sid, utcnow
from .webhooks import CALLBACK_TIMEOUT, post_signed, status_params, tls_context

log = logging.getLogger(__name__)

# Reserved destinations that fail after being sent, keyed by the number's last four digits.
FAILURES: dict[str, tuple[str, int, str]] = {
    "0199": ("failed", 30003, "Unreachable destination handset"),
    "0198": ("undelivered", 30005, "Unknown destination handset"),
}
MEDIA_TIMEOUT = httpx.Timeout(10.0)
MEDIA_LIMIT = 5 * 1024 * 1024  # Twilio's limit for the pictures it sends on to the handset


def _content_type(url: str) -> str:
    return mimetypes.guess_type(urlsplit(url).path)[0] or "application/octet-stream"


def send_outbound(
    state: SandboxState,
    config: SandboxConfig,
    *,
    to: str,
    from_: str | None,
    body: str,
    direction: str,
    media_urls: tuple[str, ...] = (),
    messaging_service_sid: str | None = None,
    status_callback: str | None = None,
) -> Message:
    """Accept a message from us to a phone and let it progress in the background like Twilio's queue."""
    message = state.add_message(
        sid=new_sid("MM" if media_urls else "SM"),
        from_=from_,
        to=to,
        body=body,
        direction=direction,
        status="queued" if from_ else "accepted",
        num_segments=segment_count(body),
        messaging_service_sid=messaging_service_sid,
        status_callback=status_callback,
        media=tuple(Media(new_sid("ME"), _content_type(url), url) for url in media_urls),
    )
    state.spawn(_progress(state, config, message.sid))
    return message


def _sticky_sender(state: SandboxState, config: SandboxConfig, phone: str) -> str:
    """Twilio's sticky sender: the pool number this phone last talked to, else the first in the pool."""
    partner = state.partner(phone)
    return partner if partner in config.pool else config.pool[0]


async def _progress(state: SandboxState, config: SandboxConfig, sid: str) -> None:
    """queued (or accepted, for a Messaging Service), sent, then the outcome; a callback for each change only,
    so none for the status the message was created with, as Twilio does."""
    message = state.get_message(sid)
    if message is None:
        return
    sender = message.from_ or _sticky_sender(state, config, message.to)
    final, error_code, error_message = FAILURES.get(message.to[-4:], ("delivered", None, None))
    if message.media:
        media, failure = await _fetch_media(message.media)
        state.update_message(sid, media=media)
        if failure is not None:
            final, (error_code, error_message) = "failed", failure
    for status in ("queued", "sent", final):
        await asyncio.sleep(config.status_delay_seconds)
        previous = message.status
        changes: dict[str, Any] = {"status": status, "from_": sender}
        if status == "sent":
            changes["date_sent"] = utcnow()
        if status == final and error_code is not None:
            changes.update(error_code=error_code, error_message=error_message)
        message = state.update_message(sid, **changes)
        if not message.status_callback or status == previous:
            continue
        if config.callback_jitter_ms:
            # Each callback on its own random delay: they may overtake one another, as Twilio's may.
            delay = random.uniform(0, config.callback_jitter_ms / 1000)
            state.spawn(_status_callback(state, config, message, message.status_callback, delay))
        else:
            await _status_callback(state, config, message, message.status_callback)


async def _fetch_media(media: tuple[Media, ...]) -> tuple[tuple[Media, ...], tuple[int, str] | None]:
    """Twilio fetches every MediaUrl itself when it sends, without credentials, and keeps its own copy for the
    handset; a URL it cannot fetch fails the message (11200), as a picture over its limit does (30019)."""
    fetched = []
    async with httpx.AsyncClient(timeout=MEDIA_TIMEOUT, verify=tls_context(), follow_redirects=True) as client:
        for item in media:
            try:
                response = await client.get(item.url, headers={"User-Agent": "TwilioProxy/1.1"})
            except httpx.HTTPError as exc:
                log.warning("media %s not fetched: %r", item.sid, exc)
                return media, (11200, "HTTP retrieval failure")
            if response.status_code >= 400:
                return media, (11200, "HTTP retrieval failure")
            if len(response.content) > MEDIA_LIMIT:
                return media, (30019, "Content size exceeds carrier limit")
            kind = response.headers.get("content-type", item.content_type).split(";")[0].strip()
            fetched.append(dataclasses.replace(item, content_type=kind, data=response.content))
    return tuple(fetched), None


async def _status_callback(
    state: SandboxState, config: SandboxConfig, message: Message, url: str, delay: float = 0.0
) -> None:
    """One signed callback, timed into the callback log; our app being down or slow must not break the sandbox."""
    await asyncio.sleep(delay)
    start = time.perf_counter()
    try:
        response = await post_signed(
            config,
            config.reachable_url(url),
            url,
            status_params(message, config.account_sid),
            CALLBACK_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        state.record_callback(message.sid, message.status, 0, time.perf_counter() - start)
        log.warning("status callback %s for %s failed: %r", message.status, message.sid, exc)
        return
    state.record_callback(message.sid, message.status, response.status_code, time.perf_counter() - start)
    if response.status_code >= 400:
        log.warning("status callback %s for %s answered %s", message.status, message.sid, response.status_code)
