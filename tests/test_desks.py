"""Desk rules: ids from names, aliases, names as hostile text, and RELAY_DESKS parsing."""

from __future__ import annotations

import pytest

from relay.desks import ALIAS_ALPHABET, DeskRuleError, DeskSpec, check_alias, clean_name, desk_id, generate_alias
from relay.desks import parse_desks as parse


def test_ids_are_the_name_lower_cased_with_everything_else_as_underscore() -> None:
    assert desk_id("Nurse line") == "nurse_line"
    assert desk_id("Réception-2") == "r_ception_2"
    assert "-" not in desk_id("a-b-c")


def test_relay_desks_parses_names_and_aliases_in_order() -> None:
    assert parse("Reception=R, Billing=bill ,Nurse line=N") == (
        DeskSpec("Reception", "R"),
        DeskSpec("Billing", "BILL"),
        DeskSpec("Nurse line", "N"),
    )
    assert parse("Reception")[0].alias is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("Reception=R,Billing=R", "alias_taken"),
        ("Reception=R,reception=X", "desk_exists"),
        ("Unrouted=U", "invalid_desk_name"),
        ("_hidden=H", "invalid_desk_name"),
        ("Reception=TOOLONG", "invalid_alias"),
        ("Reception=R!", "invalid_alias"),
        ("x" * 33 + "=X", "invalid_desk_name"),
        (" , ", "invalid_desk_name"),
    ],
)
def test_bad_relay_desks_values_are_refused(value: str, code: str) -> None:
    with pytest.raises(DeskRuleError) as refused:
        parse(value)
    assert refused.value.code == code


@pytest.mark.parametrize("name", ["", " ", "x" * 41, "Eve\u202e", "line\nbreak", "zero\u200bwidth", "\x00"])
def test_names_that_could_disguise_someone_are_refused(name: str) -> None:
    with pytest.raises(DeskRuleError):
        clean_name(name, what="Your name", code="invalid_staff_name")


def test_names_keep_what_people_are_called() -> None:
    assert clean_name("  María José 李 ", what="n", code="c") == "María José 李"
    assert clean_name("x" * 40, what="n", code="c") == "x" * 40


def test_configured_aliases_are_case_insensitive_and_generated_ones_avoid_look_alikes() -> None:
    assert check_alias("#bill") == "BILL"
    assert check_alias("0") == "0"  # an operator may choose any letters or digits
    assert generate_alias(set(), "Nurse line") == "N"
    taken = {"N"}
    made = {generate_alias(taken, "Nurse line") for _ in range(50)}
    assert all(2 <= len(a) <= 4 and set(a) <= set(ALIAS_ALPHABET) for a in made)
    assert not {"0", "O", "1", "I", "L"} & set("".join(made))
