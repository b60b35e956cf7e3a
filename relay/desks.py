"""What a desk is and the rules for its id, name and alias, shared by the settings, the store and the API.

A desk is a web app: its id is its MQTT topic segment, so it is `[a-z0-9_]{1,32}` and never contains `-`,
which the broker uses to tie a client id (`<desk>-...`) to a token.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

UNROUTED = "unrouted"
DESK_ID = re.compile(r"^[a-z0-9_]{1,32}$")
ALIAS = re.compile(r"^[A-Za-z0-9]{1,4}$")
MAX_NAME = 40
# Generated aliases avoid look-alikes (0/O, 1/I/L) so a patient reading them off a text types them right.
ALIAS_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
DEFAULT_DESKS = "Reception=R,Billing=B"


class DeskRuleError(ValueError):
    """A desk id, name or alias breaks a rule; the message says which, in words for a person."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Desk:
    id: str
    name: str
    alias: str  # without '#', upper case
    archived: bool = False

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "alias": self.alias}


@dataclass(frozen=True)
class DeskSpec:
    """A desk as configured in RELAY_DESKS: the alias is None where the relay should generate one."""

    name: str
    alias: str | None

    @property
    def id(self) -> str:
        return desk_id(self.name)


def clean_name(value: object, *, what: str, code: str, limit: int = MAX_NAME) -> str:
    """1-40 code points after trimming, with no control, format (bidi) or unassigned characters: names are shown
    beside patient messages and in logs, where an RLO or a newline would let one person disguise another."""
    if not isinstance(value, str):
        raise DeskRuleError(f"{what} must be a string of 1 to {limit} characters.", code)
    name = unicodedata.normalize("NFC", value.strip())
    if not 1 <= len(name) <= limit:
        raise DeskRuleError(f"{what} must be 1 to {limit} characters.", code)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name):
        raise DeskRuleError(f"{what} may not contain control or direction-changing characters.", code)
    return name


def desk_id(name: str) -> str:
    """The name lower-cased, every character outside [a-z0-9] turned into '_' (`Nurse line` -> `nurse_line`)."""
    return "".join(c if ("a" <= c <= "z" or "0" <= c <= "9") else "_" for c in name.lower())


def check_desk_id(value: str) -> str:
    if not DESK_ID.match(value):
        raise DeskRuleError(
            f"The desk id '{value[:40]}' must be 1 to 32 of a-z, 0-9 and _: shorten the name.", "invalid_desk_name"
        )
    if value == UNROUTED or value.startswith("_"):
        raise DeskRuleError(f"'{value}' is reserved; choose another desk name.", "invalid_desk_name")
    return value


def check_alias(value: object) -> str:
    if not isinstance(value, str) or not ALIAS.match(value.strip().lstrip("#")):
        raise DeskRuleError("An alias is 1 to 4 letters or digits, such as R or BILL.", "invalid_alias")
    return value.strip().lstrip("#").upper()


def generate_alias(taken: set[str], name: str) -> str:
    """The name's first unambiguous letter if free, then two, three, four random letters from the safe set."""
    initial = next((c for c in name.upper() if c in ALIAS_ALPHABET), "")
    if initial and initial not in taken:
        return initial
    for attempt in range(60):
        length = 2 if attempt < 20 else 3 if attempt < 40 else 4
        code = "".join(secrets.choice(ALIAS_ALPHABET) for _ in range(length))
        if code not in taken:
            return code
    raise RuntimeError("no free alias after 60 attempts")


def parse_desks(value: str) -> tuple[DeskSpec, ...]:
    """`Reception=R,Billing=BILL,Nurse line=N`; raises DeskRuleError naming the entry at fault."""
    specs: list[DeskSpec] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name_part, sep, alias_part = entry.partition("=")
        name = clean_name(name_part, what=f"The desk name in '{entry}'", code="invalid_desk_name")
        check_desk_id(desk_id(name))
        specs.append(DeskSpec(name, check_alias(alias_part) if sep else None))
    if not specs:
        raise DeskRuleError("list at least one desk, such as Reception=R", "invalid_desk_name")
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise DeskRuleError("two desks have the same id (names differ only in case or punctuation)", "desk_exists")
    aliases = [s.alias for s in specs if s.alias]
    if len(set(aliases)) != len(aliases):
        raise DeskRuleError("two desks have the same alias", "alias_taken")
    return tuple(specs)
