"""The built-in picture a virtual phone sends: a small valid PNG drawn in code, so nothing is shipped or fetched."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(size: int = 24) -> bytes:
    """A teal square with a white diagonal: recognisably an image when a person sees it in a chat."""
    teal, white = bytes((0x1F, 0x8A, 0x80)), bytes((0xFF, 0xFF, 0xFF))
    rows = (b"\x00" + b"".join(white if abs(x - y) <= 1 else teal for x in range(size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


SAMPLE_PNG = tiny_png()
