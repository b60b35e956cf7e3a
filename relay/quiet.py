"""Quiet hours: when the clinic does not text patients, in the clinic's own time zone (RELAY_TIMEZONE).

Local times are resolved as a person reading a clock would: one that does not exist on the day the clocks go
forward moves forward to the first minute that does, and one that happens twice when they go back is the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relay.clock import iso
from relay.errors import Conflict

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
MAX_GAP_MINUTES = 24 * 60  # no zone skips more than a day


def zone(name: str) -> ZoneInfo:
    """Raises ValueError for a name that is not an IANA zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not an IANA time zone such as Europe/London") from None


def parse_window(value: str) -> tuple[time, time] | None:
    """`21:00-08:00` (over midnight) or `12:00-13:00`; empty means none. Raises ValueError."""
    if not value:
        return None
    m = _WINDOW.match(value.replace(" ", ""))
    if not m:
        raise ValueError("must be HH:MM-HH:MM, such as 21:00-08:00")
    start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
    if start == end:
        raise ValueError("start and end must differ")
    return start, end


def local_moment(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant a wall clock in `tz` shows `at` on `day` (first occurrence; forward out of a gap), in UTC."""
    naive = datetime.combine(day, at)
    for _ in range(MAX_GAP_MINUTES):
        aware = naive.replace(tzinfo=tz, fold=0)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
            return aware.astimezone(UTC)
        naive += timedelta(minutes=1)
    raise ValueError(f"no such local time near {day} {at} in {tz.key}")


class QuietHoursError(Conflict):
    """409 quiet_hours, saying when the message could go."""

    code = "quiet_hours"

    def __init__(self, allowed_at: datetime) -> None:
        super().__init__(
            f"It is quiet hours; the message could go at {iso(allowed_at)}. Schedule it with sendAt, or send with "
            "ignoreQuietHours to send now anyway.",
            code="quiet_hours",
        )
        self.allowed_at = allowed_at

    def to_json(self) -> dict[str, object]:
        body = super().to_json()
        error = body["error"]
        assert isinstance(error, dict)
        error["allowedAt"] = iso(self.allowed_at)
        return body


@dataclass(frozen=True)
class QuietHours:
    tz: ZoneInfo
    window: tuple[time, time] | None

    def inside(self, at: datetime) -> bool:
        if self.window is None:
            return False
        start, end = self.window
        now = at.astimezone(self.tz).time()
        return (start <= now < end) if start < end else (now >= start or now < end)

    def next_allowed(self, at: datetime) -> datetime:
        """`at` itself outside quiet hours, else the end of the quiet hours it falls in."""
        if self.window is None or not self.inside(at):
            return at
        start, end = self.window
        local = at.astimezone(self.tz)
        day = local.date() + timedelta(days=1) if start > end and local.time() >= start else local.date()
        return local_moment(day, end, self.tz)

    def check_now(self, at: datetime, ignore: bool) -> None:
        if not ignore and self.inside(at):
            raise QuietHoursError(self.next_allowed(at))
