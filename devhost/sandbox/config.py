"""Configuration of the Twilio sandbox: which account, numbers and webhook it plays against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class SandboxConfig:
    """What the fake Twilio account looks like; mirrors the settings our Functions read."""

    account_sid: str
    auth_token: str
    from_number: str | None
    messaging_service_sid: str | None
    service_numbers: tuple[str, ...] = ()
    webhook_url: str = ""
    public_base_url: str | None = None
    status_delay_seconds: float = 0.05
    # Twilio promises no order for status callbacks: each waits a random 0..jitter ms of its own when set.
    callback_jitter_ms: int = 0
    # Advanced Opt-Out: Twilio answers STOP/START/HELP itself and tells the webhook so in OptOutType.
    advanced_opt_out: bool = False
    # Webhook signing with a shared key (HMAC-SHA256) instead of the Auth Token, as Twilio does once configured.
    webhook_shared_key: str | None = field(default=None, repr=False)
    webhook_shared_key_id: str = "webhooks_sharedkey_sandbox"

    @classmethod
    def options_from(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """The sandbox-only knobs a developer or a test sets in the environment (SANDBOX_*)."""
        options: dict[str, Any] = {}
        if jitter := env.get("SANDBOX_CALLBACK_JITTER_MS", "").strip():
            if not jitter.isdigit():
                raise ValueError("SANDBOX_CALLBACK_JITTER_MS must be a whole number of milliseconds")
            options["callback_jitter_ms"] = int(jitter)
        if delay := env.get("SANDBOX_STATUS_DELAY_MS", "").strip():
            if not delay.isdigit():
                raise ValueError("SANDBOX_STATUS_DELAY_MS must be a whole number of milliseconds")
            options["status_delay_seconds"] = int(delay) / 1000
        if env.get("SANDBOX_ADVANCED_OPT_OUT", "").strip().lower() in ("1", "true", "yes", "on"):
            options["advanced_opt_out"] = True
        return options

    @property
    def pool(self) -> tuple[str, ...]:
        """Numbers a Messaging Service may send from; falls back to from_number when the pool is empty."""
        if self.service_numbers:
            return self.service_numbers
        return (self.from_number,) if self.from_number else ()

    @property
    def our_numbers(self) -> tuple[str, ...]:
        """Every number this account owns, from_number first, so defaults are predictable."""
        numbers = [self.from_number] if self.from_number else []
        numbers += [n for n in self.service_numbers if n not in numbers]
        return tuple(numbers)

    def signed_url(self, local_url: str) -> str:
        """The URL Twilio would have called for a local one: behind a tunnel it signs the public address."""
        if not self.public_base_url:
            return local_url
        return self.public_base_url.rstrip("/") + _path_and_query(local_url)

    def reachable_url(self, callback_url: str) -> str:
        """Where to POST a callback our app gave as a public URL: the same path on the webhook's local origin."""
        base = (self.public_base_url or "").rstrip("/")
        if not base or not self.webhook_url or not callback_url.startswith(base + "/"):
            return callback_url
        local = urlsplit(self.webhook_url)
        return f"{local.scheme}://{local.netloc}" + callback_url[len(base) :]
