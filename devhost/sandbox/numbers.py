"""Phone-number facts Twilio derives: validity, geography, opt-out keywords and segment counts."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import phonenumbers
from phonenumbers import geocoder

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def to_e164(raw: str) -> str | None:
    """Normalise an international number the way Twilio accepts it, or None when it is not a real number."""
    try:
        parsed = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Place:
    """The geography Twilio puts in webhook From*/To* fields."""

    city: str
    state: str
    zip: str
    country: str


def place_of(number: str) -> Place:
    """Country from the region code; city and state from the geocoder's "City, ST" when it has one."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return Place("", "", "", "")
    country = phonenumbers.region_code_for_number(parsed) or ""
    city, _, state = geocoder.description_for_number(parsed, "en").partition(", ")
    if not state:
        return Place("", "", "", country)
    return Place(city.upper(), state, "", country)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def valid_url(url: str) -> bool:
    """What Twilio takes for a StatusCallback or MediaUrl: an absolute http(s) URL on a well-formed host name
    (letters, digits and hyphens: an underscore is refused) or an IP address."""
    if not url or any(c.isspace() for c in url) or not url.isascii():
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return all(_HOST_LABEL.match(label) for label in host.removesuffix(".").split("."))
    return True


def keyword(body: str) -> str:
    """Twilio matches opt-out keywords on the whole trimmed body, case-insensitively."""
    return body.strip().upper()


def segment_count(body: str) -> int:
    """Segments as carriers count them: GSM-7 160/153 septets, otherwise UCS-2 70/67 code units."""
    if not body:
        return 1
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in body):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)
