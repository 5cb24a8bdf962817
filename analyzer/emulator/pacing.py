"""Emit a plan's tokens on the clock, with injected faults, and measure what Ollama would report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from analyzer.emulator.plan import ReplyPlan


@dataclass(frozen=True)
class Token:
    """One generated token; ``kind`` says whether it is thinking or reply content."""

    kind: Literal["thinking", "content"]
    text: str


@dataclass(frozen=True)
class Fault:
    """An injected failure: ``error`` ends the stream with an error object, ``close`` drops the connection."""

    kind: Literal["error", "close"]
    after: int

    @property
    def message(self) -> str:
        """The error text sent to the client."""
        return f"emulated error after {self.after} tokens"


@dataclass
class Timing:
    """Monotonic nanosecond marks of one generation; ``metrics`` turns them into Ollama's fields.

    ``start_ns`` is the request's arrival (Ollama's ``checkpointStart``), ``loaded_ns`` when the scheduler
    handed out a runner (``checkpointLoaded``), ``ready_ns`` when a parallel slot was free and prompt
    evaluation began. The slot wait (``ready_ns - loaded_ns``) is in ``total_duration`` only, as in Ollama.
    """

    start_ns: int = field(default_factory=time.monotonic_ns)
    loaded_ns: int = 0
    ready_ns: int = 0
    prompt_done_ns: int = 0
    eval_done_ns: int = 0
    emitted: int = 0

    def metrics(self, plan: ReplyPlan) -> dict[str, int]:
        """Ollama's final-object metrics, in its field order, measured from the actual pacing."""
        now = time.monotonic_ns()
        eval_done = self.eval_done_ns or now
        return {
            "total_duration": now - self.start_ns,
            "load_duration": max(1, self.loaded_ns - self.start_ns),
            "prompt_eval_count": plan.prompt_tokens,
            "prompt_eval_duration": max(1, self.prompt_done_ns - (self.ready_ns or self.loaded_ns)),
            "eval_count": self.emitted,
            "eval_duration": max(1, eval_done - self.prompt_done_ns),
        }


async def _sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


def _fault_at(plan: ReplyPlan, emitted: int) -> Fault | None:
    if plan.close_after is not None and emitted == plan.close_after:
        return Fault("close", emitted)
    if plan.error_after is not None and emitted == plan.error_after:
        return Fault("error", emitted)
    return None


async def paced_tokens(plan: ReplyPlan, timing: Timing) -> AsyncIterator[Token | Fault]:
    """Yield thinking then content tokens, ``prefill_ms`` before the first and ``token_ms`` before each.

    With ``stall_after`` K (≥ 1), ``stall_ms`` more pass between token K and token K+1.

    A fault is yielded (and the iteration ends) once ``close_after``/``error_after`` tokens were emitted;
    a fault count equal to the token total replaces the final ``done`` object.
    """
    timing.ready_ns = time.monotonic_ns()
    timing.loaded_ns = timing.loaded_ns or timing.ready_ns
    await _sleep_ms(plan.prefill_ms)
    timing.prompt_done_ns = time.monotonic_ns()
    sequence = [Token("thinking", t) for t in plan.thinking] + [Token("content", t) for t in plan.content]
    for token in sequence:
        fault = _fault_at(plan, timing.emitted)
        if fault:
            timing.eval_done_ns = time.monotonic_ns()
            yield fault
            return
        if plan.stall_after is not None and timing.emitted == plan.stall_after and timing.emitted:
            await _sleep_ms(plan.stall_ms)  # the injected stall: a gap after token K, inside eval_duration
        await _sleep_ms(plan.token_ms)
        timing.emitted += 1
        yield token
    timing.eval_done_ns = time.monotonic_ns()
    fault = _fault_at(plan, timing.emitted)
    if fault:
        yield fault
