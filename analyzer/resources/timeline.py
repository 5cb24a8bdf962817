"""The resource timeline: samples in a bounded ring buffer, the thread that takes them, and timeline files.

A sample is ``(t, values)``: wall-clock seconds (like the records' ``started_at``) and the metrics every open
sampler returned at that moment, merged. When no source has an energy counter but one reports power, the
timeline integrates power over time (trapezoids) into a cumulative ``energy_j`` so attribution can treat both
alike. A timeline file is the same samples as JSON Lines (``{"t": …, "values": {…}}``), written beside a capture
so ``analyze-pcap`` can join it to the records later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from analyzer.resources.base import ENERGY_SOURCE, POWER_INTEGRAL, Sampler, marker

logger = logging.getLogger(__name__)
DEFAULT_INTERVAL_MS = 200
DEFAULT_CAPACITY = 18_000  # one hour at the default interval; about 4 MB
TIMELINE_SUFFIX = ".resources.jsonl"


@dataclass(frozen=True)
class Sample:
    """The metrics seen at ``t`` (epoch seconds)."""

    t: float
    values: dict[str, float] = field(default_factory=dict)


class Timeline:
    """A thread-safe ring buffer of samples (oldest dropped first, counted)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._samples: deque[Sample] = deque(maxlen=max(2, capacity))
        self._lock = threading.Lock()
        self._integrated = 0.0
        self._native_energy = False
        self.dropped = 0

    def add(self, t: float, values: dict[str, float]) -> Sample:
        values = dict(values)
        with self._lock:
            previous = self._samples[-1] if self._samples else None
            if "energy_j" in values:
                self._native_energy = True  # a real counter: never mix integrated values into it
            elif "power_w" in values and not self._native_energy:
                if previous is not None and "power_w" in previous.values and t > previous.t:
                    self._integrated += (previous.values["power_w"] + values["power_w"]) / 2 * (t - previous.t)
                values["energy_j"] = self._integrated
                if not any(name.startswith(ENERGY_SOURCE) for name in values):  # macmon marks its own power
                    values[marker(ENERGY_SOURCE, POWER_INTEGRAL)] = 1.0
            if len(self._samples) == self._samples.maxlen:
                self.dropped += 1
            sample = Sample(t, values)
            self._samples.append(sample)
        return sample

    def window(self, start: float, end: float) -> list[Sample]:
        """The samples in ``[start, end]`` plus the one before and the one after (for interpolation).

        Walks back from the newest sample, so a recent window costs what it holds, not the whole buffer.
        """
        found: list[Sample] = []
        with self._lock:
            for sample in reversed(self._samples):
                if sample.t > end:
                    found[:] = [sample]  # keep only the earliest sample after the window
                    continue
                found.append(sample)
                if sample.t < start:
                    break
        found.reverse()
        return found

    def latest(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)


class SamplingThread:
    """Reads every sampler each ``interval_ms`` into ``timeline`` (and ``sink``, a timeline file), off any caller.

    A sampler whose ``read`` raises is counted and skipped for that round; nothing here blocks the caller:
    ``wake()`` only sets an event so the next sample is taken now (used when a request starts after idle).
    """

    def __init__(
        self,
        samplers: Sequence[Sampler],
        timeline: Timeline,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        sink: IO[str] | None = None,
    ) -> None:
        self.samplers = list(samplers)
        self.timeline = timeline
        self.interval = max(0.01, interval_ms / 1000)
        self.sink = sink
        self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ollama-resources", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def sample_once(self) -> Sample:
        values: dict[str, float] = {}
        for sampler in self.samplers:
            try:
                values.update(sampler.read())
            except Exception:
                self.failures += 1
                if self.failures == 1 or self.failures % 1000 == 0:
                    logger.warning(
                        "resource sampler %s failed (%d failures)", sampler.name, self.failures, exc_info=True
                    )
        sample = self.timeline.add(time.time(), values)
        if self.sink is not None:
            try:
                self.sink.write(json.dumps({"t": round(sample.t, 6), "values": sample.values}) + "\n")
                self.sink.flush()
            except (OSError, ValueError):
                self.sink = None
        return sample

    def _run(self) -> None:
        # A wake (a request starting) samples early, but never sooner than a quarter interval after the last
        # sample: a burst of 200 starting requests must not turn into 200 back-to-back samples.
        least_gap = self.interval / 4
        while not self._stop.is_set():
            sampled = time.monotonic()
            self.sample_once()
            woken = self._wake.wait(self.interval)
            self._wake.clear()
            rest = least_gap - (time.monotonic() - sampled)
            if woken and rest > 0:
                self._stop.wait(rest)

    def stop(self, close_samplers: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if close_samplers:
            for sampler in self.samplers:
                try:
                    sampler.close()
                except Exception:
                    logger.debug("closing %s failed", sampler.name, exc_info=True)


def timeline_path(snapshot: Path) -> Path:
    """Where the timeline of capture ``snapshot`` is kept: beside it, ``NAME.pcap`` → ``NAME.resources.jsonl``."""
    return snapshot.with_name(snapshot.stem + TIMELINE_SUFFIX)


def open_timeline_file(path: Path) -> IO[str]:
    """A new private (0600) timeline file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


class TimelineError(Exception):
    """A timeline file cannot be read; the message names it."""


def read_timeline(path: Path, capacity: int | None = None) -> Timeline:
    """A timeline file back as a Timeline (bad lines are skipped; an unreadable file raises TimelineError)."""
    timeline = Timeline(capacity or 10**7)
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                sample = _parse_line(line)
                if sample is not None:
                    timeline.add(*sample)
    except (OSError, UnicodeDecodeError) as exc:
        raise TimelineError(f"{path}: cannot read resource timeline: {exc}") from None
    return timeline


def _parse_line(line: str) -> tuple[float, dict[str, float]] | None:
    try:
        data = json.loads(line)
        t = float(data["t"])
        values = {str(k): float(v) for k, v in data.get("values", {}).items() if isinstance(v, int | float)}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return t, values


def merge_timelines(timelines: Iterable[Timeline]) -> Timeline:
    """One timeline holding every sample of ``timelines`` in time order."""
    samples = sorted((s for tl in timelines for s in tl.samples()), key=lambda s: s.t)
    merged = Timeline(max(2, len(samples)))
    for sample in samples:
        merged.add(sample.t, sample.values)
    return merged
