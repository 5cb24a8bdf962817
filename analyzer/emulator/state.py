"""Mutable per-server state: which models exist (pull/create add some) and the scheduler (what is loaded)."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from analyzer.emulator.config import EmulatorConfig, resolve_model
from analyzer.emulator.pacing import Timing
from analyzer.emulator.plan import ReplyPlan
from analyzer.emulator.replies import RequestFailed
from analyzer.emulator.scheduler import OutOfMemory, Runner, Scheduler, ServerBusy


@dataclass
class ServerState:
    """Shared by all connections of one server; only touched from its event loop thread."""

    config: EmulatorConfig
    models: list[str] = field(default_factory=list)
    scheduler: Scheduler = field(init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if not self.models:
            self.models = list(self.config.models)
        self.scheduler = Scheduler(self.config)

    def resolve(self, name: str) -> str | None:
        """The existing model ``name`` refers to, or None (every name exists with ``any_model``)."""
        found = resolve_model(name, self.models)
        return name if found is None and self.config.any_model else found

    def add_model(self, name: str) -> None:
        """Make ``name`` exist (after a pull or create)."""
        full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        if full not in self.models:
            self.models.append(full)

    def next_id(self) -> int:
        """A fresh number for OpenAI ``chatcmpl-N`` / ``cmpl-N`` ids."""
        return next(self._ids)

    @asynccontextmanager
    async def runner(self, plan: ReplyPlan, timing: Timing) -> AsyncIterator[Runner]:
        """Schedule ``plan``'s model (load, evict, wait) and mark ``timing.loaded_ns`` when it is ready."""
        async with self.schedule(plan.model, plan.keep_alive_s, plan.num_ctx, plan.load_ms) as runner:
            timing.loaded_ns = time.monotonic_ns()
            yield runner

    @asynccontextmanager
    async def schedule(
        self, model: str, keep_alive_s: float | None, num_ctx: int, load_ms: float | None = None
    ) -> AsyncIterator[Runner]:
        """Hold a loaded runner for ``model`` for the block (Ollama's ``scheduleRunner`` … request done).

        An out-of-memory load is a 500 with Ollama's message; a full queue (``max_queue``) a 503.
        """
        try:
            async with self.scheduler.use(self.resolve(model) or model, keep_alive_s, num_ctx, load_ms) as runner:
                yield runner
        except OutOfMemory as exc:
            raise RequestFailed(500, str(exc)) from None
        except ServerBusy as exc:
            raise RequestFailed(503, str(exc)) from None
