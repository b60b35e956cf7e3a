"""CSV files as a clinic exchanges them with its spreadsheet: UTF-8 (a BOM allowed), at most 1 MiB and 5,000
rows, a header row naming the columns; on export, cells a spreadsheet would run as a formula are neutralised."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from relay.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BYTES = 1024 * 1024
MAX_ROWS = 5000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_TYPES = frozenset({"text/csv", "application/csv", "application/vnd.ms-excel"})


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (row number, 1 = the first line after the header; cells by column)


def require_csv(content_type: str | None) -> None:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in CSV_TYPES:
        raise UnsupportedMediaType("Send the file as text/csv.", code="unsupported_media_type")


def read_table(raw: bytes, required: Sequence[str], optional: Sequence[str] = ()) -> Table:
    """The rows under a header that has every `required` column (any order, any case); others are refused."""
    if len(raw) > MAX_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_BYTES} bytes (1 MiB).", code="payload_too_large")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The file is not UTF-8 text; save it as CSV UTF-8.", code="invalid_csv") from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise BadRequest(f"The file is not valid CSV: {exc}.", code="invalid_csv") from None
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise BadRequest("The file has no header row.", code="invalid_csv")
    header = [cell.strip().lower() for cell in lines[0]]
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in (*required, *optional)]
    if missing or unknown or len(set(header)) != len(header):
        wanted = ",".join([*required, *(f"[{c}]" for c in optional)])
        raise BadRequest(f"The header row must be {wanted}.", code="invalid_csv")
    body = [(n, cells) for n, cells in enumerate(lines[1:], start=1) if any(c.strip() for c in cells)]
    if len(body) > MAX_ROWS:
        raise BadRequest(f"The file has {len(body)} rows; at most {MAX_ROWS} at once.", code="too_many_rows")
    rows = [
        (n, {col: _imported(cells[i]) if i < len(cells) else "" for i, col in enumerate(header)}) for n, cells in body
    ]
    return Table(header, rows)


def _imported(cell: str) -> str:
    """Strip one leading apostrophe: what our own export (or a spreadsheet) added to keep a formula inert."""
    value = cell.strip()
    return value[1:] if value.startswith("'") else value


def neutralised(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def write_table(columns: Sequence[str], rows: Iterable[Sequence[str | None]], free_text: Iterable[str]) -> bytes:
    """UTF-8 with a BOM (so spreadsheets read accents right); `free_text` columns are neutralised, phone
    numbers (which start with +) are not."""
    guarded = {columns.index(c) for c in free_text}
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralised(v or "") if i in guarded else (v or "") for i, v in enumerate(row)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
