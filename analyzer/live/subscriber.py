"""The subscribing side of the live feed: connect to the socket, read events, keep the picture they describe.

``read_events`` yields decoded events from one connection; ``LiveView`` applies them (in-flight requests,
finished records, drop counts), so a dashboard or a script only renders what the view holds.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.live import events
from analyzer.protocol.record import InteractionRecord

# An ``end`` line carries a whole record (response text up to the recorder's cap): allow big lines.
MAX_LINE_BYTES = 64 * 1024 * 1024
HISTORY_POINTS = 400  # progress readings kept per request (40 s at 10 per second)


async def read_events(path: Path) -> AsyncIterator[dict[str, Any]]:
    """Events from one connection to the feed at ``path`` until it closes (OSError when nobody listens)."""
    async for batch in read_event_batches(path):
        for event in batch:
            yield event


async def read_event_batches(path: Path) -> AsyncIterator[list[dict[str, Any]]]:
    """Events in the batches they arrive in (whatever one read returns), until the feed closes.

    A dashboard handles a batch at a time: one message per burst instead of one per event.
    """
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE_BYTES)
    pending = b""
    try:
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE_BYTES:  # a line we will never use: skip to its end
                pending = b""
            batch = [event for line in lines if (event := events.decode(line)) is not None]
            if batch:
                yield batch
    finally:
        writer.close()


@dataclass
class Running:
    """One in-flight request as the feed describes it, with its token count over time (for live rates)."""

    id: str
    start: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)  # progress readings, oldest first (for rates)
    counts: list[int] = field(default_factory=list)

    def take_progress(self, event: dict[str, Any]) -> None:
        """Apply a progress event, remembering (time, tokens) for the live rate and the sparkline."""
        tokens = int(event.get("tokens") or 0)
        at = float(event.get("time") or 0.0)
        if not self.times or at > self.times[-1]:
            self.times.append(at)
            self.counts.append(tokens)
            if len(self.times) > 2 * HISTORY_POINTS:
                del self.times[:HISTORY_POINTS], self.counts[:HISTORY_POINTS]
        if "response_tail" not in event and "response_tail" in self.progress:  # sent about once a second
            event = {**event, "response_tail": self.progress["response_tail"]}
        self.progress = event

    def tokens_at(self, when: float) -> float:
        """Tokens received by ``when``, interpolated between progress readings (they come on the publisher's
        ticks, so a step function would turn tick jitter into a jumpy sparkline)."""
        index = bisect_right(self.times, when) - 1
        if index < 0:
            return 0.0
        if index + 1 >= len(self.times):
            return float(self.counts[index])
        t0, t1 = self.times[index], self.times[index + 1]
        c0, c1 = self.counts[index], self.counts[index + 1]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def live_rate(self, window_s: float = 1.0) -> float | None:
        """Tokens per second over the last ``window_s`` seconds of progress (None before two readings)."""
        if len(self.times) < 2:
            return None
        index = max(bisect_right(self.times, self.times[-1] - window_s) - 1, 0)
        span = self.times[-1] - self.times[index]
        return (self.counts[-1] - self.counts[index]) / span if span > 0 else None

    def rate_series(self, buckets: int, bucket_s: float, now: float) -> list[float]:
        """Tokens/s in each of the last ``buckets`` intervals of ``bucket_s`` (oldest first), for a sparkline."""
        if not self.times:
            return []
        begin = self.times[0]
        series = []
        for index in range(buckets, 0, -1):
            end = now - (index - 1) * bucket_s
            start = end - bucket_s
            if end <= begin:
                continue
            series.append(max(self.tokens_at(end) - self.tokens_at(start), 0) / bucket_s)
        return series

    @property
    def model(self) -> str:
        return str(self.start.get("model") or "")

    @property
    def is_pull(self) -> bool:
        return "pull" in self.progress or self.start.get("kind") in ("pull", "push", "create")


class LiveView:
    """The state a stream of events adds up to: what runs now, what finished, what was lost."""

    def __init__(self, keep_finished: int = 10_000) -> None:
        self.running: dict[str, Running] = {}
        self.finished: deque[InteractionRecord] = deque(maxlen=keep_finished)
        self.dropped = 0
        self.connected = False
        self.publisher_pid: int | None = None

    def apply(self, event: dict[str, Any]) -> InteractionRecord | None:
        """Apply one event; returns the record when it was an ``end``."""
        kind = event.get("event")
        if kind == events.HELLO:
            self.connected = True
            self.publisher_pid = event.get("pid")
            self.running.clear()  # what still runs follows right after
        elif kind == events.START:
            known = self.running.get(event["id"])
            if known is None:
                self.running[event["id"]] = Running(event["id"], event)
            else:
                known.start = event
        elif kind == events.PROGRESS:
            running = self.running.get(event["id"])
            if running is not None:
                running.take_progress(event)
        elif kind == events.END:
            self.running.pop(event["id"], None)
            record = InteractionRecord.from_dict(event.get("record") or {})
            self.finished.append(record)
            return record
        elif kind == events.DROPPED:
            self.dropped += int(event.get("count") or 0)
            still = set(event.get("in_flight") or ())
            for gone in [key for key in self.running if key not in still]:
                del self.running[gone]
        return None

    def disconnected(self) -> None:
        """The feed went away: nothing is known to be running any more."""
        self.connected = False
        self.running.clear()
