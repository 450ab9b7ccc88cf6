"""Percentiles by the nearest-rank rule, against values worked out by hand."""

from __future__ import annotations

import pytest
from benchkit.stats import nearest_rank, percentiles


def test_percentiles_of_five_values_are_values_that_were_measured() -> None:
    # Sorted: 15 20 35 40 50.  p50: rank ceil(2.5) = 3 -> 35; p95 and p99:
    # rank ceil(4.75) = ceil(4.95) = 5 -> 50; mean 160 / 5 = 32.
    assert percentiles([50, 15, 40, 20, 35]) == {
        "p50": 35,
        "p95": 50,
        "p99": 50,
        "mean": 32,
        "max": 50,
    }


def test_percentiles_of_one_to_hundred_pick_the_rank_itself() -> None:
    summary = percentiles([float(v) for v in range(100, 0, -1)])
    assert (summary["p50"], summary["p95"], summary["p99"]) == (50, 95, 99)
    assert summary["mean"] == 50.5
    assert summary["max"] == 100


def test_percentiles_round_to_hundredths() -> None:
    assert percentiles([1.23456, 2.34567]) == {
        "p50": 1.23,
        "p95": 2.35,
        "p99": 2.35,
        "mean": 1.79,  # 3.58023 / 2
        "max": 2.35,
    }


def test_no_values_give_no_figures() -> None:
    assert percentiles([]) == dict.fromkeys(["p50", "p95", "p99", "mean", "max"])


def test_nearest_rank_ends_and_misuse() -> None:
    ordered = [1.0, 2.0, 3.0, 4.0]
    assert nearest_rank(ordered, 0) == 1.0
    assert nearest_rank(ordered, 25) == 1.0
    assert nearest_rank(ordered, 26) == 2.0
    assert nearest_rank(ordered, 100) == 4.0
    with pytest.raises(ValueError):
        nearest_rank([], 50)
    with pytest.raises(ValueError):
        nearest_rank(ordered, 101)
