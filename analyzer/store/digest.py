"""The few fields ``logs --summary`` needs, decoded fast from log lines and cached per daily file.

A summary over months of history needs, per record, only the start time, model, error, TTFT, tokens/s and token
count — not the prompts and replies that make up most of each line. ``decode_lines`` finds those with one
regular-expression pass over a block of lines, relying on the key order :meth:`InteractionRecord.to_json`
writes, and falls back to a full ``json.loads`` for any line that does not look exactly like that (another
writer or key order, NaN, a newer column in the middle, a second record glued on).
Lines that are not records are skipped with the same warnings ``read_log`` gives; a line whose head and tail
are well-formed is not checked further (its prompt/messages are never decoded).

``DigestCache`` keeps those fields per file under ``<log dir>/.summary-cache/`` (mode 0700/0600; numbers and
model names only, no prompt text). An entry is used as it is while the file keeps its inode, size and mtime;
a file that changed (today's, growing) is re-checked (CRC-32), and when the bytes the entry covered are still the same
only the rest is decoded; otherwise the file is decoded again. A log directory that cannot be written is read
without a cache.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from analyzer.protocol.record import SCHEMA, SUMMARY, Column, InteractionRecord, record_problem
from analyzer.protocol.timing import percentile
from analyzer.store.log import LogError, log_files

CACHE_DIR_NAME = ".summary-cache"
CACHE_VERSION = 3

Warn = Callable[[str], object] | None

# One line as ``InteractionRecord.to_json`` writes it, capturing the columns of the schema's ``summary`` view;
# ``_line_pattern`` derives it from the declaration. The summary columns must be there, in declaration order; any
# other column may be missing (a log written before it existed), never out of order. Inside a JSON string a quote
# is always escaped, so a key with bare quotes can only be a key; lists (messages, tool calls) may hold objects
# with any keys, so the stretch from the last summary column before the first list to the first summary column
# after the last list is skipped greedily: the last ``,"<that column>":`` on the line is the record's own, since
# after it come only scalars and strings. Anything else does not match and goes through ``json.loads``.
_STR = rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_NUMBER = rb"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?"  # JSON syntax: float() takes exactly these
_INTEGER = rb"-?(?:0|[1-9]\d*)"
_LIST_OF_STR = rb"\[(?:" + _STR + rb"(?:," + _STR + rb")*)?\]"
_VALUE = {str: _STR, int: _INTEGER, float: _NUMBER, bool: rb"(?:true|false)"}


def _value_pattern(spec: Column) -> bytes:
    """What ``to_json`` writes for one column (null only where the declaration allows it)."""
    if spec.value_type is list:
        value = _LIST_OF_STR if spec.item is str else rb"(?:null|\[[^\n]*?\])"
    else:
        value = _VALUE[spec.value_type]
    return rb"(?:null|" + value + rb")" if spec.optional else value


def _line_pattern(schema: tuple[Column, ...] = SCHEMA) -> tuple[re.Pattern[bytes], tuple[str, ...]]:
    """The fast-path regular expression for ``schema`` and the names of its groups (the ``summary`` view)."""
    names = [spec.name for spec in schema]
    wanted = [i for i, spec in enumerate(schema) if SUMMARY in spec.views]
    # lists that may hold objects, before the last summary column (after it nothing is matched)
    lists = [i for i, spec in enumerate(schema) if spec.value_type is list and spec.item is not str and i < wanted[-1]]
    skip_from = anchor = len(schema)  # columns skip_from .. anchor - 1 are skipped; anchor is a summary column
    if lists:
        before = [i for i in wanted if i < lists[0]]
        skip_from = before[-1] + 1 if before else 1
        anchor = next(i for i in wanted if i > lists[-1])
        inside = [names[i] for i in wanted if skip_from <= i < anchor]
        if inside:
            raise ValueError(f"summary columns {inside} lie between list columns: the fast path cannot find them")
    parts = [rb"^"]
    for i, spec in enumerate(schema[: wanted[-1] + 1]):
        key = (rb"{" if i == 0 else rb",") + b'"' + spec.name.encode() + b'":'
        value = _value_pattern(spec)
        if skip_from <= i < anchor:
            if i == skip_from:
                parts.append(rb",[^\n]*")  # greedy: backs up to the last ``,"<anchor>":`` on the line
        elif i in wanted:
            parts.append(key + b"(" + value + b")")
        elif i == 0:
            parts.append(key + value)
        else:
            parts.append(b"(?:" + key + value + b")?")  # absent from logs written before the column existed
    parts.append(rb"[,}][^\n]*$")
    return re.compile(b"".join(parts), re.MULTILINE), tuple(names[i] for i in wanted)


_LINE, _LINE_GROUPS = _line_pattern()
_RECORD_START = b'{"id":"'


class DecodeCounts:
    """Lines decoded by the fast path and by a full ``json.loads`` in this process (workers count their own): a
    record written by today's ``to_json`` should never need the slow path, and tests check that it does not."""

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


def _epoch(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def fields_of(record: InteractionRecord) -> SummaryFields:
    """The summary fields of a full record."""
    rate = record.eval_tokens_per_s if record.eval_tokens_per_s is not None else record.wire_tokens_per_s
    return SummaryFields(
        started=_epoch(record.started_at),
        model=record.model,
        error=bool(record.error),
        failed=bool(record.error) or (record.status is not None and record.status >= 400),
        ttft_ms=record.ttft_ms,
        rate=rate,
        eval_count=record.eval_count,
    )


class NotARecord(ValueError):
    """A line that ``read_log`` would skip; the message is its warning text (without the location)."""


_STARTED, _STATUS, _MODEL, _ERROR, _TTFT, _WIRE_RATE, _EVAL_COUNT, _RATE = (
    _LINE_GROUPS.index(name)
    for name in (
        "started_at",
        "status",
        "model",
        "error",
        "ttft_ms",
        "wire_tokens_per_s",
        "eval_count",
        "eval_tokens_per_s",
    )
)


def _text(token: bytes) -> str | None:
    """A JSON string (or null) the fast path matched."""
    if token == b"null":
        return None
    if b"\\" in token:
        text: str = json.loads(token)
        return text
    return token[1:-1].decode("utf-8")


def _from_match(match: re.Match[bytes]) -> SummaryFields:
    """The fields of a line ``_LINE`` matched (its numbers are JSON numbers); ValueError for a glued line."""
    groups = match.groups()
    if match.string.find(_RECORD_START, match.start() + 1, match.end()) >= 0:
        raise ValueError("a second record glued onto this line")
    error_token, rate_token, wire_rate, status = groups[_ERROR], groups[_RATE], groups[_WIRE_RATE], groups[_STATUS]
    error = error_token != b"null" and error_token != b'""'
    rate = None if rate_token == b"null" else float(rate_token)
    if rate is None and wire_rate != b"null":
        rate = float(wire_rate)
    ttft, eval_count = groups[_TTFT], groups[_EVAL_COUNT]
    return SummaryFields(
        started=_epoch(_text(groups[_STARTED]) or ""),
        model=_text(groups[_MODEL]),
        error=error,
        failed=error or (status != b"null" and int(status) >= 400),
        ttft_ms=None if ttft == b"null" else float(ttft),
        rate=rate,
        eval_count=None if eval_count == b"null" else int(eval_count),
    )


def fields_from_line(line: bytes) -> SummaryFields:
    """The summary fields of one log line (fast path, else a full decode); raises NotARecord."""
    match = _LINE.match(line.rstrip(b"\r\n"))
    if match is not None:
        try:
            fields = _from_match(match)
            DECODED.fast += 1
            return fields
        except (UnicodeDecodeError, ValueError):
            pass
    return _slow(line)


def decode_lines(data: bytes, first_number: int = 1) -> tuple[list[SummaryFields], list[str]]:
    """The fields of every line in ``data`` (whole lines, each ending in a newline) and ``N: problem`` texts for
    lines that are not records (N counted from ``first_number``). One regular-expression pass over the block;
    only lines it does not match are handled one by one."""
    rows: list[SummaryFields] = []
    problems: list[str] = []
    number, position, fast = first_number, 0, 0

    def one_by_one(block: bytes) -> None:
        nonlocal number
        for line in block.split(b"\n")[:-1]:
            if line.strip():
                try:
                    rows.append(fields_from_line(line))
                except NotARecord as exc:
                    problems.append(f"{number}: {exc}")
            number += 1

    for match in _LINE.finditer(data):
        if match.start() > position:
            one_by_one(data[position : match.start()])
        try:
            rows.append(_from_match(match))
            fast += 1
        except (UnicodeDecodeError, ValueError):
            one_by_one(data[match.start() : match.end() + 1])
            number -= 1
        number += 1
        position = match.end() + 1
    one_by_one(data[position:])
    DECODED.fast += fast
    return rows, problems


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

    def extend(self, rows: list[SummaryFields]) -> None:
        """Append decoded rows to the columns."""
        if rows:
            for column, values in zip(self.columns, zip(*rows, strict=True), strict=True):
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
            data = json.loads((self.directory / (path.name + ".json")).read_bytes())
        except (OSError, ValueError):
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
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(entry.to_json(), separators=(",", ":")))  # dumps: the C encoder; dump is not
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
        number = entry.lines + data.count(b"\n", 0, complete)
        rows, problems = decode_lines(data[:complete], entry.lines + 1)
        entry.warnings.extend(f"{path}:{problem}" for problem in problems)
        entry.extend(rows)
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
) -> Iterator[SummaryFields]:
    """The summary fields of every record ``select`` would choose with these filters (in file order)."""
    cache = DigestCache(log_dir)
    since_s = since.timestamp() if since is not None else None
    for path in _files(log_dir, since, None):
        for fields in cache.rows(path, warn):
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

    def __init__(self, *, since: datetime | None = None, model: str | None = None, errors_only: bool = False) -> None:
        self.since_s = since.timestamp() if since is not None else None
        self.model = model
        self.errors_only = errors_only
        self.groups: dict[str, _Group] = {}

    def add(self, fields: SummaryFields) -> None:
        """Count one record (if it passes the filters)."""
        self.add_columns([[value] for value in fields])

    def add_columns(self, columns: list[list[Any]]) -> None:
        """Count every record of a file's columns (``SummaryFields`` order) that passes the filters."""
        since_s, wanted, errors_only, groups = self.since_s, self.model, self.errors_only, self.groups
        for started, model, error, failed, ttft, rate, eval_count in zip(*columns, strict=True):
            if wanted and model != wanted:
                continue
            if errors_only and not failed:
                continue
            if since_s is not None and (started is None or started < since_s):
                continue
            name = model or "(none)"
            group = groups.get(name)
            if group is None:
                group = groups[name] = _Group()
            group.count += 1
            if error:
                group.errors += 1
            if eval_count:
                group.eval_tokens += eval_count
            if ttft is not None:
                group.ttfts.append(ttft)
            if rate is not None:
                group.rates.append(rate)

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
    accumulator = SummaryAccumulator()
    for row in rows:
        accumulator.add(row)
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


def _decoded(
    log_dir: Path | str, paths: list[Path], progress: Callable[[int, int], object] | None, parallel_min_bytes: int
) -> Iterator[Decoded]:
    """Every file decoded, in order. A first run over a large log (nothing cached yet) decodes files in worker
    processes (one per CPU, at most ``MAX_WORKERS``); the results — and so the summary — are the same."""
    cache = DigestCache(log_dir)
    jobs = [(str(log_dir), str(path)) for path in paths]
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if workers > 1 and len(paths) > 1 and _uncached_bytes(cache, paths) >= parallel_min_bytes:
        # spawn, not fork: the caller may have threads (a dashboard, a proxy), and forking those can deadlock
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
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
) -> list[dict[str, Any]]:
    """``summarize`` of the records ``select`` would choose — from the per-day cache, without per-record objects.

    ``progress(files_done, files_total)`` is called as files are done. With at least ``parallel_min_bytes`` not
    yet cached, files are decoded in worker processes.
    """
    accumulator = SummaryAccumulator(since=since, model=model, errors_only=errors_only)
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
