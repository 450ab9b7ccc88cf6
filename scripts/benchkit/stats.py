"""Summaries of measured values: percentiles by the nearest-rank rule, mean and max.

The rule is nearest rank (the value at 1-based position ``ceil(p / 100 * n)``
of the sorted values), so every reported percentile is a value that was
actually measured, and a figure stays comparable with earlier runs of the
benchmarks.  ``statistics.quantiles`` interpolates between neighbours
instead, which would report latencies nobody saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Digits kept in a report: hundredths of a millisecond are below the noise.
DIGITS = 2
PERCENTILES = (50, 95, 99)

Summary = dict[str, float | None]


def nearest_rank(ordered: Sequence[float], percent: float) -> float:
    """The ``percent`` percentile of values sorted in ascending order (nearest rank).

    Raises ``ValueError`` on an empty sequence or a percentage outside 0..100.
    """
    if not ordered:
        raise ValueError("no values")
    if not 0 <= percent <= 100:
        raise ValueError(f"percentage {percent} is not within 0..100")
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(0, min(len(ordered) - 1, rank - 1))]


def percentiles(values: Sequence[float]) -> Summary:
    """p50, p95, p99, mean and max of ``values`` in their own unit; all None when empty."""
    keys = [f"p{p}" for p in PERCENTILES] + ["mean", "max"]
    if not values:
        return dict.fromkeys(keys)
    ordered = sorted(values)
    summary: Summary = {f"p{p}": round(nearest_rank(ordered, p), DIGITS) for p in PERCENTILES}
    summary["mean"] = round(sum(ordered) / len(ordered), DIGITS)
    summary["max"] = round(ordered[-1], DIGITS)
    return summary
