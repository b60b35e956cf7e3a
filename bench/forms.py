"""Signed Twilio inbound-SMS webhooks, shaped like the real ones, with unique MessageSids."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from bench.procs import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

_VALIDATOR = RequestValidator(AUTH_TOKEN)


class SidSource:
    """MessageSids unique across the run: a random run prefix and a counter, 32 hex digits after 'SM'."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"SM{self._prefix}{self._next:024x}"


def inbound_params(
    sid: str, index: int, body: str = "Running 5 minutes late, sorry!", sender: str | None = None
) -> dict[str, str]:
    """Every field Twilio posts for an incoming SMS; the sender varies so routing sees many phones."""
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": FROM_NUMBER,
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender or f"+1415555{2000 + index % 7000:04d}",
        "ApiVersion": "2010-04-01",
    }


def signed(url: str, params: dict[str, str]) -> tuple[bytes, str]:
    """The form body and X-Twilio-Signature Twilio would send to `url`."""
    return urlencode(params).encode("ascii"), _VALIDATOR.compute_signature(url, params)
