"""Which share of the machine's resources went to which request (the rule is documented in docs/record.md).

Gauges (GPU busy share, power, memory) describe the whole device over the request's span: each reading counts
for the interval that ends at it, weighted by its overlap with the request. Counters (energy, server CPU time)
are shared: the span is cut at every sample and at every start/end/first-token/last-token of the requests that
overlap it; each slice's increase (linear between samples) goes to the requests active in it in proportion to
the tokens each generated in the slice (tokens spread evenly between a request's first and last token), or
equally when none generated a token. Idle time between requests is nobody's.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from analyzer.protocol.record import InteractionRecord
from analyzer.resources.base import ENERGY_SOURCE, GPU_MEM_SOURCE, POWER_INTEGRAL
from analyzer.resources.timeline import Sample, Timeline


@dataclass(frozen=True)
class Activity:
    """One request on the time axis (epoch seconds): its span, and when and how many tokens it generated."""

    id: str
    start: float
    end: float
    tokens: float = 0.0
    token_start: float | None = None
    token_end: float | None = None

    def tokens_between(self, low: float, high: float) -> float:
        """Tokens generated in ``[low, high)``, taking them as evenly spread over the token window."""
        if not self.tokens or self.token_start is None:
            return 0.0
        token_end = self.token_end if self.token_end is not None else self.token_start
        if token_end <= self.token_start:
            return self.tokens if low <= self.token_start < high else 0.0
        overlap = min(high, token_end) - max(low, self.token_start)
        return self.tokens * overlap / (token_end - self.token_start) if overlap > 0 else 0.0


def parse_started_at(text: str) -> float | None:
    """Epoch seconds of a record's ``started_at`` (ISO-8601, ``Z``), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def activity_of(record: InteractionRecord) -> Activity | None:
    """The record on the time axis, or None without a start time or a duration (an unknown span uses unknown
    resources: its columns stay None, never 0)."""
    start = parse_started_at(record.started_at)
    if start is None or record.total_ms is None:
        return None
    end = start + (record.total_ms or 0.0) / 1000
    tokens = float(record.eval_count if record.eval_count is not None else record.chunks or 0)
    if record.stream and record.ttft_ms is not None:
        token_start = start + record.ttft_ms / 1000
        token_end = token_start + (record.gen_ms or 0.0) / 1000
    else:  # a whole body: generated over the whole span as far as anyone outside can tell
        token_start, token_end = start, end
    return Activity(record.id, start, end, tokens, token_start, token_end)


class _Series:
    """One metric's readings, for interpolation (counters) and interval weighting (gauges)."""

    def __init__(self, times: list[float], values: list[float], hold: float, counter: bool = False) -> None:
        self.times = times
        self.values = values
        self.hold = hold  # how far past the newest reading it may be extrapolated
        if counter and self.values:
            # A counter that restarted (another timeline file, a restarted sampler) adds nothing across the restart:
            # keep the running sum of the increases, so the series is monotonic and differences are additive.
            total, previous, rebuilt = self.values[0], self.values[0], []
            for value in self.values:
                total += max(0.0, value - previous)
                previous = value
                rebuilt.append(total)
            self.values = rebuilt

    def __bool__(self) -> bool:
        return bool(self.times)

    def coverage(self) -> tuple[float, float]:
        return self.times[0], self.times[-1] + self.hold

    def at(self, t: float) -> float:
        """Counter value at ``t``: linear between readings, the last segment's rate past the newest one."""
        times, values = self.times, self.values
        i = bisect.bisect_right(times, t)
        if i == 0:
            return values[0]
        if i == len(times):
            if len(times) >= 2 and times[-1] > times[-2]:
                rate = max(0.0, (values[-1] - values[-2]) / (times[-1] - times[-2]))
                return values[-1] + rate * (t - times[-1])
            return values[-1]
        t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1

    def intervals(self) -> list[tuple[float, float, float]]:
        """(from, to, value): each reading for the interval ending at it; the newest held ``hold`` seconds on."""
        times, values = self.times, self.values
        spans = [(times[i - 1], times[i], values[i]) for i in range(1, len(times))]
        if len(times) == 1 or self.hold > 0:
            spans.append((times[-1], times[-1] + max(self.hold, 1e-9), values[-1]))
        if len(times) == 1:
            spans.insert(0, (times[0] - max(self.hold, 1e-9), times[0], values[0]))
        return spans

    def mean(self, low: float, high: float) -> float | None:
        weight = total = 0.0
        for a, b, value in self.intervals():
            overlap = min(b, high) - max(a, low)
            if overlap > 0:
                weight += overlap
                total += overlap * value
        if weight == 0 and high == low:  # a zero-length request: the reading covering that instant
            for a, b, value in self.intervals():
                if a <= low <= b:
                    return value
        return total / weight if weight > 0 else None

    def maximum(self, low: float, high: float) -> float | None:
        found = [value for a, b, value in self.intervals() if min(b, high) - max(a, low) > 0 or a <= low <= b]
        return max(found) if found else None


def _slices(target: Activity, others: Sequence[Activity]) -> list[tuple[float, float, float]]:
    """``(from, to, target's share)`` over the target's span, cut wherever any overlapping request starts, ends,
    or starts/stops generating tokens. Between cuts every share is constant (tokens are taken as evenly
    spread), so a counter's increase over a slice can be read off its interpolated values at the two ends.

    One sweep over sorted event times (bisect and prefix sums), so a record finishing among N concurrent ones
    costs O(N log N), not O(N²): at 200 concurrent streams the quadratic version cost tens of ms per record.
    """
    low, high = target.start, target.end
    active = [a for a in others if a.id != target.id and a.start < high and a.end > low]
    cuts = {low, high}
    for a in (target, *active):
        cuts.update(t for t in (a.start, a.end, a.token_start, a.token_end) if t is not None and low < t < high)
    points = sorted(cuts)
    starts = sorted(a.start for a in active)
    ends = sorted(a.end for a in active)
    # Tokens spread over a window: a constant rate inside it. Tokens all at one instant: a point mass.
    rate_on: list[tuple[float, float]] = []
    rate_off: list[tuple[float, float]] = []
    masses: list[tuple[float, float]] = []
    for a in active:
        if not a.tokens or a.token_start is None:
            continue
        token_end = a.token_end if a.token_end is not None else a.token_start
        if token_end <= a.token_start:
            if a.start <= a.token_start < a.end:  # a request's tokens count only while it runs
                masses.append((a.token_start, a.tokens))
        else:
            rate = a.tokens / (token_end - a.token_start)
            on, off = max(a.token_start, a.start), min(token_end, a.end)
            if off > on:
                rate_on.append((on, rate))
                rate_off.append((off, rate))
    on_times, on_sums = _prefix(rate_on)
    off_times, off_sums = _prefix(rate_off)
    mass_times, mass_sums = _prefix(masses)
    slices = []
    for p, q in itertools.pairwise(points):
        middle = (p + q) / 2
        running = bisect.bisect_right(starts, middle) - bisect.bisect_right(ends, middle)
        opened, closed = bisect.bisect_right(on_times, middle), bisect.bisect_right(off_times, middle)
        # no window open: exactly zero (the difference of the running sums would leave rounding dust)
        rate = on_sums[opened] - off_sums[closed] if opened > closed else 0.0
        mass = mass_sums[bisect.bisect_left(mass_times, q)] - mass_sums[bisect.bisect_left(mass_times, p)]
        mine = target.tokens_between(p, q)
        everyone = mine + max(rate, 0.0) * (q - p) + mass
        slices.append((p, q, mine / everyone if everyone > 0 else 1 / (1 + running)))
    return slices


def _prefix(events: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Event times in order and the running sums of their values (``sums[i]`` = sum of the first i)."""
    events.sort()
    times = [t for t, _ in events]
    sums = [0.0]
    for _, value in events:
        sums.append(sums[-1] + value)
    return times, sums


def _shared(series: _Series, slices: Sequence[tuple[float, float, float]], target: Activity) -> float | None:
    """The target's share of a counter's increase over its slices (None when no reading covers the span)."""
    if not series:
        return None
    first, last = series.coverage()
    if min(target.end, last) < max(target.start, first):
        return None
    if not slices:  # a zero-length span (a capture that caught only its last packet): unknown, not nothing
        return None
    total = 0.0
    for p, q, share in slices:
        low, high = max(p, first), min(q, last)
        if high > low and share > 0:
            total += share * max(0.0, series.at(high) - series.at(low))
    return total


_COUNTERS = frozenset({"energy_j", "cpu_s"})
_USED = ("gpu_util_pct", "gpu_mem_mb", "ollama_vram_mb", "power_w", "rss_mb", *sorted(_COUNTERS))


def _source(samples: Sequence[Sample], prefix: str) -> str | None:
    """The provenance marker (``prefix`` + name, see analyzer.resources.base) the samples carry, if any."""
    for sample in samples:
        for name in sample.values:
            if name.startswith(prefix):
                return name[len(prefix) :]
    return None


def resource_columns(
    target: Activity,
    others: Sequence[Activity],
    samples: Sequence[Sample],
    eval_count: int | None = None,
    hold: float = 0.0,
) -> dict[str, float | str | None]:
    """The record's resource columns from ``samples`` (None where no reading covers the request).

    ``hold`` is how far (seconds) past the newest sample a live request may still be covered: the addon
    passes about one sampling interval, since it fills the record the moment the response ends.
    """
    low, high = target.start, max(target.start, target.end)

    points: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in _USED}
    for sample in samples:  # one pass, every metric
        for name, value in sample.values.items():
            found = points.get(name)
            if found is not None:
                found[0].append(sample.t)
                found[1].append(value)

    def series(name: str) -> _Series:
        return _Series(*points[name], hold, counter=name in _COUNTERS)

    util, memory, vram = series("gpu_util_pct"), series("gpu_mem_mb"), series("ollama_vram_mb")
    power, rss = series("power_w"), series("rss_mb")
    energy_series, cpu_series = series("energy_j"), series("cpu_s")
    slices = _slices(target, others) if (energy_series or cpu_series) and target.end >= target.start else []
    energy = _shared(energy_series, slices, target)
    cpu = _shared(cpu_series, slices, target)
    gpu_memory = memory.maximum(low, high) if memory else (vram.maximum(low, high) if vram else None)
    gpu_memory_source = None
    if gpu_memory is not None:
        gpu_memory_source = (_source(samples, GPU_MEM_SOURCE) or "nvml") if memory else "ollama_ps"
    columns: dict[str, float | None] = {
        "gpu_util_mean_pct": util.mean(low, high) if util else None,
        "gpu_mem_max_mb": gpu_memory,
        "power_mean_w": power.mean(low, high) if power else None,
        "energy_j": energy,
        "joules_per_token": energy / eval_count if energy is not None and eval_count else None,
        "server_cpu_ms": cpu * 1000 if cpu is not None else None,
        "server_rss_max_mb": rss.maximum(low, high) if rss else None,
    }
    out: dict[str, float | str | None] = {
        name: None if value is None else round(value, 6) for name, value in columns.items()
    }
    out["energy_source"] = (_source(samples, ENERGY_SOURCE) or POWER_INTEGRAL) if energy is not None else None
    out["gpu_mem_source"] = gpu_memory_source
    return out


def apply_columns(record: InteractionRecord, columns: dict[str, float | str | None]) -> None:
    """Fill the record's resource columns that are still empty."""
    for name, value in columns.items():
        if value is not None and getattr(record, name) is None:
            setattr(record, name, value)


def attribute_records(records: Iterable[InteractionRecord], timeline: Timeline) -> int:
    """Fill the resource columns of ``records`` from a finished timeline (a capture's); returns how many got any."""
    items = [(record, activity_of(record)) for record in records]
    placed = sorted(((r, a) for r, a in items if a is not None), key=lambda item: item[1].start)
    starts = [a.start for _, a in placed]
    samples_all = timeline.samples()
    times = [s.t for s in samples_all]
    filled = 0
    for record, activity in placed:
        if activity.start > activity.end:
            continue
        low = max(0, bisect.bisect_left(times, activity.start) - 1)
        high = bisect.bisect_right(times, activity.end) + 1
        samples = samples_all[low:high]
        if not samples:
            continue
        overlapping = [a for _, a in placed[: bisect.bisect_right(starts, activity.end)] if a.end > activity.start]
        columns = resource_columns(activity, overlapping, samples, record.eval_count)
        if any(value is not None for value in columns.values()):
            apply_columns(record, columns)
            filled += 1
    return filled
