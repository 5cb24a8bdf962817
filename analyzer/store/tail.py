"""Reading the interaction log from its end: the newest records (``newest_records``, for ``logs``), touching only
the files and lines needed, and following it as it grows (``LogFollower``, for live views such as ``top``).

The log is one file per UTC day, named by the day its records *started* (``YYYY-MM-DD.jsonl``), and each line
is appended when its interaction is over. So:

- every record of a file started on its day — files are visited newest first, and an older one is not opened
  once enough records that started after its day were found (``--since`` skips files by name);
- inside a file, lines are in *writing* order, which is close to but not exactly start order (a long request
  finishes after shorter ones that started later). Reading backwards, a line written by the proxy addon
  (``source: proxy``) bounds everything before it: those lines were written earlier, so they started before
  this line's end (``started_at + total_ms``) plus ``WRITE_SLACK_S`` (room for the addon's write queue). Once
  that bound falls below the oldest start still wanted, the rest of the file cannot contain a wanted record.
  Lines from batch imports (``source: pcap``) are written long after they happened, so they never end a read.

The result is the same list ``select(read_log(dir), ...)[-count:]`` gives (one exception: a record whose
``started_at`` is not a date sorts by its text in ``select``; it is listed only if its line was read).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from analyzer.protocol.record import InteractionRecord, record_problem
from analyzer.store.log import LogError, log_file_for, log_files
from analyzer.store.select import counts_as_traffic, select, started_at

BLOCK_BYTES = 64 * 1024
WRITE_SLACK_S = 120.0  # how long after its interaction ended a proxy record may reach the file
_DAY_NAME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)\.jsonl$")

Warn = Callable[[str], object] | None


def day_of_file(path: Path) -> date | None:
    """The UTC day a daily log file holds (from its name), or None for a file not named ``YYYY-MM-DD.jsonl``."""
    match = _DAY_NAME.match(path.name)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def lines_backwards(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, line)`` of every line of ``path``, last line first, without the newline.

    An unterminated last line (a writer still at work, or killed) is yielded too; blank lines are skipped.
    Reads ``block_bytes`` at a time from the end, so the first lines cost one small read.
    """
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with fh:
        position = fh.seek(0, 2)
        carry = b""  # the start of a line whose end was in the block read before
        while position > 0:
            size = min(block_bytes, position)
            position -= size
            fh.seek(position)
            block = fh.read(size) + carry
            parts = block.split(b"\n")
            carry = parts[0]
            cursor = len(block)
            for part in reversed(parts[1:]):
                start = cursor - len(part)
                if part.strip():
                    yield position + start, part
                cursor = start - 1
        if carry.strip():
            yield 0, carry


def _record(path: Path, offset: int, line: bytes, warn: Warn) -> InteractionRecord | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        if warn:
            warn(f"{path}: byte {offset}: skipped a line that is not JSON")
        return None
    problem = record_problem(data)
    if problem is not None:
        if warn:
            warn(f"{path}: byte {offset}: skipped a line that is not a record ({problem})")
        return None
    return InteractionRecord.from_dict(data)


def written_by(record: InteractionRecord) -> datetime | None:
    """The latest moment the line of a live-written (proxy) record can have reached the file, or None."""
    if record.source != "proxy" or record.total_ms is None:
        return None
    started = started_at(record)
    if started is None:
        return None
    return started + timedelta(milliseconds=record.total_ms, seconds=WRITE_SLACK_S)


def newest_records(
    log_dir: Path | str,
    *,
    count: int = 0,
    since: datetime | None = None,
    model: str | None = None,
    errors_only: bool = False,
    warn: Warn = None,
    progress: Callable[[int, int], object] | None = None,
    include_replays: bool = False,
) -> list[InteractionRecord]:
    """The newest ``count`` records (0: all) that match, oldest first — reading the log from its end.

    Equal to ``select(read_log(log_dir), model=..., since=..., errors_only=...)[-count:]``; with neither
    ``count`` nor ``since`` it reads everything (as it must). Bad lines that were read are reported through
    ``warn`` (path and byte offset) and skipped. ``progress(files_done, files_total)`` is called per file.
    """
    since_day = since.astimezone(UTC).date() if since is not None else None
    found: list[InteractionRecord] = []
    newest: list[tuple[datetime, int]] = []  # min-heap of the ``count`` latest start times found
    paths = log_files(log_dir)
    for done, path in enumerate(reversed(paths)):
        if progress:
            progress(done, len(paths))
        day = day_of_file(path)
        if since_day is not None and day is not None and day < since_day:
            continue  # the whole file started before ``since``
        if count and len(newest) >= count and day is not None and newest[0][0] >= _end_of(day):
            break  # this file (and every older one) only holds records older than the ``count`` found
        for offset, line in lines_backwards(path):
            record = _record(path, offset, line, warn)
            if record is None:
                continue
            if select([record], model=model, since=since, errors_only=errors_only, include_replays=include_replays):
                found.append(record)
                started = started_at(record)
                if count and started is not None:
                    item = (started, len(found))
                    if len(newest) < count:
                        heapq.heappush(newest, item)
                    elif item > newest[0]:
                        heapq.heapreplace(newest, item)
            wanted_from = _oldest_wanted(since, newest, count)
            bound = written_by(record)
            if wanted_from is not None and bound is not None and bound < wanted_from:
                break  # every earlier line of this file started before ``wanted_from``
    chosen = select(found, model=model, since=since, errors_only=errors_only, include_replays=include_replays)
    return chosen[-count:] if count else chosen


def _end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _oldest_wanted(since: datetime | None, newest: list[tuple[datetime, int]], count: int) -> datetime | None:
    """The start time below which no more records are wanted (None: keep reading)."""
    floor = newest[0][0] if count and len(newest) >= count else None
    if since is None:
        return floor
    return since if floor is None else max(since, floor)


FOLLOW_HISTORY_S = 3600.0  # the first poll of a follower returns the last hour's records
FOLLOW_MAX_READ_BYTES = 64 * 1024 * 1024  # per file and poll: a huge backlog is read over several polls
FOLLOW_INITIAL_BYTES = 32 * 1024 * 1024  # a day's file can be huge: a follower starts from its last 32 MB


class LogFollower:
    """New records of a log directory since the last poll (``tail -f`` of the log); the first poll: the last hour's.

    Reads only today's file and, while the last hour began yesterday, yesterday's. A line still being written is
    read on the next poll; lines that are not records are skipped. ``problem`` says why nothing could be read
    (an empty string when all is well): live views show it instead of failing.
    """

    def __init__(self, log_dir: Path, history_s: float = FOLLOW_HISTORY_S, include_replays: bool = False) -> None:
        self.log_dir = log_dir
        self.history_s = history_s
        self.include_replays = include_replays  # records ``ollama-wire replay`` wrote: left out unless asked
        self.offsets: dict[Path, int] = {}
        self._aligned: dict[Path, bool] = {}
        self.problem = ""

    def _files(self, now: float) -> list[Path]:
        if not self.log_dir.is_dir():
            return []
        moments = (datetime.fromtimestamp(now - back, UTC) for back in (self.history_s, 0.0))
        return list(dict.fromkeys(log_file_for(self.log_dir, moment) for moment in moments))

    def poll(self, now: float | None = None) -> list[InteractionRecord]:
        """The records appended since the last poll, in file order."""
        now = now or time.time()
        records: list[InteractionRecord] = []
        self.problem = "" if self.log_dir.is_dir() else f"{self.log_dir}: no such directory yet"
        for path in self._files(now):
            try:
                with path.open("rb") as fh:
                    if path not in self.offsets:  # first look: only the end of a big file (the last hour's lines)
                        size = fh.seek(0, 2)
                        self.offsets[path] = max(size - FOLLOW_INITIAL_BYTES, 0)
                    fh.seek(self.offsets[path])
                    data = fh.read(FOLLOW_MAX_READ_BYTES)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.problem = f"{path}: {exc.strerror or exc}"
                continue
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            start = 0
            if self.offsets[path] and not self._aligned.get(path):
                start = data.find(b"\n") + 1  # started inside a line: skip to the next one
            self._aligned[path] = True
            offset = self.offsets[path]
            self.offsets[path] += end
            for line in data[start:end].splitlines():
                record = _record(path, offset, line, None) if line.strip() else None
                if record is not None and counts_as_traffic(record.source, self.include_replays):
                    records.append(record)
        return records
