"""The few fields ``logs --summary`` needs, decoded fast from log lines and cached per daily file.

A summary over months of history needs, per record, only the start time, model, error, TTFT, tokens/s and token
count (the schema's ``summary`` view) — not the prompts and replies that make up most of each line.
``decode_columns`` decodes a block of lines in one msgspec pass into structs built from the schema: every column
is type-checked as ``record_problem`` would, lists are not decoded, unknown keys are skipped, and neither the key
order nor a column's absence (a log written before it existed) matters. A block it cannot decode as it is (a
line that is not JSON or not a record, NaN, a start time without a zone, two records glued on one line) is
decoded line by line, and a line msgspec refuses goes through ``json.loads`` and ``record_problem``: lines that
are not records are skipped with the same warnings ``read_log`` gives. ``DECODED`` counts lines taken each way.

``DigestCache`` keeps those fields per file under ``<log dir>/.summary-cache/`` (mode 0700/0600; numbers and
model names only, no prompt text). An entry is used as it is while the file keeps its inode, size and mtime;
a file that changed (today's, growing) is re-checked (CRC-32), and when the bytes the entry covered are still the same
only the rest is decoded; otherwise the file is decoded again. A log directory that cannot be written is read
without a cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import msgspec

from analyzer.protocol.record import SCHEMA, InteractionRecord, record_problem
from analyzer.protocol.timing import percentile
from analyzer.store.log import LogError, log_files
from analyzer.store.select import counts_as_traffic

NO_MODEL = "(none)"  # how a summary names the group of records without a model


def summary_model(model: str | None) -> str:
    """The summary's name for a record's model."""
    return model or NO_MODEL


CACHE_DIR_NAME = ".summary-cache"
CACHE_VERSION = 5  # 4 on branches schema (7 columns) and replay (regex): neither cache is this one

Warn = Callable[[str], object] | None


def _line_struct() -> type[msgspec.Struct]:
    """Every column as msgspec checks it: the declared type or null (``record_problem``'s rule), lists as lists of
    undecoded items, ``started_at`` as a time with its zone (RFC 3339, parsed in C; anything else goes the slow
    way, where ``fields_of`` reads it)."""
    started = Annotated[datetime, msgspec.Meta(tz=True)]
    undecoded = list[msgspec.Raw]  # a list, its items left as they are
    return msgspec.defstruct(
        "LineColumns",
        [
            (
                c.name,
                (started if c.name == "started_at" else undecoded if c.value_type is list else c.decoded_type) | None,
                None,
            )
            for c in SCHEMA
        ],
        module=__name__,
        gc=False,
    )


_DECODER = msgspec.json.Decoder(_line_struct())


class DecodeCounts:
    """Lines decoded by the fast path and by a full ``json.loads`` in this process (workers count their own): a
    record written by ``to_json``, today's or an older version's, should never need the slow path."""

    def __init__(self) -> None:
        self.fast = 0
        self.full = 0


DECODED = DecodeCounts()


class SummaryFields(NamedTuple):
    """What ``--summary`` (and its filters) read from one record."""

    started: float | None  # epoch seconds; None when started_at is unreadable
    model: str | None
    error: bool  # ``error`` is set (the summary's error count)
    failed: bool  # ``error`` set or status >= 400 (``--errors``)
    ttft_ms: float | None
    rate: float | None  # Ollama's tokens/s, else the wire's
    eval_count: int | None
    replay: bool  # written by ``ollama-wire replay`` (source "replay"): left out unless asked


def _epoch(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _columns(items: Sequence[Any], started: list[float | None]) -> list[list[Any]]:
    """The ``SummaryFields`` columns of records (or decoded ``SummaryColumns``) whose start times are ``started``."""
    errors = [bool(r.error) for r in items]
    return [
        started,
        [r.model for r in items],
        errors,
        [error or (r.status is not None and r.status >= 400) for error, r in zip(errors, items, strict=True)],
        [r.ttft_ms for r in items],
        [r.eval_tokens_per_s if r.eval_tokens_per_s is not None else r.wire_tokens_per_s for r in items],
        [r.eval_count for r in items],
        [not counts_as_traffic(r.source) for r in items],
    ]


def fields_of(record: InteractionRecord) -> SummaryFields:
    """The summary fields of a full record (a NaN or infinite number, which only ``json.loads`` lets through, is
    unknown: None, as the cache keeps it)."""
    fields = SummaryFields(*(column[0] for column in _columns([record], [_epoch(record.started_at)])))
    if not all(_finite(value) for value in (fields.ttft_ms, fields.rate)):
        fields = fields._replace(
            ttft_ms=fields.ttft_ms if _finite(fields.ttft_ms) else None,
            rate=fields.rate if _finite(fields.rate) else None,
        )
    return fields


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


class NotARecord(ValueError):
    """A line that ``read_log`` would skip; the message is its warning text (without the location)."""


def _decoded_columns(items: list[Any]) -> list[list[Any]]:
    return _columns(items, [None if r.started_at is None else r.started_at.timestamp() for r in items])


def fields_from_line(line: bytes) -> SummaryFields:
    """The summary fields of one log line (fast path, else a full decode); raises NotARecord."""
    try:
        item = _DECODER.decode(line)
    except msgspec.DecodeError:
        return _slow(line)
    DECODED.fast += 1
    return SummaryFields(*(column[0] for column in _decoded_columns([item])))


def decode_columns(data: bytes, first_number: int = 1, lines: int | None = None) -> tuple[list[list[Any]], list[str]]:
    """The fields of every line in ``data`` (whole lines, each ending in a newline) as ``SummaryFields`` columns,
    and ``N: problem`` texts for lines that are not records (N counted from ``first_number``). One msgspec pass
    over the block; when that fails, line by line. ``lines``: how many lines ``data`` holds, when known."""
    try:
        items = _DECODER.decode_lines(data)
    except msgspec.DecodeError:
        pass
    else:
        # blank lines give no item and two records glued on one line give two: one item per line is one record
        # per line (unless a glued line and a blank one cancel out in the same block; our writers write neither)
        if len(items) == (data.count(b"\n") if lines is None else lines):
            DECODED.fast += len(items)
            return _decoded_columns(items), []
    rows: list[SummaryFields] = []
    problems: list[str] = []
    for number, line in enumerate(data.split(b"\n")[:-1], first_number):
        if line.strip():
            try:
                rows.append(fields_from_line(line))
            except NotARecord as exc:
                problems.append(f"{number}: {exc}")
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in SummaryFields._fields], (
        problems
    )


def decode_lines(data: bytes, first_number: int = 1) -> tuple[list[SummaryFields], list[str]]:
    """:func:`decode_columns` as one ``SummaryFields`` per record."""
    columns, problems = decode_columns(data, first_number)
    return [SummaryFields(*row) for row in zip(*columns, strict=True)], problems


def _slow(line: bytes) -> SummaryFields:
    DECODED.full += 1
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NotARecord("skipped a line that is not JSON") from None
    problem = record_problem(data)
    if problem is not None:
        raise NotARecord(f"skipped a line that is not a record ({problem})")
    return fields_of(InteractionRecord.from_dict(data))


class _Entry:
    """The decoded fields of the first ``offset`` bytes (``lines`` lines) of one file."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.ino: int = data.get("ino", -1)
        self.offset: int = data.get("offset", 0)
        self.lines: int = data.get("lines", 0)
        self.check: int = data.get("check", -1)
        self.size: int = data.get("size", -1)
        self.mtime_ns: int = data.get("mtime_ns", -1)
        self.warnings: list[str] = data.get("warnings", [])
        self.columns: list[list[Any]] = data.get("columns") or [[] for _ in SummaryFields._fields]

    def extend(self, columns: list[list[Any]]) -> None:
        """Append decoded columns to the columns."""
        for column, values in zip(self.columns, columns, strict=True):
            column.extend(values)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "ino": self.ino,
            "offset": self.offset,
            "lines": self.lines,
            "check": self.check,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "warnings": self.warnings,
            "columns": self.columns,
        }


def _check(fh: Any, offset: int) -> int:
    """A CRC-32 of the first ``offset`` bytes: the part of the file an entry covers."""
    fh.seek(0)
    check = 0
    remaining = offset
    while remaining > 0:
        block = fh.read(min(remaining, 1 << 20))
        if not block:
            break
        check = zlib.crc32(block, check)
        remaining -= len(block)
    return check


class DigestCache:
    """Summary fields of every daily file of one log directory, cached beside the log when it is writable."""

    def __init__(self, log_dir: Path | str) -> None:
        self.log_dir = Path(log_dir)
        self.directory = self.log_dir / CACHE_DIR_NAME

    def _load(self, path: Path) -> _Entry:
        try:
            data = msgspec.json.decode((self.directory / (path.name + ".json")).read_bytes())
        except (OSError, msgspec.DecodeError):
            return _Entry()
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return _Entry()
        return _Entry(data)

    def _store(self, path: Path, entry: _Entry) -> None:
        target = self.directory / (path.name + ".json")
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(msgspec.json.encode(entry.to_json()))
            os.replace(temporary, target)
        except OSError:  # a read-only log directory: work without a cache
            with contextlib.suppress(OSError):
                temporary.unlink()

    def columns(self, path: Path, warn: Warn = None) -> tuple[list[list[Any]], list[SummaryFields]]:
        """The summary fields of ``path`` as columns (``SummaryFields`` order) and the fields of an unterminated
        last line (not cached), decoding only what the cache lacks."""
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        with fh:
            stat = os.fstat(fh.fileno())
            entry = self._load(path)
            unchanged = (entry.ino, entry.size, entry.mtime_ns) == (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if not unchanged and (
                entry.ino != stat.st_ino or entry.offset > stat.st_size or _check(fh, entry.offset) != entry.check
            ):
                entry = _Entry()
                entry.ino = stat.st_ino
            extra: list[SummaryFields] = []
            unterminated = None
            if entry.offset < stat.st_size:
                fh.seek(entry.offset)
                extra, unterminated = self._extend(path, entry, fh.read(stat.st_size - entry.offset))
            if not unchanged:
                entry.size, entry.mtime_ns = stat.st_size, stat.st_mtime_ns
                self._store(path, entry)
        if warn:
            for message in [*entry.warnings, *([unterminated] if unterminated else [])]:
                warn(message)
        return entry.columns, extra

    def rows(self, path: Path, warn: Warn = None) -> list[SummaryFields]:
        """The summary fields of every record in ``path``, in file order."""
        columns, extra = self.columns(path, warn)
        return [SummaryFields(*row) for row in zip(*columns, strict=True)] + extra

    @staticmethod
    def _extend(path: Path, entry: _Entry, data: bytes) -> tuple[list[SummaryFields], str | None]:
        """Decode the complete lines of ``data`` into ``entry``.

        A last line without its newline is still being written (or its writer died): it is decoded for this
        read only — returned as extra fields, or as a warning when it is not a record — and never cached.
        """
        complete = data.rfind(b"\n") + 1
        entry.check = zlib.crc32(memoryview(data)[:complete], entry.check if entry.offset else 0)
        count = data.count(b"\n", 0, complete)
        number = entry.lines + count
        columns, problems = decode_columns(data[:complete], entry.lines + 1, count)
        entry.warnings.extend(f"{path}:{problem}" for problem in problems)
        entry.extend(columns)
        entry.offset += complete
        entry.lines = number
        rest = data[complete:]
        if not rest.strip():
            return [], None
        try:
            return [fields_from_line(rest)], None
        except NotARecord as exc:
            return [], f"{path}:{number + 1}: {exc}"


def _files(
    log_dir: Path | str, since: datetime | None, progress: Callable[[int, int], object] | None
) -> Iterator[Path]:
    """The daily files that can hold records started at or after ``since``, oldest first."""
    from analyzer.store.tail import day_of_file  # the file-name rule lives with the tail reader

    since_day = since.astimezone(UTC).date() if since is not None else None
    paths = log_files(log_dir)
    for done, path in enumerate(paths):
        if progress:
            progress(done, len(paths))
        day = day_of_file(path)
        if since_day is None or day is None or day >= since_day:
            yield path


def summary_fields(
    log_dir: Path | str,
    *,
    since: datetime | None = None,
    model: str | None = None,
    errors_only: bool = False,
    warn: Warn = None,
    include_replays: bool = False,
) -> Iterator[SummaryFields]:
    """The summary fields of every record ``select`` would choose with these filters (in file order)."""
    cache = DigestCache(log_dir)
    since_s = since.timestamp() if since is not None else None
    for path in _files(log_dir, since, None):
        for fields in cache.rows(path, warn):
            if fields.replay and not include_replays:
                continue
            if model and fields.model != model:
                continue
            if errors_only and not fields.failed:
                continue
            if since_s is not None and (fields.started is None or fields.started < since_s):
                continue
            yield fields


class _Group:
    __slots__ = ("count", "errors", "eval_tokens", "rates", "ttfts")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.eval_tokens = 0
        self.ttfts: list[float] = []
        self.rates: list[float] = []


class SummaryAccumulator:
    """Per-model counts and samples, fed record by record or a cached file's columns at a time."""

    def __init__(
        self,
        *,
        since: datetime | None = None,
        model: str | None = None,
        errors_only: bool = False,
        include_replays: bool = False,
    ) -> None:
        self.include_replays = include_replays
        self.since_s = since.timestamp() if since is not None else None
        self.model = model
        self.errors_only = errors_only
        self.groups: dict[str, _Group] = {}

    def add(self, fields: SummaryFields) -> None:
        """Count one record (if it passes the filters)."""
        self.add_columns([[value] for value in fields])

    def add_columns(self, columns: list[list[Any]]) -> None:
        """Count every record of a file's columns (``SummaryFields`` order) that passes the filters.

        Records are grouped by model with one pass of index lists; each group's values are then gathered column
        by column (``itemgetter``, in C) rather than record by record."""
        started, models, errors, failed, ttfts, rates, evals, replays = columns
        since_s, wanted, errors_only = self.since_s, self.model, self.errors_only
        skip_replays = not self.include_replays and any(replays)
        kept: Iterable[int] = range(len(models))
        if wanted or errors_only or since_s is not None or skip_replays:
            kept = [
                i
                for i in kept
                if (not skip_replays or not replays[i])
                and (not wanted or models[i] == wanted)
                and (not errors_only or failed[i])
                and (since_s is None or (started[i] is not None and started[i] >= since_s))
            ]
        by_model: dict[str | None, list[int]] = {}
        for i in kept:
            found = by_model.get(models[i])
            if found is None:
                by_model[models[i]] = [i]
            else:
                found.append(i)
        for model, rows in by_model.items():
            name = summary_model(model)
            group = self.groups.get(name)
            if group is None:
                group = self.groups[name] = _Group()
            pick = itemgetter(*rows) if len(rows) > 1 else (lambda column, at=rows[0]: (column[at],))
            group.count += len(rows)
            group.errors += sum(pick(errors))
            group.eval_tokens += sum(filter(None, pick(evals)))
            group.ttfts.extend([value for value in pick(ttfts) if value is not None])
            group.rates.extend([value for value in pick(rates) if value is not None])

    def result(self) -> list[dict[str, Any]]:
        """``SUMMARY_COLUMNS`` dicts, one per model, by model name."""
        rows = []
        for name, group in sorted(self.groups.items()):
            ttfts, rates = sorted(group.ttfts), sorted(group.rates)
            rows.append(
                {
                    "model": name,
                    "count": group.count,
                    "errors": group.errors,
                    "ttft_p50_ms": _round(percentile(ttfts, 50)) if ttfts else None,
                    "ttft_p95_ms": _round(percentile(ttfts, 95)) if ttfts else None,
                    "tok_per_s_p50": _round(percentile(rates, 50)) if rates else None,
                    "eval_tokens": group.eval_tokens,
                }
            )
        return rows


def summarize(rows: Iterable[SummaryFields]) -> list[dict[str, Any]]:
    """Per model: count, errors, TTFT p50/p95 (ms), median tokens/s, tokens generated (``SUMMARY_COLUMNS``).

    Numbers rounded to 0.1; None where nothing was measured; one dict per model, by model name.
    """
    accumulator = SummaryAccumulator(include_replays=True)  # the rows were chosen already
    columns = [list(column) for column in zip(*rows, strict=True)]
    if columns:
        accumulator.add_columns(columns)
    return accumulator.result()


PARALLEL_MIN_BYTES = 32 * 1024 * 1024  # below this much undecoded log, worker processes cost more than they save
MAX_WORKERS = 4

Decoded = tuple[list[list[Any]], list[SummaryFields], list[str]]


def _decode_file(job: tuple[str, str]) -> Decoded:
    """One file's columns, unterminated-line fields and warnings (runs in a worker process too)."""
    log_dir, path = job
    messages: list[str] = []
    columns, extra = DigestCache(log_dir).columns(Path(path), messages.append)
    return columns, extra, messages


def _uncached_bytes(cache: DigestCache, paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if not (cache.directory / (path.name + ".json")).exists():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total


def _worker_context() -> multiprocessing.context.BaseContext:
    """fork where it is safe — Linux, and no other thread that could hold a lock (a dashboard, a proxy) — since it
    spares each worker a Python start-up and the imports (about 0.1 s of CPU each); spawn otherwise."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _decoded(
    log_dir: Path | str, paths: list[Path], progress: Callable[[int, int], object] | None, parallel_min_bytes: int
) -> Iterator[Decoded]:
    """Every file decoded, in order. A first run over a large log (nothing cached yet) decodes files in worker
    processes (one per CPU, at most ``MAX_WORKERS``); the results — and so the summary — are the same."""
    cache = DigestCache(log_dir)
    jobs = [(str(log_dir), str(path)) for path in paths]
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if workers > 1 and len(paths) > 1 and _uncached_bytes(cache, paths) >= parallel_min_bytes:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context()) as pool:
            for done, result in enumerate(pool.map(_decode_file, jobs, chunksize=2)):
                if progress:
                    progress(done, len(paths))
                yield result
        return
    for done, job in enumerate(jobs):
        if progress:
            progress(done, len(paths))
        yield _decode_file(job)


def summarize_log(
    log_dir: Path | str,
    *,
    since: datetime | None = None,
    model: str | None = None,
    errors_only: bool = False,
    warn: Warn = None,
    progress: Callable[[int, int], object] | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    include_replays: bool = False,
) -> list[dict[str, Any]]:
    """``summarize`` of the records ``select`` would choose — from the per-day cache, without per-record objects.

    ``progress(files_done, files_total)`` is called as files are done. With at least ``parallel_min_bytes`` not
    yet cached, files are decoded in worker processes.
    """
    accumulator = SummaryAccumulator(since=since, model=model, errors_only=errors_only, include_replays=include_replays)
    paths = list(_files(log_dir, since, None))
    for columns, extra, messages in _decoded(log_dir, paths, progress, parallel_min_bytes):
        if warn:
            for message in messages:
                warn(message)
        accumulator.add_columns(columns)
        for fields in extra:
            accumulator.add(fields)
    return accumulator.result()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
