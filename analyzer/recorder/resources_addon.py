"""The resources addon: samples the machine while Ollama works and fills each record's resource columns.

It watches the recorder through the observer hub. Sampling runs in its own thread (``analyzer.resources``) into a
bounded ring buffer; the hub calls only O(1) bookkeeping on the traffic path (``interaction_started`` /
``interaction_progressed``), and ``enrich_record`` computes the record's share from the buffered samples in
memory, without I/O, before the recorder writes the record. Options:

* ``ollama_resources``: ``auto`` (every source that works here but ``ollama_ps``, whose polling would show up in
  captures of the upstream port), ``off``, or a comma-separated list of
  ``nvidia, macmon, powermetrics, process, host, ollama_ps``;
* ``ollama_resources_interval``: milliseconds between samples (default 200).

The Ollama server sampled is the reverse-mode upstream, else ``127.0.0.1:11434``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mitmproxy import ctx, exceptions
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from analyzer.resources.attribution import Activity, activity_of, apply_columns, resource_columns
from analyzer.resources.registry import Target, open_samplers, parse_spec
from analyzer.resources.timeline import DEFAULT_INTERVAL_MS, SamplingThread, Timeline

if TYPE_CHECKING:
    from analyzer.protocol.interaction import InteractionBuilder
    from analyzer.protocol.observer import ObserverHub
    from analyzer.protocol.record import InteractionRecord

logger = logging.getLogger(__name__)
OPTION_NAMES = ("ollama_resources", "ollama_resources_interval")
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


def upstream_target(modes: list[str], interval_ms: int) -> Target:
    """The server to sample: the first reverse-mode upstream, else Ollama's default address."""
    for spec in modes:
        try:
            mode = ProxyMode.parse(spec)
        except ValueError:
            continue
        if isinstance(mode, ReverseMode):
            host, port = mode.address
            return Target(host=host, port=port, interval_ms=interval_ms)
    return Target(interval_ms=interval_ms)


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for one of this addon's options, or None."""
    if name == "ollama_resources":
        try:
            parse_spec(value)
        except ValueError as exc:
            return str(exc)
    elif name == "ollama_resources_interval" and not 10 <= value <= 60_000:
        return "must be 10..60000 milliseconds"
    return None


class ResourcesAddon:
    """Resource sampling for the recorder (an observer on its hub)."""

    def __init__(self, hub: ObserverHub) -> None:
        hub.add(self)
        self.timeline = Timeline()
        self.thread: SamplingThread | None = None
        self.unavailable: dict[str, str] = {}
        self.live: dict[str, _Live] = {}
        self.recent: deque[Activity] = deque(maxlen=RECENT)
        self.enriched = 0
        self.interval_ms = DEFAULT_INTERVAL_MS
        self._lock = threading.Lock()  # guards starting/stopping the sampling thread
        self._generation = 0

    # -- mitmproxy hooks ---------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        loader.add_option(
            "ollama_resources",
            str,
            "auto",
            "Resource samplers that fill each record's GPU, power, energy, CPU and memory columns: auto (every "
            "source that works on this machine except ollama_ps, whose polling would show in captures), off, or a "
            "comma-separated list of nvidia, macmon, powermetrics, process, host, ollama_ps. "
            "`ollama-wire resources --check` shows what each one sees.",
        )
        loader.add_option(
            "ollama_resources_interval",
            int,
            DEFAULT_INTERVAL_MS,
            "Milliseconds between resource samples (10..60000).",
        )
        # Our --set values are applied and checked (option_problem) by the recorder, which loads after us.

    def configure(self, updated: set[str]) -> None:
        for name in OPTION_NAMES:
            if name in updated:
                value = getattr(ctx.options, name)
                problem = option_problem(name, value)
                if problem:
                    raise exceptions.OptionsError(f"{name}={value}: {problem}")
        if self.thread is not None and updated & set(OPTION_NAMES):
            self._start()  # settings changed while running: restart sampling with them

    def running(self) -> None:
        # Synchronous on purpose (an async running hook is silently skipped when the script loads late);
        # opening the sources (NVML init, starting macmon, asking /api/ps) happens in a thread.
        self._start()

    def done(self) -> None:
        self._stop()

    # -- sampling ----------------------------------------------------------------------------
    def _start(self) -> None:
        self._stop()
        spec = ctx.options.ollama_resources
        self.interval_ms = ctx.options.ollama_resources_interval
        if parse_spec(spec) == []:
            logger.info("ollama_resources: off")
            return
        target = upstream_target(list(ctx.options.mode), self.interval_ms)
        with self._lock:
            self._generation += 1
            generation = self._generation
        threading.Thread(
            target=self._open, args=(spec, target, generation), name="ollama-resources-open", daemon=True
        ).start()

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
        live = self.live.get(builder.record_id)
        if live is not None:
            now = time.time()
            if live.first is None:
                live.first = now
            live.last = now
            live.fragments += 1

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
