"""Everything we ask of Twilio, through the twilio SDK, with its errors turned into ours."""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from twilio.base import values
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from relay.errors import Conflict, NotFound, PayloadTooLarge, Unavailable, UpstreamRefused
from relay.settings import Settings

log = logging.getLogger("relay.twilio")

TWILIO_MEDIA_HOSTS = frozenset({"api.twilio.com"})
OPTED_OUT = 21610
INVALID_STATUS_CALLBACK = 21609
MEDIA_LIST = "/Media.json"
MEDIA_MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class SentMessage:
    sid: str
    status: str
    to: str
    from_: str | None
    messaging_service_sid: str | None


@dataclass(frozen=True)
class Media:
    content: bytes
    content_type: str


@dataclass(frozen=True)
class InboundListing:
    params: dict[str, str]
    date_sent: datetime


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class TwilioGateway:
    def __init__(self, settings: Settings, *, timeout_seconds: float = 8.0) -> None:
        self._settings = settings
        self._timeout = timeout_seconds
        self._client = Client(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            http_client=TwilioHttpClient(timeout=timeout_seconds, pool_connections=True, max_retries=0),
            environment={"TWILIO_REGION": "", "TWILIO_EDGE": ""},
        )
        if settings.twilio_api_base_url:
            self._client.api.base_url = settings.twilio_api_base_url
        self._opener = urllib.request.build_opener(_NoRedirect())

    def send(self, to: str, body: str, media_urls: list[str], status_callback: str | None) -> SentMessage:
        kwargs: dict[str, Any] = {"to": to, "body": body}
        if self._settings.twilio_messaging_service_sid:
            kwargs["messaging_service_sid"] = self._settings.twilio_messaging_service_sid
        else:
            kwargs["from_"] = self._settings.twilio_from_number
        if media_urls:
            kwargs["media_url"] = media_urls
        if status_callback:
            kwargs["status_callback"] = status_callback
        with _twilio_errors():
            message = self._client.messages.create(**kwargs)
        return SentMessage(
            sid=str(message.sid),
            status=str(message.status),
            to=str(message.to),
            from_=message.from_,
            messaging_service_sid=message.messaging_service_sid,
        )

    def list_inbound(
        self, sent_after: datetime, *, to: str | None = None, service_sid: str | None = None, page_size: int = 100
    ) -> list[InboundListing]:
        """Inbound messages sent at or after `sent_after` (whole seconds), every page, oldest first.

        `to` lists one of our numbers; without it every message is listed and only those through
        `service_sid` are kept (the Messages list cannot filter by Messaging Service)."""
        after = sent_after.astimezone(UTC)  # the SDK formats the wall time as if it were UTC
        with _twilio_errors():
            records = self._client.messages.list(
                to=to if to else values.unset, date_sent_after=after, page_size=page_size
            )
            found = [self._listing(m) for m in reversed(records) if self._wanted(m, service_sid)]
        found.sort(key=lambda item: item.date_sent)  # stable: Twilio's order stands within a second
        return found

    def find_sent(self, to: str, body: str, since: datetime) -> SentMessage | None:
        """A message we sent to `to` with this body, created at or after `since`: the check before resending
        something an instance may have sent just before it died. Twilio lists newest first; one page is plenty."""
        ours = {self._settings.twilio_from_number, self._settings.twilio_messaging_service_sid} - {None}
        with _twilio_errors():
            records = self._client.messages.list(to=to, page_size=50, limit=50)
        for m in records:
            created = m.date_created
            from_us = m.from_ in ours or m.messaging_service_sid in ours
            if from_us and created is not None and created >= since and str(m.body or "") == body:
                return SentMessage(str(m.sid), str(m.status), str(m.to), m.from_, m.messaging_service_sid)
        return None

    @staticmethod
    def _wanted(m: Any, service_sid: str | None) -> bool:
        if not str(m.direction).startswith("inbound") or m.date_sent is None:
            return False
        return service_sid is None or m.messaging_service_sid == service_sid

    def _listing(self, m: Any) -> InboundListing:
        """The webhook's form, as far as the Message resource tells it; media URLs come from `media_params`."""
        params = {
            "MessageSid": str(m.sid),
            "SmsSid": str(m.sid),
            "SmsMessageSid": str(m.sid),
            "AccountSid": str(m.account_sid),
            "From": str(m.from_),
            "To": str(m.to),
            "Body": str(m.body or ""),
            "NumMedia": str(m.num_media or "0"),
            "NumSegments": str(m.num_segments or "1"),
            "SmsStatus": "received",
            "ApiVersion": str(m.api_version or "2010-04-01"),
        }
        if m.messaging_service_sid:
            params["MessagingServiceSid"] = str(m.messaging_service_sid)
        return InboundListing(params=params, date_sent=m.date_sent)

    def media_params(self, sid: str) -> dict[str, str]:
        """MediaUrlN/MediaContentTypeN as the webhook has them; media Twilio no longer lists is left out.

        A separate call, so a poller asks only for messages it has not stored yet."""
        with _twilio_errors():
            try:
                media = self._client.messages(sid).media.list(limit=10)
            except TwilioException as exc:
                # A list page that is not 200 is a plain TwilioException(message, response), not a RestException.
                if _status_of(exc) != 404:
                    raise
                log.warning("media of %s could not be listed (HTTP 404); stored without it", sid)
                return {}
        base = self._client.api.base_url.rstrip("/")
        params = {}
        for index, item in enumerate(media):
            params[f"MediaUrl{index}"] = base + str(item.uri).removesuffix(".json")
            params[f"MediaContentType{index}"] = str(item.content_type)
        return params

    def media_placeholders(self, sid: str, count: int) -> dict[str, str]:
        """For media that could not be listed: each MediaUrlN names the message's Media list and the index, so
        `fetch_media` lists it again when someone opens the attachment."""
        account = self._settings.twilio_account_sid
        base = f"{self._client.api.base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages/{sid}{MEDIA_LIST}"
        return {f"MediaUrl{index}": f"{base}#{index}" for index in range(min(count, 10))}

    def media_allowed(self, url: str) -> bool:
        """Credentials go only to Twilio's API host over https, or to the sandbox when it is configured."""
        parts = urlsplit(url)
        base = self._settings.twilio_api_base_url
        if base:
            b = urlsplit(base)
            return (parts.scheme, parts.hostname, parts.port) == (
                b.scheme,
                b.hostname,
                b.port,
            ) and parts.path.startswith(b.path)
        return parts.scheme == "https" and parts.hostname in TWILIO_MEDIA_HOSTS and parts.port in (None, 443)

    def fetch_media(self, url: str) -> Media:
        if not self.media_allowed(url):
            raise NotFound("That media is not hosted by Twilio.", code="media_not_found")
        parts = urlsplit(url)
        if parts.path.endswith(MEDIA_LIST) and parts.fragment.isdigit():
            url = self._listed_media(parts.path.removesuffix(MEDIA_LIST).rpartition("/")[2], int(parts.fragment))
        auth = f"{self._settings.twilio_account_sid}:{self._settings.twilio_auth_token}".encode()
        basic = {"Authorization": "Basic " + base64.b64encode(auth).decode()}
        request = urllib.request.Request(url, headers=basic)  # noqa: S310 - media_allowed() checked the scheme
        try:
            return self._read(self._opener.open(request, timeout=self._timeout))
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location") if 300 <= exc.code < 400 else None
            if location and self._cdn_allowed(location):
                # Twilio redirects to its CDN with a signed URL: follow it without our credentials.
                try:
                    cdn = urllib.request.Request(location)  # noqa: S310 - https only, checked above
                    return self._read(self._opener.open(cdn, timeout=self._timeout))
                except (urllib.error.URLError, OSError):
                    raise Unavailable("Twilio's media host could not be reached.", code="media_unavailable") from None
            if exc.code == 404:
                raise NotFound("Twilio no longer has that media.", code="media_not_found") from None
            raise Unavailable(f"Twilio answered {exc.code} for the media.", code="media_unavailable") from None
        except (urllib.error.URLError, OSError):
            raise Unavailable("Twilio's media host could not be reached.", code="media_unavailable") from None

    def _listed_media(self, sid: str, index: int) -> str:
        """The media URL a placeholder stands for, listed now; still unlisted is still unavailable."""
        try:
            found = self.media_params(sid).get(f"MediaUrl{index}")
        except (Unavailable, UpstreamRefused):
            raise Unavailable("Twilio could not list the message's media.", code="media_unavailable") from None
        if found is None:
            raise NotFound("Twilio no longer has that media.", code="media_not_found")
        return found

    def _cdn_allowed(self, location: str) -> bool:
        """Twilio's CDN is https; against the sandbox, whatever scheme the sandbox itself speaks."""
        scheme = urlsplit(location).scheme
        base = self._settings.twilio_api_base_url
        return scheme == "https" or bool(base and scheme == urlsplit(base).scheme)

    def _read(self, response: Any) -> Media:
        with response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MEDIA_MAX_BYTES:
                raise PayloadTooLarge("The media is larger than 5 MB.", code="media_too_large")
            content = response.read(MEDIA_MAX_BYTES + 1)
            if len(content) > MEDIA_MAX_BYTES:
                raise PayloadTooLarge("The media is larger than 5 MB.", code="media_too_large")
            content_type = response.headers.get("Content-Type", "application/octet-stream")
            return Media(content=content, content_type=content_type)


@contextmanager
def _twilio_errors() -> Iterator[None]:
    """Twilio's refusals keep their code; a transport failure is ours to report as unavailable."""
    try:
        yield
    except TwilioRestException as exc:
        raise _refusal(exc) from None
    except (TwilioException, OSError) as exc:
        raise Unavailable(f"Twilio could not be reached: {type(exc).__name__}.", code="twilio_unavailable") from None


def _status_of(exc: TwilioException) -> int | None:
    if isinstance(exc, TwilioRestException):
        return int(exc.status)
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _refusal(exc: TwilioRestException) -> Exception:
    code = int(exc.code) if exc.code is not None else None
    if code == OPTED_OUT:
        return Conflict("This number has opted out (replied STOP); it must text START first.", code="opted_out")
    if code == INVALID_STATUS_CALLBACK:
        # Every send fails the same way until the deployment is fixed: say what to fix, loudly.
        log.error(
            "Twilio refused our StatusCallback URL (21609): every send will fail until PUBLIC_BASE_URL, or the "
            "Host / X-Forwarded-Host the relay sees (TRUSTED_PROXY_HOPS), gives a public http(s) URL: %s",
            exc.msg,
        )
        return UpstreamRefused(
            "Twilio refused the relay's status-callback URL (21609): the relay's public address is misconfigured "
            "(PUBLIC_BASE_URL); tell the operator.",
            twilio_code=code,
        )
    log.warning("Twilio refused the request: HTTP %s, code %s", exc.status, code)
    return UpstreamRefused(f"Twilio refused the message: {exc.msg}", twilio_code=code)
