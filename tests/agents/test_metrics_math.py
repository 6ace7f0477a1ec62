"""Histogram math of the per-agent metrics: bucket bounds, percentiles, windows."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ymera.agents.metrics import bucket_index, bucket_range, quantile, window_bounds
from ymera.agents.schemas import MetricsWindow
from ymera.models.agent_metrics import HISTOGRAM_COLUMNS, HOUR, LATENCY_BOUNDS, MINUTE


def histogram(samples: list[float]) -> list[int]:
    counts = [0] * len(HISTOGRAM_COLUMNS)
    for sample in samples:
        counts[bucket_index(sample)] += 1
    return counts


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_bounds_are_log_spaced_and_buckets_are_upper_inclusive() -> None:
    assert LATENCY_BOUNDS[0] == pytest.approx(0.001)
    ratios = {round(b / a, 9) for a, b in itertools.pairwise(LATENCY_BOUNDS)}
    assert ratios == {round(math.sqrt(2), 9)}
    assert LATENCY_BOUNDS[-1] > 3 * 3600  # tasks of hours still land in a finite bucket
    assert bucket_index(0.0) == 0
    assert bucket_index(LATENCY_BOUNDS[0]) == 0  # (0, 1 ms]
    assert bucket_index(LATENCY_BOUNDS[0] * 1.0001) == 1
    assert bucket_index(LATENCY_BOUNDS[5]) == 5
    assert bucket_index(1e9) == len(LATENCY_BOUNDS) == len(HISTOGRAM_COLUMNS) - 1
    assert bucket_range(0) == (0.0, LATENCY_BOUNDS[0])
    assert bucket_range(len(LATENCY_BOUNDS)) == (LATENCY_BOUNDS[-1], math.inf)


def test_quantile_of_nothing_is_none() -> None:
    assert quantile([0] * len(HISTOGRAM_COLUMNS), 0.5) is None


def test_quantile_of_one_value_interpolates_to_its_bucket_upper_bound() -> None:
    counts = histogram([0.2])
    lower, upper = bucket_range(bucket_index(0.2))
    assert lower < 0.2 <= upper
    assert quantile(counts, 0.5) == pytest.approx(upper)
    assert quantile(counts, 0.95) == pytest.approx(upper)


def test_known_distribution() -> None:
    """90 fast (10 ms) and 10 slow (2 s) tasks: p50 is fast, p95 is slow."""
    samples = [0.01] * 90 + [2.0] * 10
    counts = histogram(samples)
    p50, p95 = quantile(counts, 0.5), quantile(counts, 0.95)
    assert p50 is not None
    assert p95 is not None
    assert 0.01 / math.sqrt(2) < p50 <= 0.01 * math.sqrt(2)
    assert 2.0 / math.sqrt(2) < p95 <= 2.0 * math.sqrt(2)


latencies = st.one_of(
    st.floats(min_value=0.0, max_value=20_000.0, allow_nan=False),
    st.sampled_from(LATENCY_BOUNDS),  # exactly on a bound
)


@given(st.lists(latencies, min_size=1, max_size=300), st.sampled_from([0.5, 0.95, 0.99]))
def test_quantile_from_buckets_lies_in_the_bucket_of_the_true_quantile(
    samples: list[float], q: float
) -> None:
    """The estimate from summed buckets and the exact nearest-rank quantile of the same
    samples fall in the same bucket, so they differ by less than a factor sqrt(2)."""
    estimate = quantile(histogram(samples), q)
    exact = nearest_rank(samples, q)
    lower, upper = bucket_range(bucket_index(exact))
    assert estimate is not None
    assert lower * (1 - 1e-9) <= estimate <= upper * (1 + 1e-9)
    if math.isinf(upper):
        assert estimate == lower
    elif lower > 0:
        assert max(estimate, exact) / max(min(estimate, exact), 1e-12) <= math.sqrt(2) * (1 + 1e-9)


@given(st.lists(latencies, min_size=1, max_size=100), st.lists(latencies, max_size=100))
def test_merging_buckets_is_adding_counts(a: list[float], b: list[float]) -> None:
    merged = [x + y for x, y in zip(histogram(a), histogram(b), strict=True)]
    assert merged == histogram(a + b)
    assert quantile(merged, 0.95) == quantile(histogram(a + b), 0.95)


def test_window_bounds() -> None:
    now = datetime(2026, 3, 2, 12, 3, 30, tzinfo=UTC)
    period, since = window_bounds(MetricsWindow.FIVE_MINUTES, now=now, minute_retention_hours=48)
    assert (period, since) == (MINUTE, datetime(2026, 3, 2, 11, 59, tzinfo=UTC))
    period, since = window_bounds(MetricsWindow.DAY, now=now, minute_retention_hours=48)
    assert (period, since) == (MINUTE, datetime(2026, 3, 1, 12, 4, tzinfo=UTC))
    period, since = window_bounds(MetricsWindow.WEEK, now=now, minute_retention_hours=48)
    assert (period, since) == (HOUR, datetime(2026, 2, 23, 13, 0, tzinfo=UTC))
    # Minute buckets kept for less than a day: the 24 h window reads hour buckets.
    period, _ = window_bounds(MetricsWindow.DAY, now=now, minute_retention_hours=12)
    assert period == HOUR
