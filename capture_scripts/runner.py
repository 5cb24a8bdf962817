"""The scheduled capture runner: snapshots on an interval, lock, signals, retention, state, log, analysis."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from capture_scripts.config import CaptureConfig, Retention
from capture_scripts.snapshot import CaptureError, Snapshot, SnapshotDiscarded, Snapshotter, list_snapshots

log = logging.getLogger("ollama_capture")


class LockHeld(Exception):
    """Another runner holds the lock."""


@contextlib.contextmanager
def runner_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (released by the kernel even if we are killed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise LockHeld(f"another ollama-capture run (pid {holder}) holds {path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def setup_logging(config: CaptureConfig, echo: bool = True) -> None:
    """Log to ``state_dir/capture.log`` with UTC ISO timestamps (and to stderr when ``echo``)."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    log.handlers.clear()
    handlers: list[logging.Handler] = [logging.FileHandler(config.log_file, encoding="utf-8")]
    if echo:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def read_state(config: CaptureConfig) -> dict[str, Any]:
    """The state file's content (empty dict when there is none yet)."""
    try:
        return dict(json.loads(config.state_file.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError):
        return {}


def update_state(config: CaptureConfig, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the state file (written atomically) and return the new state."""
    state = read_state(config)
    state.update(changes)
    state["updated"] = time.time()
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = config.state_file.with_name(f".{config.state_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, config.state_file)
    return state


def apply_retention(directory: Path, retention: Retention, now: float | None = None) -> list[Path]:
    """Delete the oldest snapshots until max_age, max_files and max_bytes hold; the newest is always kept."""
    now = time.time() if now is None else now
    files = sorted(list_snapshots(directory), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        return []
    newest = files.pop()
    keep_bytes = newest.stat().st_size
    removed: list[Path] = []
    sizes = {p: p.stat().st_size for p in files}
    total = keep_bytes + sum(sizes.values())
    for path in list(files):  # oldest first
        too_old = retention.max_age is not None and now - path.stat().st_mtime > retention.max_age
        too_many = retention.max_files is not None and len(files) + 1 > retention.max_files
        too_big = retention.max_bytes is not None and total > retention.max_bytes
        if not (too_old or too_many or too_big):
            break
        path.unlink(missing_ok=True)
        resource_timeline(path).unlink(missing_ok=True)
        files.remove(path)
        total -= sizes[path]
        removed.append(path)
    return removed


def analyze_snapshots(config: CaptureConfig, budget: Callable[[Path], float] | None = None) -> int:
    """Feed every snapshot in the output directory to the analyzer; it skips files it has already read.

    Each file is analyzed in a child process with a time budget proportional to its size (``budget``,
    default :func:`analyzer.pcap.batch.size_budget`); a file that fails or overruns is logged as one
    error line naming it, and the next file follows (it is tried again on the next run). A snapshot's
    resource timeline (saved beside it) is joined to its records before they are appended.
    """
    from analyzer.pcap.analyze import AnalyzeOptions  # lazy: only needed with analyze: true
    from analyzer.pcap.batch import analyze_into_log_results, size_budget
    from analyzer.resources.join import join_timeline

    def join(result: Any) -> None:
        join_timeline(result.path, result.records, warn=log.warning)

    config.log_dir.mkdir(parents=True, exist_ok=True)
    options = AnalyzeOptions(ports=tuple(config.ports))
    appended = 0
    for result in analyze_into_log_results(
        list_snapshots(config.output_dir), config.log_dir, options, budget=budget or size_budget, enrich=join
    ):
        if result.error is not None:
            log.error("analyzer: %s", result.error)
        appended += len(result.records)
    return appended


def resource_timeline(snapshot: Path) -> Path:
    """The resource timeline saved beside a snapshot (``NAME.resources.jsonl``)."""
    from analyzer.resources.timeline import timeline_path

    return timeline_path(snapshot)


def take_with_resources(config: CaptureConfig, snapper: Snapshotter, duration: int | None = None) -> Snapshot:
    """One snapshot, with the machine's resources sampled meanwhile and saved beside it (``resources: off``: not).

    The sources are opened before the capture starts; none being available (or a source failing) never stops
    the capture: the snapshot is simply saved without a timeline.
    """
    recording = None
    partial = config.state_dir / f".resources-{os.getpid()}.partial"
    if config.resources.strip().lower() not in ("off", "none", ""):
        from analyzer.resources.registry import Target
        from analyzer.resources.session import TimelineRecording

        target = Target(port=config.ports[0], interval_ms=config.resources_interval)
        try:
            config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            recording = TimelineRecording(config.resources, target, partial).start()
        except Exception as exc:  # resources are extra: the capture goes on without them
            log.warning("resource sampling not started: %s", exc)
            recording = None
    try:
        snap = snapper.take(duration)
    except BaseException:
        if recording is not None:
            recording.discard()
        raise
    if recording is not None:
        samples = recording.stop()
        if samples:
            try:
                os.replace(partial, resource_timeline(snap.path))
                log.info("resources: %d samples from %s saved beside %s", samples,
                         ", ".join(s.name for s in recording.opened.samplers), snap.path.name)  # fmt: skip
            except OSError as exc:
                log.warning("resource timeline not saved: %s", exc)
                partial.unlink(missing_ok=True)
        else:
            partial.unlink(missing_ok=True)
    return snap


def record_snapshot(config: CaptureConfig, snap: Snapshot) -> None:
    """After a snapshot: log it, run the analyzer if configured, apply retention, update the state file."""
    state = read_state(config)
    log.info("snapshot %s: %d packets, %d bytes, %.1f s (%s)", snap.path, snap.packets, snap.bytes,
             snap.seconds, snap.method)  # fmt: skip
    changes: dict[str, Any] = {
        "last_snapshot": snap.as_dict(),
        "snapshots": int(state.get("snapshots", 0)) + 1,
        "packets": int(state.get("packets", 0)) + snap.packets,
    }
    if config.analyze:
        try:
            appended = analyze_snapshots(config)
            changes["analyzed_records"] = int(state.get("analyzed_records", 0)) + appended
            log.info("analyzer appended %d records to %s", appended, config.log_dir)
        except Exception as exc:  # the analyzer failing must not stop the captures
            changes.update(last_error=f"analyzer: {exc}", last_error_at=time.time())
            log.error("analyzer failed: %s", exc)
    removed = apply_retention(config.output_dir, config.retention)
    if removed:
        changes["removed"] = int(state.get("removed", 0)) + len(removed)
        log.info("retention removed %d snapshot(s): %s", len(removed), ", ".join(p.name for p in removed))
    update_state(config, **changes)


def record_failure(config: CaptureConfig, error: Exception) -> None:
    """Log a failed snapshot and count it in the state file."""
    state = read_state(config)
    log.error("snapshot failed: %s", error)
    update_state(config, failures=int(state.get("failures", 0)) + 1, last_error=str(error), last_error_at=time.time())


def take_once(config: CaptureConfig, duration: int | None = None) -> Snapshot:
    """``ollama-capture once``: one snapshot, recorded like the runner's."""
    snapper = Snapshotter(config)
    snapper.collect_leftovers()
    try:
        snap = take_with_resources(config, snapper, duration)
    except CaptureError as exc:
        record_failure(config, exc)
        raise
    record_snapshot(config, snap)
    return snap


@dataclasses.dataclass
class RunResult:
    """What a ``run`` loop did before it stopped."""

    snapshots: int = 0
    failures: int = 0
    discarded: int = 0
    stopped_by: str | None = None


def run_loop(
    config: CaptureConfig,
    max_snapshots: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> RunResult:
    """``ollama-capture run``: a snapshot every ``interval`` seconds until SIGTERM/SIGINT (or max_snapshots).

    A signal stops the current snapshot early; it is still finished, delivered and recorded, then the loop
    ends. Missed starts (the machine slept, a snapshot overran) are skipped, not caught up.
    """
    result = RunResult()
    snapper = Snapshotter(config)
    stopping: list[bool] = []  # a plain flag: a signal handler must not take locks (Event does)

    def on_signal(signum: int, _frame: object) -> None:
        result.stopped_by = signal.Signals(signum).name
        stopping.append(True)
        snapper.stop()

    with runner_lock(config.lock_file):
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            update_state(config, runner_pid=os.getpid(), runner_started=time.time(), runner_stopped=None)
            log.info("runner started: %s port(s) %s, %d s every %d s, output %s", config.interface,
                     ",".join(map(str, config.ports)), config.duration, config.interval, config.output_dir)  # fmt: skip
            for moved in snapper.collect_leftovers():
                log.info("collected unfinished delivery %s", moved)
            if on_ready:
                on_ready()
            next_start = time.time()
            while not stopping:
                try:
                    record_snapshot(config, take_with_resources(config, snapper))
                    result.snapshots += 1
                except SnapshotDiscarded as exc:
                    log.info("%s", exc)
                    result.discarded += 1
                except CaptureError as exc:
                    record_failure(config, exc)
                    result.failures += 1
                if max_snapshots is not None and result.snapshots + result.failures + result.discarded >= max_snapshots:
                    break
                next_start += config.interval
                now = time.time()
                if next_start < now:
                    next_start = now  # skip what we missed
                while not stopping and time.time() < next_start:
                    time.sleep(min(0.5, max(0.0, next_start - time.time())))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            update_state(config, runner_pid=None, runner_stopped=time.time())
            log.info("runner stopped (%s) after %d snapshot(s), %d failure(s)", result.stopped_by or "done",
                     result.snapshots, result.failures)  # fmt: skip
    return result
