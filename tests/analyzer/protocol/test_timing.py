"""ms_between, percentile and GapStats: exact values."""

from __future__ import annotations

import pytest

from analyzer.protocol.timing import GapStats, ms_between, percentile


@pytest.mark.parametrize(
    ("start", "end", "ms"),
    [(1.0, 1.25, 250.0), (10.0, 10.0001234, 0.123), (2.0, 1.5, -500.0), (None, 1.0, None), (1.0, None, None)],
)
def test_ms_between(start: float | None, end: float | None, ms: float | None) -> None:
    assert ms_between(start, end) == ms


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([5.0], 95, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([0.0, 10.0], 95, 9.5),
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 95, 9.55),
    ],
)
def test_percentile_interpolates_like_numpy(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == pytest.approx(expected, abs=1e-12)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 50)


def test_gap_stats_of_a_stream() -> None:
    gaps = GapStats()
    for at in (10.000, 10.010, 10.030, 10.060, 10.061):
        gaps.add(at)
    assert (gaps.first_at, gaps.last_at, gaps.count) == (10.000, 10.061, 5)
    assert gaps.rate_per_s() == round(4 / 0.061, 3)
    assert gaps.percentile_ms(50) == 15.0
    assert gaps.percentile_ms(95) == 28.5
    assert gaps.max_ms() == 30.0


def test_gap_stats_clamp_a_clock_step_backwards_to_zero() -> None:
    gaps = GapStats()
    for at in (5.0, 5.002, 5.001):
        gaps.add(at)
    assert (gaps.percentile_ms(0), gaps.max_ms()) == (0.0, 2.0)


def test_gap_stats_with_too_few_tokens() -> None:
    empty = GapStats()
    assert (empty.rate_per_s(), empty.percentile_ms(50), empty.max_ms(), empty.first_at) == (None, None, None, None)
    one = GapStats()
    one.add(3.0)
    assert (one.rate_per_s(), one.percentile_ms(50), one.max_ms(), one.count) == (None, None, None, 1)
    burst = GapStats()
    burst.add(3.0)
    burst.add(3.0)
    assert (burst.rate_per_s(), burst.percentile_ms(50)) == (None, 0.0)
