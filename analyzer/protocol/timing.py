"""Timing arithmetic shared by every producer: millisecond offsets and inter-token gap statistics."""

from __future__ import annotations

from array import array


def ms_between(start: float | None, end: float | None) -> float | None:
    """``end - start`` in milliseconds rounded to the microsecond, or None when either is unknown."""
    if start is None or end is None:
        return None
    return round((end - start) * 1000.0, 3)


def percentile(sorted_values: array | list[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * pct / 100.0
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


class GapStats:
    """Arrival times of token-bearing chunks: first/last token and the gaps between them.

    Gaps are kept in a compact float array (8 bytes each), so even a 100k-token stream costs < 1 MB.
    """

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.count = 0
        self._gaps = array("d")

    def add(self, at: float) -> None:
        """A token-bearing chunk arrived at ``at``."""
        if self.last_at is not None:
            self._gaps.append(max(at - self.last_at, 0.0))
        else:
            self.first_at = at
        self.last_at = at
        self.count += 1

    def rate_per_s(self) -> float | None:
        """Token chunks after the first, per second between the first and the last one."""
        if self.count < 2 or self.first_at is None or self.last_at is None:
            return None
        span = self.last_at - self.first_at
        return round((self.count - 1) / span, 3) if span > 0 else None

    def percentile_ms(self, pct: float) -> float | None:
        if not self._gaps:
            return None
        return round(percentile(sorted(self._gaps), pct) * 1000.0, 3)

    def max_ms(self) -> float | None:
        return round(max(self._gaps) * 1000.0, 3) if self._gaps else None
