"""Percentiles by nearest rank, in milliseconds, and the small summaries the report prints."""

from __future__ import annotations

import math
from dataclasses import dataclass


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Summary:
    """Latencies in ms; `lost` counts samples that never arrived within the timeout."""

    n: int
    p50: float
    p99: float
    p999: float
    lost: int = 0

    @classmethod
    def of(cls, seconds: list[float], lost: int = 0) -> Summary:
        ms = sorted(s * 1000 for s in seconds)
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), percentile(ms, 99.9), lost)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
