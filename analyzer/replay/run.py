"""Running a replay plan: the recorded arrival pattern scaled by the speed, a concurrency cap, records written as
each request finishes, a progress callback, and a clean stop that keeps what finished."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from analyzer.protocol.record import InteractionRecord
from analyzer.replay.client import Target, send_request
from analyzer.replay.plan import PlannedRequest, ReplayPlan
from analyzer.store.log import InteractionLog, LogError

PROGRESS_EVERY_S = 0.5
CONNECT_AHEAD_S = 0.05  # each connection is opened this long before its request is due


@dataclass(frozen=True)
class Pace:
    """``speed``: a factor on the recorded offsets, or None for as fast as the cap allows (``max``);
    ``concurrency``: at most this many in flight, or None for as recorded (no cap; with ``max``: the recording's
    own peak)."""

    speed: float | None = 1.0
    concurrency: int | None = None

    def cap(self, plan: ReplayPlan) -> int | None:
        if self.concurrency is not None:
            return self.concurrency
        return plan.recorded_concurrency() if self.speed is None else None

    def offset(self, planned: PlannedRequest) -> float:
        return 0.0 if self.speed is None else planned.offset_s / self.speed

    def duration_s(self, plan: ReplayPlan) -> float | None:
        """Roughly how long the replay takes: the scaled span (the last start plus its recorded duration), or
        for ``max`` the recorded durations spread over the cap. None when nothing is known."""
        if not plan.requests:
            return 0.0
        if self.speed is not None:
            return max(r.offset_s / self.speed + r.duration_s for r in plan.requests)
        cap = self.cap(plan) or 1
        return sum(r.duration_s for r in plan.requests) / cap


@dataclass
class Progress:
    """What a progress line shows; handed to the callback after every change and every PROGRESS_EVERY_S."""

    total: int
    sent: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    durations: list[float] = field(default_factory=list)


@dataclass
class Outcome:
    """How a replay ended: the records written, failures, and whether it was stopped early."""

    records: list[InteractionRecord]
    failed: int
    stopped: bool
    dropped: int  # in flight when stopped: not written
    not_sent: int
    errors: dict[str, int]


def _failed(record: InteractionRecord) -> bool:
    return bool(record.error) or (record.status is not None and record.status >= 400) or not record.complete


async def run_plan(
    plan: ReplayPlan,
    target: Target,
    *,
    pace: Pace,
    label: str,
    log: InteractionLog,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Outcome:
    """Send every planned request at its (scaled) offset, at most ``pace.cap`` at once; append each finished
    record to ``log`` with ``replay_of`` and ``replay_label``. Setting ``stop`` cancels what is in flight (not
    written) and sends nothing more."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    began = loop.time()
    cap = pace.cap(plan)
    gate = asyncio.Semaphore(cap) if cap else None
    progress = Progress(total=len(plan.requests))
    written: list[InteractionRecord] = []
    errors: dict[str, int] = {}
    unwritable: list[str] = []
    last_offset = max((pace.offset(r) for r in plan.requests), default=0.0)

    def report() -> None:
        progress.elapsed_s = loop.time() - began
        typical = statistics.median(progress.durations) if progress.durations else None
        unsent = progress.total - progress.sent
        if pace.speed is None:
            per = typical if typical is not None else 0.0
            progress.eta_s = (unsent + progress.in_flight) * per / (cap or 1) if typical is not None else None
        else:
            progress.eta_s = max(last_offset - progress.elapsed_s, 0.0) + (typical or 0.0)
        if on_progress is not None:
            on_progress(progress)

    async def one(planned: PlannedRequest) -> None:
        due = began + pace.offset(planned)
        delay = due - CONNECT_AHEAD_S - loop.time()  # connect a little ahead, send at the recorded moment
        if delay > 0:
            await asyncio.sleep(delay)
        if gate is not None:
            await gate.acquire()
        try:
            progress.sent += 1
            progress.in_flight += 1
            report()
            record = await send_request(planned, target, not_before=None if pace.speed is None else due)
            record = dataclasses.replace(record, replay_of=planned.original_id, replay_label=label)
            try:
                log.append(record)
            except LogError as exc:  # a full disk, a log that cannot be written: stop, say so once
                if not unwritable:
                    unwritable.append(str(exc))
                stop.set()
                return
            written.append(record)
            progress.done += 1
            if record.total_ms is not None:
                progress.durations.append(record.total_ms / 1000.0)
            if _failed(record):
                progress.failed += 1
                key = record.error or (f"HTTP {record.status}" if record.status else "incomplete response")
                errors[key[:200]] = errors.get(key[:200], 0) + 1
        finally:
            progress.in_flight -= 1
            if gate is not None:
                gate.release()
            report()

    tasks = [asyncio.create_task(one(planned)) for planned in plan.requests]
    everything: asyncio.Future[list[object]] = asyncio.gather(*tasks, return_exceptions=True)
    stopper: asyncio.Future[object] = asyncio.create_task(stop.wait())
    while not everything.done():
        watched: set[asyncio.Future[object]] = {everything, stopper}  # type: ignore[arg-type]
        finished, _ = await asyncio.wait(watched, timeout=PROGRESS_EVERY_S)
        if stopper in finished:
            break
        report()
    stopped = stop.is_set() and not everything.done()
    dropped = 0
    if stopped:
        dropped = progress.in_flight
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    await asyncio.gather(everything, stopper, return_exceptions=True)
    for task in tasks:  # a bug in the replay itself must not pass silently
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if unwritable:
        raise LogError(f"{unwritable[0]}; the replay stopped ({len(written)} records written)")
    return Outcome(
        records=sorted(written, key=lambda r: r.started_at),
        failed=progress.failed,
        stopped=stopped,
        dropped=dropped,
        not_sent=progress.total - progress.sent,
        errors=errors,
    )


def run_replay(
    plan: ReplayPlan,
    target: Target,
    *,
    pace: Pace,
    label: str,
    log: InteractionLog,
    on_progress: Callable[[Progress], None] | None = None,
    install_signal_handlers: bool = True,
) -> Outcome:
    """``run_plan`` in a fresh event loop; SIGINT/SIGTERM stop it cleanly (what finished stays written)."""
    import signal

    async def main() -> Outcome:
        stop = asyncio.Event()
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
        return await run_plan(plan, target, pace=pace, label=label, log=log, stop=stop, on_progress=on_progress)

    return asyncio.run(main())


def default_label(now: float | None = None) -> str:
    """``replay-YYYYMMDD-HHMMSS`` (UTC)."""
    return time.strftime("replay-%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
