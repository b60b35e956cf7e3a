"""Runs the app's timer triggers on their NCRONTAB schedules, as the Functions host does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("devhost.timers")

# second minute hour day month day-of-week, as Azure's NCRONTAB
FIELD_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
SETTING = re.compile(r"^%([A-Za-z0-9_]+)%$")


def resolve_schedule(schedule: str, environ: dict[str, str] | None = None) -> str:
    """`%NAME%` names an app setting, as Azure allows."""
    match = SETTING.match(schedule.strip())
    if not match:
        return schedule
    env = os.environ if environ is None else environ
    value = env.get(match.group(1))
    if not value:
        raise ValueError(f"timer schedule refers to {match.group(1)}, which is not set")
    return value


def _field(spec: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(base)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ValueError(f"'{part}' is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    fields: tuple[frozenset[int], ...]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError(f"NCRONTAB needs six fields (second to day-of-week): {expression!r}")
        return cls(tuple(_field(p, lo, hi) for p, (lo, hi) in zip(parts, FIELD_RANGES, strict=True)))

    def matches(self, at: datetime) -> bool:
        dow = (at.weekday() + 1) % 7  # NCRONTAB: 0 is Sunday
        values = (at.second, at.minute, at.hour, at.day, at.month, dow)
        return all(v in f for v, f in zip(values, self.fields, strict=True))


@dataclass(frozen=True)
class TimerJob:
    name: str
    schedule: Schedule
    run: Callable[[], None]


async def run_timers(jobs: list[TimerJob], stop: asyncio.Event) -> None:
    """Tick once a second; a job still running when it is due again is skipped, not stacked."""
    running: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()
    last = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        second = int(now.timestamp())
        if second != last:
            last = second
            for job in jobs:
                if job.name not in running and job.schedule.matches(now):
                    running.add(job.name)
                    task = asyncio.create_task(_run(job, running))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0 - (now.timestamp() % 1.0) + 0.01)
    if tasks:
        await asyncio.wait(tasks, timeout=10)


async def _run(job: TimerJob, running: set[str]) -> None:
    try:
        await asyncio.to_thread(job.run)
    except Exception:
        log.exception("timer %s failed", job.name)
    finally:
        running.discard(job.name)
