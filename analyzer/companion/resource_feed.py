"""Resource sampling in the companion: samples the machine while Ollama works and fills each record's resource
columns.

Sampling runs in its own thread (``analyzer.resources``) into a bounded ring buffer. As an observer on the
companion's hub it keeps O(1) bookkeeping per interaction (``interaction_started`` / ``interaction_progressed``,
from the proxy's coalesced progress), and ``enrich_record`` computes the record's share from the buffered samples
in memory, before the companion writes the record. Its settings are the ``ollama_resources`` options
(companion/feeds.py): ``auto`` (every source that works here but ``ollama_ps``, whose polling would show up in
captures of the upstream port), ``off``, or a list of sources; and the interval in milliseconds. The server
sampled is the reverse-mode upstream, else ``127.0.0.1:11434`` (the recorder tells the companion which).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.resources.attribution import Activity, activity_of, apply_columns, resource_columns
from analyzer.resources.registry import Target, open_samplers, parse_spec
from analyzer.resources.timeline import DEFAULT_INTERVAL_MS, SamplingThread, Timeline

if TYPE_CHECKING:
    from analyzer.protocol.interaction import InteractionBuilder
    from analyzer.protocol.record import InteractionRecord

logger = logging.getLogger(__name__)
RECENT = 2000  # finished requests kept to share slices with requests still running
MAX_LIVE = 10_000
MAX_ENRICH_SAMPLES = 1500  # 5 minutes at 200 ms; longer requests are computed from every k-th sample
RETRIED = ("process", "ollama_ps")  # sources that appear when the server does
RETRY_S = 30.0
RECENT_SLACK_S = 60.0  # finish order vs end times: how far apart they may be before the scan stops


@dataclass
class _Live:
    """A request in flight: when it started, and when stream fragments (≈ tokens) arrived."""

    start: float
    first: float | None = None
    last: float | None = None
    fragments: int = 0

    def activity(self, flow_id: str, now: float) -> Activity:
        return Activity(flow_id, self.start, now, float(self.fragments), self.first, self.last)


class ResourceFeed:
    """Resource sampling for the recorded interactions (an observer on the companion's hub, with ``enrich_record``)."""

    def __init__(self) -> None:
        self.timeline = Timeline()
        self.thread: SamplingThread | None = None
        self.unavailable: dict[str, str] = {}
        self.live: dict[str, _Live] = {}
        self.recent: deque[Activity] = deque(maxlen=RECENT)
        self.enriched = 0
        self.interval_ms = DEFAULT_INTERVAL_MS
        self._lock = threading.Lock()  # guards starting/stopping the sampling thread
        self._generation = 0

    def start(self, spec: str, target: Target) -> None:
        """Start sampling ``spec``'s sources (``off``: none) for the server at ``target``; opening the sources
        (NVML init, starting macmon, asking /api/ps) happens in a thread."""
        self._stop()
        self.interval_ms = target.interval_ms
        if parse_spec(spec) == []:
            logger.info("ollama_resources: off")
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
        threading.Thread(
            target=self._open, args=(spec, target, generation), name="ollama-resources-open", daemon=True
        ).start()

    def close(self) -> None:
        self._stop()

    # -- sampling ----------------------------------------------------------------------------
    def _open(self, spec: str, target: Target, generation: int) -> None:
        """Open the sources, start sampling, then keep retrying the server's sources until they appear
        (Ollama started after the proxy, or restarted on another port's process)."""
        opened = open_samplers(spec, target)
        retry = [name for name in opened.unavailable if name in RETRIED]
        with self._lock:
            if generation != self._generation:  # stopped or restarted meanwhile
                for sampler in opened.samplers:
                    sampler.close()
                return
            self.unavailable = opened.unavailable
            if opened.samplers or retry:
                self.thread = SamplingThread(opened.samplers, self.timeline, target.interval_ms)
                self.thread.start()
            thread = self.thread
        names = ", ".join(s.name for s in opened.samplers) or "none"
        missing = "; ".join(f"{name}: {why}" for name, why in opened.unavailable.items())
        logger.info(
            "ollama_resources: sampling %s every %d ms (server %s)%s",
            names,
            target.interval_ms,
            target.base_url,
            f"; unavailable: {missing}" if missing else "",
        )
        while retry and thread is not None:
            deadline = time.monotonic() + RETRY_S
            while time.monotonic() < deadline:
                if generation != self._generation:
                    return
                time.sleep(0.5)
            again = open_samplers(",".join(retry), target)
            with self._lock:
                if generation != self._generation:
                    for sampler in again.samplers:
                        sampler.close()
                    return
                for sampler in again.samplers:
                    thread.samplers.append(sampler)  # the sampling thread picks it up at its next round
                    self.unavailable.pop(sampler.name, None)
                    retry.remove(sampler.name)
            if again.samplers:
                logger.info("ollama_resources: now also sampling %s", ", ".join(s.name for s in again.samplers))

    def _stop(self) -> None:
        with self._lock:
            self._generation += 1
            thread, self.thread = self.thread, None
        if thread is not None:
            thread.stop()

    # -- observer (traffic path: O(1), no I/O) ------------------------------------------------
    def interaction_started(self, builder: InteractionBuilder) -> None:
        if len(self.live) < MAX_LIVE:
            self.live[builder.record_id] = _Live(builder.started_at or time.time())
        thread = self.thread
        if thread is not None and len(self.live) == 1:  # the first request after idle: sample its start now;
            thread.wake()  # under concurrency the regular interval covers starts, extra samples would only cost

    def interaction_progressed(self, builder: InteractionBuilder) -> None:
        """Called per coalesced progress (not per fragment): the snapshot says how far the response is."""
        live = self.live.get(builder.record_id)
        if live is not None:
            state = builder.in_flight()
            if state.chunks:
                live.first = state.first_token_at or state.response_at
                live.last = state.last_token_at or live.first
                live.fragments = state.chunks

    def enrich_record(self, record: InteractionRecord) -> None:
        """Fill the record's resource columns from the samples buffered so far (in memory, bounded)."""
        if self.thread is None:
            return
        target = activity_of(record)
        if target is None:
            return
        samples = self.timeline.window(target.start, target.end)
        if not samples:
            return
        if len(samples) > MAX_ENRICH_SAMPLES:  # a long pull or stream: every k-th reading keeps this bounded
            step = -(-len(samples) // MAX_ENRICH_SAMPLES)
            samples = [*samples[:-1:step], samples[-1]]
        now = time.time()
        # Copies first (list() of a dict/deque is atomic under the GIL): enrich_record may run in a writer thread.
        others = []
        for activity in reversed(list(self.recent)):  # newest first: they were appended as they finished
            if activity.end > target.start:
                others.append(activity)
            elif activity.end < target.start - RECENT_SLACK_S:
                break  # finished long before this request began, and so did everything older
        others += [live.activity(flow_id, now) for flow_id, live in list(self.live.items()) if flow_id != record.id]
        hold = 1.5 * self.interval_ms / 1000
        apply_columns(record, resource_columns(target, others, samples, record.eval_count, hold=hold))
        self.enriched += 1

    def interaction_finished(self, record: InteractionRecord) -> None:
        self.live.pop(record.id, None)
        activity = activity_of(record)
        if activity is not None:
            self.recent.append(activity)
