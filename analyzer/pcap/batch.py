"""Many captures → one interaction log, resumable (the capture runner's and ``--log-dir``'s hand-off)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from analyzer.pcap.analyze import AnalyzeOptions, CaptureResult, analyze_capture_bounded, analyze_paths, iter_capture
from analyzer.pcap.ledger import Ledger, content_hash
from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog, LogError


def by_start(records: Sequence[InteractionRecord]) -> list[InteractionRecord]:
    """Records in ``started_at`` order (stable: records that started together keep their order)."""
    return sorted(records, key=lambda r: r.started_at)


def pending_captures(paths: Sequence[Path], ledger: Ledger) -> tuple[list[tuple[Path, str]], int]:
    """The files (with their content hashes) not yet in the ledger, and how many were skipped.

    A file that cannot be read gets an empty hash: it is still analyzed (which reports the problem).
    """
    try:
        done = ledger.analyzed()
    except OSError as exc:
        raise LogError(f"{ledger.path}: cannot read: {exc.strerror or exc}") from exc
    pending, skipped = [], 0
    for path in paths:
        try:
            digest = content_hash(path)
        except OSError:
            pending.append((path, ""))
            continue
        if digest in done:
            skipped += 1
        else:
            pending.append((path, digest))
            done.add(digest)  # the same bytes twice in one run count once
    return pending, skipped


def analyze_into_log_results(
    paths: Sequence[Path],
    log_dir: Path,
    options: AnalyzeOptions,
    *,
    jobs: int = 1,
    on_skip: Callable[[int], None] | None = None,
    budget: Callable[[Path], float] | None = None,
    enrich: Callable[[CaptureResult], object] | None = None,
) -> Iterator[CaptureResult]:
    """Analyze the files not yet in ``log_dir``'s ledger, append their records, yield each result.

    Each file's records are appended (and yielded) in ``started_at`` order. A file that failed to
    parse is not entered in the ledger, so a later run tries it again. Raises :class:`LogError` when
    the log or the ledger cannot be written. With ``budget`` (path → seconds), each file is analyzed in a
    child process killed at its budget; such a file fails (``error`` names it) and the next one follows.
    ``enrich`` may fill columns of a result's records before they are appended (the resource timeline saved
    beside a capture).
    """
    ledger = Ledger(log_dir)
    log = InteractionLog(log_dir)
    pending, skipped = pending_captures(paths, ledger)
    if on_skip is not None:
        on_skip(skipped)
    hashes = dict(pending)
    files = [p for p, _ in pending]
    if budget is not None:
        results: Iterator[CaptureResult] = (analyze_capture_bounded(p, options, budget(p)) for p in files)
    else:
        results = analyze_paths(files, options, jobs=jobs)
    for result in results:
        if result.error is None:
            result.records = by_start(result.records)
            if enrich is not None and result.records:
                enrich(result)
            if result.records:
                log.append_many(result.records)
            if hashes[result.path]:
                try:
                    ledger.add(hashes[result.path], result.path, len(result.records))
                except OSError as exc:
                    raise LogError(f"{ledger.path}: cannot write: {exc.strerror or exc}") from exc
        yield result


Enrich = Callable[[CaptureResult], object]
Results = Iterator[CaptureResult]


def analyze_records(
    files: Sequence[Path],
    options: AnalyzeOptions,
    *,
    jobs: int = 1,
    log_dir: Path | None = None,
    completion_order: bool = False,
    enrich: Enrich | None = None,
    held_whole: Callable[[Path], bool] = lambda _path: False,
    on_result: Callable[[CaptureResult], object] | None = None,
    on_skip: Callable[[int], None] | None = None,
    watch: Callable[[Results], Results] | None = None,
) -> Iterator[InteractionRecord]:
    """Every record of ``files`` (oldest capture first, as given): the one place that chooses how captures are read.

    * ``log_dir``: each file's records are also appended to that interaction log, and captures already in its
      ledger are skipped (``on_skip(count)``);
    * else, when the caller accepts ``completion_order`` and ``jobs`` is 1: streamed, each record as soon as its
      exchange completes, file after file — nothing is held, memory stays flat. A file for which
      ``held_whole(path)`` is true is read whole first (``enrich`` needs every request that overlapped);
    * else: ``jobs`` files at a time, each file's records in ``started_at`` order.

    ``enrich(result)`` fills columns of a file's records before they are yielded (or appended);
    ``on_result(result)`` hears each file once: its warnings, error and counters. ``watch`` wraps the per-file
    results of the batch modes (a progress bar); streaming has none.
    """
    keep = watch or (lambda results: results)
    if log_dir is not None:
        results = analyze_into_log_results(files, log_dir, options, jobs=jobs, on_skip=on_skip, enrich=enrich)
        yield from _per_file(keep(results), None, on_result)
    elif completion_order and jobs == 1:
        for path in files:
            result = CaptureResult(path=path)
            if enrich is not None and held_whole(path):
                result.records = list(iter_capture(path, options, result))
                enrich(result)
                yield from result.records
            else:
                yield from iter_capture(path, options, result)
            if on_result is not None:
                on_result(result)
    else:
        yield from _per_file(keep(analyze_paths(files, options, jobs=jobs)), enrich, on_result)


def _per_file(
    results: Results, enrich: Enrich | None, on_result: Callable[[CaptureResult], object] | None
) -> Iterator[InteractionRecord]:
    for result in results:
        if on_result is not None:
            on_result(result)
        if enrich is not None and result.records:
            enrich(result)
        yield from by_start(result.records)


def analyze_into_log(
    paths: list[Path], log_dir: Path, ports: list[int], enrich: Callable[[CaptureResult], object] | None = None
) -> int:
    """Append the records of every not-yet-analyzed capture in ``paths`` to the log; returns how many."""
    options = AnalyzeOptions(ports=tuple(ports))
    return sum(len(r.records) for r in analyze_into_log_results(paths, log_dir, options, enrich=enrich))


# The capture runner's budget per file: generous (the analyzer reads tens of MB/s; the machine may be
# busy with the capture itself), but finite.
BUDGET_BASE_SECONDS = 60.0
BUDGET_SECONDS_PER_MB = 2.0


def size_budget(path: Path) -> float:
    """Seconds one capture file may take to analyze, proportional to its size."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return BUDGET_BASE_SECONDS + BUDGET_SECONDS_PER_MB * size / 1e6
