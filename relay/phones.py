"""Phone numbers: parsed and normalised to E.164 with phonenumbers, masked for logs."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

from relay.errors import BadRequest, Forbidden

# PhoneNumberType's names: MOBILE, FIXED_LINE_OR_MOBILE, VOIP, PREMIUM_RATE, TOLL_FREE, SHARED_COST, ...
NUMBER_TYPES = {name: value for name, value in vars(PhoneNumberType).items() if name.isupper()}
TYPE_NAMES = {value: name for name, value in NUMBER_TYPES.items()}
DEFAULT_NUMBER_TYPES = frozenset({"MOBILE", "FIXED_LINE_OR_MOBILE", "VOIP"})


def normalise(raw: object, *, field: str = "to") -> str:
    """E.164 for a valid number, or a 400 naming the field."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest(
            f"'{field}' must be a phone number in E.164 form, such as +14155550101.", code="invalid_number"
        )
    try:
        parsed = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        raise BadRequest(
            f"'{field}' is not a phone number; use E.164 such as +14155550101.", code="invalid_number"
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise BadRequest(f"'{field}' is not a valid phone number.", code="invalid_number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def region_of(e164: str) -> str:
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or "ZZ"


def require_allowed_region(e164: str, allowed: frozenset[str]) -> None:
    """Guards against premium-rate pumping to regions the desk has no business texting."""
    region = region_of(e164)
    if region not in allowed:
        raise Forbidden(
            f"Texting numbers in {region} is not allowed here (ALLOWED_COUNTRIES is {', '.join(sorted(allowed))}).",
            code="country_not_allowed",
        )


def number_type(e164: str) -> str:
    return TYPE_NAMES.get(phonenumbers.number_type(phonenumbers.parse(e164)), "UNKNOWN")


def require_allowed_type(e164: str, allowed: frozenset[str]) -> None:
    """Toll fraud: premium-rate, shared-cost and the like pay whoever owns them for every text we send, so only
    types a patient texts from are allowed. For every send, the desk's now and a scheduled one later."""
    kind = number_type(e164)
    if kind not in allowed:
        raise Forbidden(
            f"Texting {kind} numbers is not allowed here (ALLOWED_NUMBER_TYPES is {', '.join(sorted(allowed))}).",
            code="number_type_not_allowed",
        )


def mask(value: str | None) -> str:
    """+14155550101 -> +1415***0101: enough to correlate, not enough to identify."""
    if not value:
        return ""
    if not value.startswith("+") or len(value) < 9:
        return value[:2] + "***" if value.startswith(("MG", "AC")) else "***"
    return f"{value[:5]}***{value[-4:]}"


def as_typed(raw: str, regions: frozenset[str]) -> str | None:
    """E.164 for a number however it is spelled (`415 555 0101`, `(415) 555-0101`, `+14155550101`): with a + as
    it stands, without one in the first of `regions` where it is valid. None when it is no valid number."""
    text = raw.strip()
    for region in [None] if text.startswith("+") else sorted(regions):
        try:
            parsed = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None
