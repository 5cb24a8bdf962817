"""What the dashboard knows, fed by messages from its workers: pure data, no I/O, no Textual."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from analyzer.live.subscriber import LiveView, Running
from analyzer.protocol.record import FLAG_CLIENT_ABORTED, InteractionRecord
from analyzer.protocol.timing import percentile
from analyzer.resources.cost import Prices, total_costs
from analyzer.store.select import started_at

RECENT_KEPT = 2000
STALL_AFTER_S = 30.0  # a running stream with no new token for this long counts as stalled
WINDOWS_S = (("5 min", 300.0), ("1 hour", 3600.0))
MODELS_SHOWN = 20  # Per model: the busiest models, the rest summed into one "others" row


# Kinds that say nothing about a model's speed: listings, status, account, and loading/unloading a model.
NOT_GENERATIONS = frozenset(
    {"tags", "ps", "version", "show", "status", "account", "recommendations", "load", "unload", "root", ""}
)


def is_error(record: InteractionRecord) -> bool:
    """An error, a failed status, or a request that did not finish (aborted, upstream failed, ...)."""
    return (
        bool(record.error)
        or (record.status is not None and record.status >= 400)
        or FLAG_CLIENT_ABORTED in (record.flags or [])
    )


def record_time(record: InteractionRecord) -> float:
    when = started_at(record)
    return when.timestamp() if when is not None else 0.0


def token_rate(record: InteractionRecord) -> float | None:
    """Ollama's own eval rate when it reported one, else the rate seen on the wire."""
    return record.eval_tokens_per_s if record.eval_tokens_per_s is not None else record.wire_tokens_per_s


@dataclass
class ModelStats:
    model: str
    requests: int = 0
    errors: int = 0
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    tokens_per_s: float | None = None
    cost_energy_usd: float | None = None  # sums over the window; None without prices or without the fact
    cost_api_usd: float | None = None
    others: bool = False  # the row summing the models beyond the busiest ones

    @property
    def key(self) -> str:
        """A row key no model name can collide with (a client may name a model like the others row)."""
        return "others" if self.others else f"model:{self.model}"


@dataclass
class OllamaStatus:
    url: str
    reachable: bool | None = None  # None: not asked yet
    error: str = ""
    models: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""
    checked_at: float = 0.0


@dataclass
class MachineStatus:
    memory_used: int = 0
    memory_total: int = 0
    cpu_percent: float = 0.0
    cpus: int = 1
    ollama_pid: int | None = None
    ollama_name: str = ""
    ollama_rss: int = 0
    ollama_cpu_percent: float = 0.0
    note: str = ""


@dataclass
class GpuStatus:
    """What the GPU resource samplers (NVML, macmon) see now, or why none works here."""

    available: bool | None = None  # None: not opened yet
    reason: str = ""  # why not, when not available
    source: str = ""
    util_pct: float | None = None
    mem_mb: float | None = None
    power_w: float | None = None


class TopState:
    """Running requests (from the feed), finished ones (feed and log, de-duplicated), Ollama, the machine."""

    def __init__(self, live_path: str, log_dir: str, ollama_url: str) -> None:
        self.live_path = live_path
        self.log_dir = log_dir
        self.view = LiveView(keep_finished=1)  # the view's own list is not used: finished records live here
        self.recent: deque[InteractionRecord] = deque(maxlen=RECENT_KEPT)
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.ollama = OllamaStatus(ollama_url)
        self.machine = MachineStatus()
        self.gpu = GpuStatus()
        self.prices: Prices | None = None  # set by --prices / the config: Recent and Per model show cost
        self.feed_problem = ""  # why there is no live feed (shown in the header)
        self.log_problem = ""
        self.errors_only = False
        self.model_filter = ""
        self.paused = False
        self._last_token_change: dict[str, tuple[int, float]] = {}
        self.finished_count = 0  # grows with every new finished record: what Recent/Per model redraw on

    # -- feeding ------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self.view.connected

    def apply_event(self, event: dict[str, Any]) -> InteractionRecord | None:
        """One feed event; returns a newly finished record (not seen before), if any."""
        record = self.view.apply(event)
        if event.get("event") == "progress":
            running = self.view.running.get(event.get("id", ""))
            if running is not None:
                tokens = int(event.get("tokens") or 0)
                last = self._last_token_change.get(running.id)
                if last is None or tokens != last[0]:
                    self._last_token_change[running.id] = (tokens, float(event.get("time") or time.time()))
        if record is not None:
            self._last_token_change.pop(record.id, None)
            return record if self.add_finished(record) else None
        return None

    def add_finished(self, record: InteractionRecord) -> bool:
        """Keep a finished record unless already known (the feed and the log both report it)."""
        if not record.id or record.id in self._seen:
            return False
        self._seen.add(record.id)
        self._seen_order.append(record.id)
        if len(self._seen_order) > RECENT_KEPT * 4:
            self._seen.discard(self._seen_order.popleft())
        self.recent.append(record)
        self.finished_count += 1
        return True

    def feed_lost(self, problem: str) -> None:
        self.view.disconnected()
        self.feed_problem = problem
        self._last_token_change.clear()

    # -- questions ----------------------------------------------------------------------------
    def _model_ok(self, model: str | None) -> bool:
        return not self.model_filter or self.model_filter.lower() in (model or "").lower()

    def running(self) -> list[Running]:
        """Running requests matching the model filter, oldest first."""
        shown = [r for r in self.view.running.values() if self._model_ok(r.model)]
        return sorted(shown, key=lambda r: float(r.start.get("started_at") or 0.0))

    def finished(self, limit: int) -> list[InteractionRecord]:
        """The last ``limit`` finished records matching the filters, newest first."""
        out: list[InteractionRecord] = []
        for record in reversed(self.recent):
            if self.errors_only and not is_error(record):
                continue
            if not self._model_ok(record.model):
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def stalled(self, now: float) -> list[Running]:
        """Running streams whose token count has not moved for STALL_AFTER_S (or no first token by then)."""
        out = []
        for running in self.view.running.values():
            if running.is_pull:
                continue
            started = float(running.start.get("started_at") or now)
            _tokens, since = self._last_token_change.get(running.id, (0, started))
            if now - since >= STALL_AFTER_S:
                out.append(running)
        return out

    def per_model(self, window_s: float, now: float, limit: int = MODELS_SHOWN) -> list[ModelStats]:
        """Per model over the last ``window_s`` seconds: requests, errors, p50/p95 TTFT, median tokens/s.

        The ``limit`` busiest models (most requests, then by name), in name order, then one row summing the
        others (``(N other models)``): clients choose model names, so the table must stay readable with
        thousands of them.
        """
        groups: dict[str, list[InteractionRecord]] = {}
        for record in reversed(self.recent):
            if record_time(record) < now - window_s:
                continue
            if not self._model_ok(record.model) or record.kind in NOT_GENERATIONS:
                continue
            groups.setdefault(record.model or "-", []).append(record)
        busiest = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        stats = [self._stats(model, records) for model, records in sorted(busiest[:limit])]
        rest = busiest[limit:]
        if rest:
            label = f"({len(rest)} other model{'' if len(rest) == 1 else 's'})"
            stats.append(self._stats(label, [r for _, records in rest for r in records], others=True))
        return stats

    def _stats(self, model: str, records: list[InteractionRecord], others: bool = False) -> ModelStats:
        ttfts = sorted(r.ttft_ms for r in records if r.ttft_ms is not None)
        rates = sorted(rate for r in records if (rate := token_rate(r)) is not None)
        costs = total_costs(records, self.prices) if self.prices is not None else {}
        return ModelStats(
            model=model,
            requests=len(records),
            errors=sum(1 for r in records if is_error(r)),
            ttft_p50=percentile(ttfts, 50) if ttfts else None,
            ttft_p95=percentile(ttfts, 95) if ttfts else None,
            tokens_per_s=percentile(rates, 50) if rates else None,
            cost_energy_usd=costs.get("cost_energy_usd"),
            cost_api_usd=costs.get("cost_api_usd"),
            others=others,
        )

    def window_costs(self, window_s: float, now: float) -> dict[str, float | None]:
        """Both cost sums over the finished requests of the last ``window_s`` seconds (empty without prices)."""
        if self.prices is None:
            return {}
        chosen = [r for r in self.recent if record_time(r) >= now - window_s and self._model_ok(r.model)]
        return total_costs(chosen, self.prices)

    def record_by_id(self, key: str) -> InteractionRecord | None:
        for record in reversed(self.recent):
            if record.id == key:
                return record
        return None
