"""Number rules a send must pass, whoever sends: the desk now, or a scheduled reminder later."""

from __future__ import annotations

import pytest

from relay.errors import Forbidden, SettingsError
from relay.phones import DEFAULT_NUMBER_TYPES, as_typed, number_type, require_allowed_type
from relay.settings import Settings


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        ("+14155550101", "FIXED_LINE_OR_MOBILE"),  # the sandbox's and the tests' patients
        ("+14155550199", "FIXED_LINE_OR_MOBILE"),
        ("+447911123456", "MOBILE"),
    ],
)
def test_numbers_patients_text_from_are_allowed(number: str, kind: str) -> None:
    assert number_type(number) == kind
    require_allowed_type(number, DEFAULT_NUMBER_TYPES)


@pytest.mark.parametrize(
    ("number", "kind"),
    [("+19005550199", "PREMIUM_RATE"), ("+18005551212", "TOLL_FREE"), ("+442079460958", "FIXED_LINE")],
)
def test_premium_and_other_types_are_refused(number: str, kind: str) -> None:
    with pytest.raises(Forbidden) as refused:
        require_allowed_type(number, DEFAULT_NUMBER_TYPES)
    assert refused.value.code == "number_type_not_allowed"
    assert kind in refused.value.message
    require_allowed_type(number, frozenset({kind}))


def test_allowed_number_types_is_a_list_of_phonenumbers_names() -> None:
    base = {
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "token",
        "TWILIO_FROM_NUMBER": "+14155550100",
        "RELAY_SIGNING_KEY": "k" * 40,
        "RELAY_ACCESS_CODE": "code",
    }
    assert Settings.from_mapping(base).allowed_number_types == {"MOBILE", "FIXED_LINE_OR_MOBILE", "VOIP"}
    chosen = Settings.from_mapping({**base, "ALLOWED_NUMBER_TYPES": "mobile, fixed_line"})
    assert chosen.allowed_number_types == {"MOBILE", "FIXED_LINE"}
    with pytest.raises(SettingsError) as failed:
        Settings.from_mapping({**base, "ALLOWED_NUMBER_TYPES": "MOBILE,PREMIUM"})
    assert failed.value.name == "ALLOWED_NUMBER_TYPES"


@pytest.mark.parametrize(
    ("typed", "regions", "e164"),
    [
        ("+14155550101", frozenset({"GB"}), "+14155550101"),  # a + needs no region
        ("(415) 555-0101", frozenset({"US"}), "+14155550101"),
        ("415 555 0101", frozenset({"US"}), "+14155550101"),
        ("415.555.0101", frozenset({"GB", "US"}), "+14155550101"),  # not valid in GB, valid in US
        ("07911 123456", frozenset({"GB", "US"}), "+447911123456"),
        ("555 01", frozenset({"US"}), None),  # part of a number is no number
        ("hello", frozenset({"US"}), None),
    ],
)
def test_a_number_as_people_type_it(typed: str, regions: frozenset[str], e164: str | None) -> None:
    assert as_typed(typed, regions) == e164
