"""Twilio webhook authentication: the signature is checked with the twilio SDK against the URL Twilio called."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import HMAC_SHA1, RequestValidator, compare, get_signature_algorithm

from relay.errors import Forbidden
from relay.settings import Settings

log = logging.getLogger("relay.webhooks")


@dataclass(frozen=True)
class WebhookRequest:
    """What the HTTP adapter saw, with nothing of Azure in it."""

    url: str
    headers: Mapping[str, str]  # lower-case names
    params: Mapping[str, str]  # the first value of each key, which is what the relay reads
    pairs: tuple[tuple[str, str], ...] = ()  # every key and value as posted, repeats included, for the signature


def forwarded(headers: Mapping[str, str], name: str, hops: int) -> str | None:
    """The value the nearest trusted proxy saw: `hops` entries from the right of a comma list."""
    value = headers.get(name)
    if hops <= 0 or not value:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts[-hops] if len(parts) >= hops else parts[0] if parts else None


def public_url(settings: Settings, url: str, headers: Mapping[str, str]) -> str:
    """The URL Twilio called: PUBLIC_BASE_URL when set, else the request's own, as trusted proxies say."""
    parts = urlsplit(url)
    if settings.public_base_url:
        base = urlsplit(settings.public_base_url)
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))
    scheme = forwarded(headers, "x-forwarded-proto", settings.trusted_proxy_hops) or parts.scheme
    host = forwarded(headers, "x-forwarded-host", settings.trusted_proxy_hops) or parts.netloc
    return urlunsplit((scheme, host, parts.path, parts.query, ""))


def public_base(settings: Settings, url: str, headers: Mapping[str, str]) -> str:
    """The base for our StatusCallback; empty (no callback) for a host we do not own, whose callbacks we refuse."""
    called = public_url(settings, url, headers)
    parts = urlsplit(called)
    if settings.public_base_url:
        return settings.public_base_url
    if not owned(settings, called):
        log.warning("no StatusCallback: %s is not a host this deployment owns (see WEBHOOK_HOSTS)", parts.netloc)
        return ""
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def owned(settings: Settings, url: str) -> bool:
    """With PUBLIC_BASE_URL unset the URL comes from the Host header, which anyone can write: it must name this
    deployment (WEBHOOK_HOSTS, WEBSITE_HOSTNAME, the local host's bound address), or a webhook signed for another
    deployment on the same Twilio account replays here."""
    if settings.public_base_url:
        return True
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    hosts = settings.webhook_hosts
    try:
        return host in hosts or (parts.port is not None and f"{host}:{parts.port}" in hosts)
    except ValueError:
        return False


class WebhookValidator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._account = RequestValidator(settings.twilio_auth_token)
        self._shared = (
            RequestValidator(settings.twilio_webhook_shared_key) if settings.twilio_webhook_shared_key else None
        )

    def validate(self, request: WebhookRequest) -> None:
        """Raise 403 unless X-Twilio-Signature is right; logs what was tried, never the token or body."""
        url = public_url(self._settings, request.url, request.headers)
        if not owned(self._settings, url):
            log.warning("webhook for a host this deployment does not own: url=%s (see WEBHOOK_HOSTS)", url)
            raise Forbidden("This host is not one this deployment serves (WEBHOOK_HOSTS).", code="host_not_allowed")
        signature = request.headers.get("x-twilio-signature", "")
        algorithm = get_signature_algorithm(request.headers.get("x-twilio-webhooks-signature-settings"))
        validator = self._account if algorithm == HMAC_SHA1 else self._shared
        form = _FormValues.of(request)
        if signature and validator is not None and _signed(validator, url, form, signature, algorithm):
            return
        log.warning(
            "webhook signature rejected: url=%s algorithm=%s signature=%s params=%s",
            url,
            algorithm,
            "present" if signature else "missing",
            ",".join(sorted(request.params)),
        )
        raise Forbidden("The Twilio signature is missing or does not match.", code="invalid_signature")


class _FormValues(dict[str, list[str]]):
    """Every value of each key, through the `getall` the SDK asks a multi-dict for: Twilio signs them all."""

    @classmethod
    def of(cls, request: WebhookRequest) -> _FormValues:
        form = cls()
        for name, value in request.pairs or tuple(request.params.items()):
            form.setdefault(name, []).append(value)
        return form

    def getall(self, name: str) -> list[str]:
        return self[name]


def _signed(validator: RequestValidator, url: str, params: _FormValues, signature: str, algorithm: str) -> bool:
    """The SDK's check, which signs the URL both with and without its port. The URL exactly as called is one of
    the two, so the SDK signs that alone first: half the cost (~70 µs) of every genuine webhook, and the full
    check for anything else."""
    try:
        if compare(validator.compute_signature(url, params, algorithm), signature):
            return True
    except ValueError:  # an algorithm the SDK does not know: validate() logs it and refuses
        pass
    return bool(validator.validate(url, params, signature, algorithm))
