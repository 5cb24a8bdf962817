"""Ollama's scheduler, emulated: resident models, load on first use, eviction, parallel slots with a FIFO queue.

Mirrors ``server/sched.go`` and ``llm/server.go`` in the parts that show up in the counters a client sees:

- ``acquire`` is ``scheduleRunner``: it returns once a runner for the model is loaded. Loading (``load_ms``),
  waiting for another request's load of the same model, and waiting for a busy model to go idle so it can be
  evicted all happen here, so they land in ``load_duration`` (the handler marks ``checkpointLoaded`` after it).
- ``Runner.slot`` is the runner's semaphore (``OLLAMA_NUM_PARALLEL``) taken inside ``Completion``: waiting for a
  slot happens after ``checkpointLoaded`` and before prompt evaluation, so it is in ``total_duration`` only.
- A runner whose last request finished stays resident for its session duration (the request's ``keep_alive``,
  else the server's); 0 unloads it at once, a negative value keeps it forever. When a new model needs room
  (``OLLAMA_MAX_LOADED_MODELS`` or memory), the idle runner with the shortest session duration is unloaded
  (``findRunnerToUnload``); when none is idle, the load waits for one to finish.
- A request with another ``num_ctx`` than the resident runner's reloads the model (``needsReload``), after
  the runner's current requests finished.

Everything runs on the server's event loop; nothing here is thread-safe, nothing needs to be.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from analyzer.emulator.config import FOREVER, GIB, EmulatorConfig

# Go's time.Now().Add(math.MaxInt64): what Ollama reports as expires_at for keep_alive < 0.
FOREVER_NS = 2**63 - 1


class ServerBusy(Exception):
    """More requests wait for the scheduler than ``OLLAMA_MAX_QUEUE`` allows (Ollama answers 503 with this text)."""

    def __init__(self) -> None:
        super().__init__("server busy, please try again.  maximum pending requests exceeded")


class OutOfMemory(Exception):
    """The model does not fit in the emulated machine's memory (Ollama answers 500 with this text)."""

    def __init__(self, required: int, available: int) -> None:
        super().__init__(
            f"model requires more system memory ({human_bytes(required)}) than is available ({human_bytes(available)})"
        )


def human_bytes(count: int) -> str:
    """Ollama's ``format.HumanBytes2``: ``5.6 GiB``, ``512.0 MiB``."""
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


class Slots:
    """A FIFO counting semaphore; ``limit`` 0 means unlimited (no queue)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return sum(1 for f in self._queue if not f.done())

    async def take(self) -> None:
        """Wait for a free slot, first come first served."""
        if not self.limit or (self.busy < self.limit and not self.waiting):
            self.busy += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give()  # the slot was handed over just as we were cancelled: pass it on
            raise
        # give() counted us in already

    def give(self) -> None:
        """Free a slot: hand it to the longest waiter, if any."""
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.busy = max(0, self.busy - 1)


@dataclass
class Runner:
    """One loaded (or loading) model."""

    model: str
    size: int
    size_vram: int
    session_s: float
    num_ctx: int
    slots: Slots
    loading: asyncio.Task[None] | None = None
    ref_count: int = 0
    expires_at: float = 0.0  # epoch seconds once idle; 0 while busy or loading
    loaded_at: float = field(default_factory=time.time)

    def expires_at_ns(self, now: float) -> int:
        """``expires_at`` as Ollama's ``/api/ps`` reports it (epoch ns)."""
        if self.session_s == FOREVER or math.isinf(self.expires_at):
            return int(now * 1e9) + FOREVER_NS
        expires = self.expires_at or now + self.session_s
        return int(expires * 1e9)

    @property
    def idle(self) -> bool:
        """No request holds this runner."""
        return self.ref_count == 0 and (self.loading is None or self.loading.done())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the runner's parallel slots (waiting in FIFO order)."""
        await self.slots.take()
        try:
            yield
        finally:
            self.slots.give()


class Scheduler:
    """Which models are resident, and who waits for what."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.runners: dict[str, Runner] = {}
        self.pending = 0  # requests not yet handed a loaded runner (Ollama's pendingReqCh and the one in hand)
        self._idle_waiters: list[asyncio.Future[None]] = []

    def expire(self, now: float | None = None) -> None:
        """Unload idle runners whose keep-alive ran out."""
        now = time.time() if now is None else now
        for name, runner in list(self.runners.items()):
            if runner.idle and runner.expires_at and runner.expires_at <= now:
                del self.runners[name]

    def loaded(self) -> list[Runner]:
        """The resident runners, latest expiry first (``/api/ps`` order)."""
        self.expire()
        now = time.time()
        return sorted(self.runners.values(), key=lambda r: r.expires_at_ns(now), reverse=True)

    def unload(self, model: str) -> None:
        """Unload ``model`` now if idle, else as soon as its last request finishes (``keep_alive: 0``)."""
        runner = self.runners.get(model)
        if runner is None:
            return
        runner.session_s = 0.0
        if runner.idle:
            del self.runners[model]
            self._notify()

    def _session(self, keep_alive_s: float | None) -> float:
        value = self.config.keep_alive_s if keep_alive_s is None else keep_alive_s
        return FOREVER if value < 0 else value

    def _check_memory(self, model: str) -> None:
        profile = self.config.profile(model)
        if profile.oom or profile.size > self.config.memory:
            available = self.config.memory if profile.size > self.config.memory else int(profile.size * 0.75)
            raise OutOfMemory(profile.size, available)

    def _needs_room(self, model: str) -> bool:
        others = [r for r in self.runners.values() if r.model != model]
        if not others:
            return False
        limit = self.config.max_loaded_models
        if limit and len(others) >= limit:
            return True
        used = sum(r.size for r in others)
        return used + self.config.profile(model).size > self.config.memory

    def _victim(self) -> Runner | None:
        idle = [r for r in self.runners.values() if r.idle]
        if not idle:
            return None
        return min(idle, key=lambda r: (r.session_s, r.model))

    async def _wait_for_idle(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(future)
        try:
            await future
        finally:
            if future in self._idle_waiters:
                self._idle_waiters.remove(future)

    def _notify(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def acquire(
        self, model: str, keep_alive_s: float | None, num_ctx: int, load_ms: float | None = None
    ) -> Runner:
        """A runner for ``model`` (maybe still loading: see ``wait_loaded``), held until ``release``.

        Raises OutOfMemory when the model can never fit.
        """
        session = self._session(keep_alive_s)
        self.expire()
        while True:
            runner = self.runners.get(model)
            if runner is not None and runner.num_ctx != num_ctx:  # Ollama's needsReload: other options
                if runner.idle:
                    del self.runners[model]
                    continue
                await self._wait_for_idle()
                self.expire()
                continue
            if runner is not None:
                runner.ref_count += 1
                runner.session_s = session
                runner.expires_at = 0.0
                return runner
            self._check_memory(model)
            if not self._needs_room(model):
                return self._start_load(model, session, num_ctx, load_ms)
            victim = self._victim()
            if victim is not None:
                del self.runners[victim.model]
                continue
            await self._wait_for_idle()
            self.expire()

    def _start_load(self, model: str, session: float, num_ctx: int, load_ms: float | None) -> Runner:
        profile = self.config.profile(model)
        if load_ms is None:
            load_ms = self.config.load_ms if profile.load_ms is None else profile.load_ms
        runner = Runner(
            model=model,
            size=profile.size,
            size_vram=profile.vram,
            session_s=session,
            num_ctx=num_ctx,
            slots=Slots(self.config.num_parallel),
            ref_count=1,
        )
        self.runners[model] = runner
        if load_ms > 0:
            runner.loading = asyncio.get_running_loop().create_task(asyncio.sleep(load_ms / 1000))
        return runner

    async def wait_loaded(self, runner: Runner) -> None:
        """Wait until ``runner`` finished loading (a load is never cancelled by its request going away)."""
        if runner.loading is not None:
            try:
                await asyncio.shield(runner.loading)
            except BaseException:
                self.release(runner)
                raise

    def release(self, runner: Runner) -> None:
        """The request holding ``runner`` finished: start its keep-alive clock, or unload it (keep_alive 0)."""
        runner.ref_count = max(0, runner.ref_count - 1)
        if runner.ref_count:
            return
        if runner.session_s <= 0:
            if self.runners.get(runner.model) is runner:
                del self.runners[runner.model]
        else:
            runner.expires_at = FOREVER if runner.session_s == FOREVER else time.time() + runner.session_s
        self._notify()

    @asynccontextmanager
    async def use(
        self, model: str, keep_alive_s: float | None, num_ctx: int, load_ms: float | None = None
    ) -> AsyncIterator[Runner]:
        """``acquire`` + wait for the load + ``release`` at the end.

        Raises ServerBusy when ``max_queue`` requests already wait for a runner: Ollama's ``pendingReqCh`` holds
        ``OLLAMA_MAX_QUEUE`` of them besides the one the scheduler is working on.
        """
        limit = self.config.max_queue
        if limit and self.pending > limit:
            raise ServerBusy()
        self.pending += 1
        try:
            runner = await self.acquire(model, keep_alive_s, num_ctx, load_ms)
            await self.wait_loaded(runner)
        finally:
            self.pending -= 1
        try:
            yield runner
        finally:
            self.release(runner)
