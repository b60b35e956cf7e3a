"""How many SMS a text costs, as webclient/segments.js counts it: GSM-7 (with its extension table, two septets a
character) fits 160 in one SMS and 153 per part; anything outside GSM-7 makes the whole text UCS-2, 70 UTF-16
units in one SMS and 67 per part."""

from __future__ import annotations

from dataclasses import dataclass

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Segments:
    segments: int
    encoding: str  # GSM-7 or UCS-2


def count(text: str) -> Segments:
    septets = 0
    for ch in text:
        if ch in GSM_BASIC:
            septets += 1
        elif ch in GSM_EXTENSION:
            septets += 2
        else:
            units = len(text.encode("utf-16-le")) // 2
            return Segments(1 if units <= 70 else -(-units // 67), "UCS-2")
    return Segments(0 if septets == 0 else 1 if septets <= 160 else -(-septets // 153), "GSM-7")
