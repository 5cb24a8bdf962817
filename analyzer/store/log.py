"""The interaction log: one append-only JSONL file per UTC day, shared by the addon and the analyzer."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analyzer.protocol.record import InteractionRecord, record_problem

DEFAULT_LOG_DIR = Path("logs/ollama_interactions")
LOG_SUFFIX = ".jsonl"


class LogError(Exception):
    """A log file or directory that cannot be used; the message names the path and the problem."""


def log_file_for(log_dir: Path, when: datetime) -> Path:
    """The daily file a record started at ``when`` belongs to: ``<dir>/YYYY-MM-DD.jsonl`` (UTC)."""
    return log_dir / f"{when.astimezone(UTC):%Y-%m-%d}{LOG_SUFFIX}"


def record_file(log_dir: Path, record: InteractionRecord) -> Path:
    """The daily file ``record`` goes to: the UTC day it started (today for a start time that is not a date)."""
    try:
        when = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
    except ValueError:
        when = datetime.now(UTC)
    return log_file_for(log_dir, when)


class InteractionLog:
    """Appends records to the daily JSONL files under ``log_dir``.

    Each record is written as one line with a single ``write`` on a file opened in append mode
    and flushed at once, so concurrent writers (the addon, the capture runner) never interleave
    lines and a killed process loses at most the record it was writing.
    """

    def __init__(self, log_dir: Path | str = DEFAULT_LOG_DIR) -> None:
        self.log_dir = Path(log_dir)

    def append(self, record: InteractionRecord) -> Path:
        """Append one record; returns the file written."""
        return self.append_many([record])

    def append_many(self, records: Iterable[InteractionRecord]) -> Path:
        """Append records (grouped by their UTC day); returns the last file written."""
        by_file: dict[Path, list[str]] = {}
        for record in records:
            by_file.setdefault(record_file(self.log_dir, record), []).append(record.to_json() + "\n")
        path = log_file_for(self.log_dir, datetime.now(UTC))
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for path, lines in by_file.items():
                _append_locked(path, "".join(lines).encode("utf-8"))
        except OSError as exc:
            raise LogError(f"{path}: cannot append to interaction log: {exc.strerror or exc}") from exc
        except UnicodeEncodeError as exc:  # records are made valid by the builder; this is a last guard
            raise LogError(f"{path}: record is not valid UTF-8 text: {exc.reason}") from exc
        return path


def _append_locked(path: Path, data: bytes) -> None:
    """Append ``data`` under an exclusive lock, first ending a line a killed writer left unterminated
    (so that half line cannot swallow the next record)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # A short write (disk full) must not leave half a record behind: the caller retries it whole.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # releases the lock


def log_files(log_dir: Path | str) -> list[Path]:
    """The daily log files under ``log_dir``, oldest first. A missing directory has none."""
    directory = Path(log_dir)
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise LogError(f"{directory}: not a directory")
    # Dotfiles (the capture ledger, .captures-ledger.jsonl) live beside the log but are not part of it.
    # Only regular files: opening a FIFO named like a log file would wait for a writer for ever.
    return sorted(p for p in directory.glob(f"*{LOG_SUFFIX}") if not p.name.startswith(".") and p.is_file())


def iter_log_dicts(log_dir: Path | str, *, warn: Any = None) -> Iterator[dict[str, Any]]:
    """Every record in the log as a dict, oldest file first.

    A line that is not JSON (a writer killed mid-line) is skipped and reported through ``warn``
    (a callable taking one message), never fatal.
    """
    for path in log_files(log_dir):
        yield from iter_file_dicts(path, warn=warn)


def iter_file_dicts(path: Path, *, warn: Any = None) -> Iterator[dict[str, Any]]:
    """Every record of one JSONL file as a dict; lines that are not records are skipped and reported through
    ``warn``. Raises :class:`LogError` when the file cannot be opened."""
    try:
        fh = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if warn:
                    warn(f"{path}:{number}: skipped a line that is not JSON")
                continue
            problem = record_problem(data)
            if problem is None:
                yield data
            elif warn:
                warn(f"{path}:{number}: skipped a line that is not a record ({problem})")


def read_log(log_dir: Path | str, *, warn: Any = None) -> list[InteractionRecord]:
    """All records in the log, oldest first."""
    return [InteractionRecord.from_dict(d) for d in iter_log_dicts(log_dir, warn=warn)]
