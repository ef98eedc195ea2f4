"""Pure arithmetic of the benchmark: percentiles, rates, ratios and verdicts against targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) by linear interpolation between closest ranks.

    Raises ValueError on an empty sample: a latency figure made of nothing is a bug.
    """
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= pct <= 100:
        raise ValueError("percentile must be within 0..100")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when nothing was timed (avoids a division by zero)."""
    if seconds <= 0:
        return 0.0
    return count / seconds


def ratio(measured: float | None, ceiling: float | None) -> float | None:
    """``measured / ceiling`` or None when either side is missing or the ceiling is zero."""
    if measured is None or ceiling is None or ceiling <= 0:
        return None
    return measured / ceiling


@dataclass(frozen=True)
class Target:
    """A target as ``DESIGN.md`` states it: ``value`` is a floor (``at_least``) or a cap."""

    value: float
    at_least: bool = True

    def met(self, measured: float | None) -> bool | None:
        if measured is None:
            return None
        return measured >= self.value if self.at_least else measured <= self.value

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:g}"


def verdict(met: bool | None) -> str:
    """The word printed beside a figure."""
    if met is None:
        return "not measured"
    return "MET" if met else "NOT MET"


def summarize_latencies(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max of a latency sample in milliseconds (empty -> empty dict)."""
    if not values_ms:
        return {}
    return {
        "count": float(len(values_ms)),
        "p50_ms": percentile(values_ms, 50),
        "p90_ms": percentile(values_ms, 90),
        "p99_ms": percentile(values_ms, 99),
        "max_ms": float(max(values_ms)),
    }
